"""Data-subject requests: access responses (erasure is applied where the data lives)."""

import dagster as dg

from orchestration.defs.resources import WarehouseResource
from warehouse.privacy import fulfil_access_requests


@dg.asset(
    key=["privacy", "access_responses"],
    group_name="privacy",
    kinds={"json"},
    deps=[
        ["intermediate", "int_privacy_requests_resolved"],
        ["marts", "customer_profiles"],
        ["marts", "customer_scores"],
        ["marts", "segment_members"],
        ["marts", "segment_membership_history"],
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


privacy_assets = [access_responses]
