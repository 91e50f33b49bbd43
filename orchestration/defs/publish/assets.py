"""The serving snapshot: replaced atomically, only after every upstream gate passed."""

import dagster as dg

from orchestration.defs.layers import layer_key
from orchestration.defs.publish.exports import EXPORTS_KEY
from orchestration.defs.publish.feeds import FEEDS_KEY
from orchestration.defs.resources import WarehouseResource
from warehouse import audit
from warehouse.publish import publish_snapshot

SNAPSHOT_KEY = layer_key("publish", "serving_snapshot")
PUBLISHED_DEPS = [
    layer_key("identity", "identity_map"),
    layer_key("identity", "customer_profiles"),
    layer_key("features", "customer_features"),
    layer_key("models", "customer_scores"),
    layer_key("models", "model_runs"),
    layer_key("segments", "segment_definitions"),
    layer_key("segments", "segment_members"),
    layer_key("segments", "segment_membership_history"),
    layer_key("segments", "segment_summary"),
    layer_key("segments", "segment_attributes"),
    layer_key("segments", "segment_runs"),
    layer_key("segments", "segment_events"),
    layer_key("segments", "segment_kpis"),
    layer_key("segments", "segment_overlap"),
    layer_key("segments", "segment_lift"),
    layer_key("segments", "campaign_performance"),
    layer_key("segments", "campaign_comparison"),
    layer_key("models", "cluster_personas"),
    layer_key("models", "lookalike_scores"),
    layer_key("segments", "personalization_variables"),
    layer_key("segments", "personalization_feed"),
    # Publishing waits for the export and feed gates: a run that failed one publishes nothing.
    EXPORTS_KEY,
    FEEDS_KEY,
]


@dg.asset(
    key=SNAPSHOT_KEY,
    group_name="publish",
    kinds={"duckdb"},
    deps=PUBLISHED_DEPS,
    description="Read-only copy of marts and ml for analysts, minus direct identifiers",
)
def serving_snapshot(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    serving: dg.ResourceParam[str],
):
    with warehouse.connect() as con:
        report = publish_snapshot(con, serving)
        audit.record(
            con,
            "publish",
            subject=serving,
            rows=sum(report["tables"].values()),
            detail={"tables": report["tables"]},
            run_id=context.run_id,
        )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(serving),
            "tables": dg.MetadataValue.json(report["tables"]),
            "dropped_columns": dg.MetadataValue.json(report["dropped_columns"]),
        }
    )
