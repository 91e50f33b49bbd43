"""Activation exports per segment, run date and platform, proved consented by a blocking check;
a warning check names the segments too small for a platform."""

import dagster as dg

from orchestration.defs.layers import layer_key
from orchestration.defs.resources import WarehouseResource
from warehouse import audit
from warehouse.activation import below_minimum, export_segments, verify_exports

EXPORTS_KEY = layer_key("publish", "activation_exports")


@dg.asset(
    key=EXPORTS_KEY,
    group_name="publish",
    kinds={"csv", "parquet"},
    deps=[
        layer_key("segments", "segment_members"),
        layer_key("segments", "segment_definitions"),
        layer_key("identity", "customer_profiles"),
    ],
    description="Platform files per activation segment (Google Customer Match, Meta Custom "
    "Audiences, Parquet for our own channels) with adds/removes deltas and manifests",
)
def activation_exports(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    export_dir: dg.ResourceParam[str],
):
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        report = export_segments(con, export_dir, as_of, dict(warehouse.platform_min_audience))
        for segment_id, platforms in report["segments"].items():
            for platform, outcome in platforms.items():
                audit.record(
                    con,
                    "export",
                    subject=f"{segment_id}/{platform}",
                    rows=outcome["rows"],
                    detail={
                        "as_of": as_of,
                        "folder": f"{segment_id}/{as_of.isoformat()}/{platform}",
                        **outcome,
                    },
                    run_id=context.run_id,
                )
    return dg.MaterializeResult(
        metadata={
            "export_dir": dg.MetadataValue.path(export_dir),
            "as_of": as_of.isoformat(),
            "segments": dg.MetadataValue.json(report["segments"]),
        }
    )


@dg.asset_check(
    asset=EXPORTS_KEY,
    blocking=True,
    description="Every exported row comes from a non-holdout member with consent for the "
    "export's purpose, no hashed column holds plaintext, deltas agree with their full file, and "
    "every file matches its manifest's checksum and row count",
)
def exports_consented(warehouse: WarehouseResource, export_dir: dg.ResourceParam[str]):
    with warehouse.connect() as con:
        problems = verify_exports(con, export_dir, warehouse.resolve_as_of(con))
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(
            f"{p['segment_id']}/{p['platform']}: {p['problem']}" for p in problems
        )
        or "all exports consented and intact",
        metadata={"problems": dg.MetadataValue.json(problems)},
    )


@dg.asset_check(
    asset=EXPORTS_KEY,
    description="Segments below a platform's minimum audience "
    "(MICROSEG_PLATFORM_MIN_AUDIENCE): not exported to that platform, any earlier list withdrawn",
)
def exports_minimum_audience(warehouse: WarehouseResource, export_dir: dg.ResourceParam[str]):
    with warehouse.connect() as con:
        small = below_minimum(export_dir, warehouse.resolve_as_of(con))
    return dg.AssetCheckResult(
        passed=not small,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(
            f"{s['segment_id']}/{s['platform']}: {s['rows']} rows < {s['min_audience']}"
            for s in small
        )
        or "every exported segment meets its platform minimum",
        metadata={"below_minimum": dg.MetadataValue.json(small)},
    )
