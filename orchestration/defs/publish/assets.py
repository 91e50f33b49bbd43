"""The serving snapshot: replaced atomically, only after every upstream gate passed."""

import dagster as dg

from orchestration.defs.resources import WarehouseResource
from warehouse import audit
from warehouse.publish import publish_snapshot

PUBLISHED_DEPS = [
    ["marts", "identity_map"],
    ["marts", "customer_profiles"],
    ["marts", "customer_features"],
    ["marts", "customer_scores"],
    ["marts", "segment_definitions"],
    ["marts", "segment_members"],
    ["marts", "segment_membership_history"],
    ["marts", "segment_summary"],
    ["marts", "campaign_performance"],
    ["ml", "model_runs"],
    # Publishing waits for the export gate: a run that failed it publishes nothing.
    ["exports", "activation"],
]


@dg.asset(
    key=["serving", "snapshot"],
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
