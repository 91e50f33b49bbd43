"""Activation exports per segment and run date, proved consented by a blocking check."""

import dagster as dg

from orchestration.defs.layers import layer_key
from orchestration.defs.resources import WarehouseResource
from warehouse import audit
from warehouse.activation import export_segments, verify_exports

EXPORTS_KEY = layer_key("publish", "activation_exports")


@dg.asset(
    key=EXPORTS_KEY,
    group_name="publish",
    kinds={"csv"},
    deps=[
        layer_key("segments", "segment_members"),
        layer_key("segments", "segment_definitions"),
        layer_key("identity", "customer_profiles"),
    ],
    description="Audience files (hashed email/phone) and manifests for activation segments",
)
def activation_exports(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    export_dir: dg.ResourceParam[str],
):
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        report = export_segments(con, export_dir, as_of)
        for segment_id, rows in report["segments"].items():
            audit.record(
                con,
                "export",
                subject=segment_id,
                rows=rows,
                detail={"as_of": as_of, "folder": f"{segment_id}/{as_of.isoformat()}"},
                run_id=context.run_id,
            )
    return dg.MaterializeResult(
        metadata={
            "export_dir": dg.MetadataValue.path(export_dir),
            "as_of": as_of.isoformat(),
            "rows": dg.MetadataValue.json(report["segments"]),
        }
    )


@dg.asset_check(
    asset=EXPORTS_KEY,
    blocking=True,
    description="Every exported row belongs to a person with consent for the export's purpose, "
    "and every file matches its manifest's checksum and row count",
)
def exports_consented(warehouse: WarehouseResource, export_dir: dg.ResourceParam[str]):
    with warehouse.connect() as con:
        problems = verify_exports(con, export_dir, warehouse.resolve_as_of(con))
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{p['segment_id']}: {p['problem']}" for p in problems)
        or "all exports consented and intact",
        metadata={"problems": dg.MetadataValue.json(problems)},
    )
