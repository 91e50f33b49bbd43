"""Data-subject requests: access responses (erasure is applied where the data lives)."""

import dagster as dg

from orchestration.defs.layers import layer_key
from orchestration.defs.resources import WarehouseResource
from warehouse.erasure import (
    apply_erasures,
    apply_retention,
    compact_database,
    scrub_serving,
)
from warehouse.privacy import fulfil_access_requests


@dg.asset(
    # A publication (files handed to the person) after segments: in the publish layer.
    key=layer_key("publish", "access_responses"),
    group_name="publish",
    kinds={"json"},
    deps=[
        layer_key("privacy", "int_privacy_requests_resolved"),
        layer_key("identity", "customer_profiles"),
        layer_key("models", "customer_scores"),
        layer_key("segments", "segment_members"),
        layer_key("segments", "segment_membership_history"),
    ],
    description="One JSON file per access request: profile, identifiers, consent history, "
    "segments and scores; written once, logged in audit.events",
)
def access_responses(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    privacy_dir: dg.ResourceParam[str],
):
    out_dir = f"{privacy_dir}/access"
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        written = fulfil_access_requests(con, out_dir, as_of, run_id=context.run_id)
    return dg.MaterializeResult(
        metadata={
            "folder": dg.MetadataValue.path(out_dir),
            "answered_this_run": dg.MetadataValue.json(written),
        }
    )


@dg.asset(
    key=layer_key("privacy", "erasure"),
    group_name="privacy",
    kinds={"duckdb"},
    deps=[
        layer_key("privacy", "int_privacy_requests_resolved"),
        layer_key("identity", "identity_map"),
        layer_key("identity", "customer_profiles"),
    ],
    description="Applies pending erasure requests: the person leaves every layer, earlier "
    "exports, access responses and the serving snapshot; their keyed ids join the suppression "
    "list ingest applies; the warehouse file is rewritten so no deleted bytes remain",
)
def erasure(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    export_dir: dg.ResourceParam[str],
    privacy_dir: dg.ResourceParam[str],
    serving: dg.ResourceParam[str],
):
    with warehouse.connect() as con:
        report = apply_erasures(con, privacy_dir=privacy_dir, run_id=context.run_id)
        # Events past the retention window leave raw too (staging already ignores them).
        report["retention_rows_deleted"] = apply_retention(
            con, warehouse.resolve_as_of(con), warehouse.retention_days, run_id=context.run_id
        )
    person_ids = report.pop("person_ids")
    if report["requests"]:
        # Only now is no connection open on the file: rewrite it from live rows.
        compact_database(warehouse.path)
        report["serving_rows_removed"] = scrub_serving(serving, person_ids)
    return dg.MaterializeResult(metadata={"erasure": dg.MetadataValue.json(report)})


privacy_assets = [access_responses, erasure]
