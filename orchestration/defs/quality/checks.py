"""great-expectations suites as blocking asset checks: a failure stops everything downstream."""

import dagster as dg

from expectations import validate
from orchestration.defs.resources import WarehouseResource

# Table -> asset key; staging views and marts share their dbt asset keys ([schema, name]).
GATED_TABLES = [
    "raw.crm",
    "raw.pos",
    "raw.web",
    "raw.consent",
    "raw.privacy",
    "raw.campaigns",
    "staging.stg_crm__customers",
    "staging.stg_pos__transaction_lines",
    "staging.stg_web__events",
    "marts.identity_map",
    "marts.customer_profiles",
    "marts.customer_features",
    "marts.customer_scores",
    "marts.segment_definitions",
    "marts.segment_members",
    "marts.segment_summary",
    "ml.model_runs",
]


def _previous_row_count(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> int | None:
    records = context.instance.fetch_materializations(key, limit=2).records
    if len(records) < 2:
        return None
    meta = records[1].asset_materialization.metadata if records[1].asset_materialization else {}
    value = meta.get("rows_total")
    return int(value.value) if value is not None else None


def _gx_check(table: str) -> dg.AssetChecksDefinition:
    schema, name = table.split(".")
    key = dg.AssetKey([schema, name])

    @dg.asset_check(
        asset=key,
        name=f"gx_{name}",
        blocking=True,
        description=f"great-expectations suite for {table} (errors block, warnings report)",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            run_facts = {
                "run_date": warehouse.run_date(),
                "as_of": warehouse.resolve_as_of(con),
                "previous_row_count": _previous_row_count(context, key),
                "volume_tolerance": warehouse.volume_tolerance,
                "min_segment_size": warehouse.min_segment_size,
                "freshness_days": warehouse.freshness_days,
            }
            outcome = validate(con, table, sample_rows=warehouse.gx_sample_rows, context=run_facts)
        failures = [
            {
                "expectation": r.name,
                "column": r.column,
                "severity": r.severity,
                "observed": str(r.observed)[:200],
                "failing_count": r.failing_count,
                "examples": [str(x)[:100] for x in (r.failing_examples or [])[:5]],
            }
            for r in outcome.failures()
        ]
        return dg.AssetCheckResult(
            passed=outcome.success,
            severity=dg.AssetCheckSeverity.ERROR,
            description=outcome.summary() or "all expectations met",
            metadata={
                "rows_checked": outcome.rows_checked,
                "rows_total": outcome.rows_total,
                "expectations": len(outcome.results),
                "errors": len(outcome.failures("error")),
                "warnings": len(outcome.failures("warn")),
                "failures": dg.MetadataValue.json(failures),
            },
        )

    return _check


gx_checks = [_gx_check(table) for table in GATED_TABLES]
