"""Personalisation feeds per channel and run date (warehouse/feeds.py), proved consented by a
blocking check."""

import dagster as dg

from orchestration.defs.layers import layer_key
from orchestration.defs.resources import WarehouseResource
from warehouse import audit
from warehouse.feeds import verify_feeds, write_feeds

FEEDS_KEY = layer_key("publish", "personalization_feeds")


@dg.asset(
    key=FEEDS_KEY,
    group_name="publish",
    kinds={"csv", "json"},
    deps=[layer_key("segments", "personalization_feed")],
    description="Personalisation feeds per channel (CSV for DCO tools, JSON Lines for e-mail), "
    "keyed by person_id, for persons with personalization consent",
)
def personalization_feeds(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    export_dir: dg.ResourceParam[str],
):
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        report = write_feeds(con, export_dir, as_of)
        for channel, written in report.items():
            audit.record(
                con,
                "export",
                subject=f"feed:{channel}",
                rows=written["rows"],
                detail={"as_of": as_of, "folder": f"feeds/{channel}/{as_of.isoformat()}"},
                run_id=context.run_id,
            )
    return dg.MaterializeResult(
        metadata={
            "export_dir": dg.MetadataValue.path(export_dir),
            "as_of": as_of.isoformat(),
            **{f"rows_{c}": int(r["rows"]) for c, r in report.items()},
            "rows_per_segment": dg.MetadataValue.json(
                {c: r["segments"] for c, r in report.items()}
            ),
        }
    )


@dg.asset_check(
    asset=FEEDS_KEY,
    blocking=True,
    description="Every feed row is a targeted (not held out) member of its segment with "
    "personalization consent, and every feed file matches its manifest",
)
def feeds_consented(warehouse: WarehouseResource, export_dir: dg.ResourceParam[str]):
    with warehouse.connect() as con:
        problems = verify_feeds(con, export_dir, warehouse.resolve_as_of(con))
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{p['channel']}: {p['problem']}" for p in problems)
        or "every feed row consented and targeted; files intact",
        metadata={"problems": dg.MetadataValue.json(problems)},
    )
