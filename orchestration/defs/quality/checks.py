"""great-expectations suites as blocking asset checks: an error stops everything downstream.

A failed error-severity expectation makes the check fail with ERROR severity (Dagster blocks the
downstream steps); when only warn-severity expectations fail, the check fails with WARN severity,
which Dagster shows but does not block on.
"""

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
    "staging.stg_consent__events",
    "staging.stg_privacy__requests",
    "staging.stg_campaigns__results",
    "marts.identity_map",
    "marts.customer_profiles",
    "marts.customer_features",
    "marts.customer_scores",
    "marts.segment_definitions",
    "marts.segment_members",
    "marts.segment_summary",
    "marts.segment_membership_history",
    "ml.model_runs",
]


def _previous_row_count(
    context: dg.AssetCheckExecutionContext, check_key: dg.AssetCheckKey
) -> int | None:
    """rows_total recorded by this check's latest evaluation in an earlier run (the previous
    load), whatever kind of asset it checks."""
    history = context.instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=5
    )
    for record in history:
        if record.run_id == context.run.run_id or record.event is None:
            continue
        event = record.event.dagster_event
        evaluation = event.event_specific_data if event else None
        value = (getattr(evaluation, "metadata", None) or {}).get("rows_total")
        if value is not None:
            return int(value.value)
    return None


def _failure_rows(outcome) -> list[dict]:
    return [
        {
            "expectation": r.name,
            "column": r.column,
            "severity": r.severity,
            "observed": str(r.observed)[:300],
            "failing_count": r.failing_count,
            "examples": [str(x)[:200] for x in (r.failing_examples or [])[:5]],
        }
        for r in outcome.failures()
    ]


def _markdown(failures: list[dict]) -> str:
    if not failures:
        return "all expectations met"
    lines = [
        "| severity | expectation | column | failing | observed | examples |",
        "|---" * 6 + "|",
    ]
    for f in failures:
        cells = [
            f["severity"],
            f["expectation"],
            f["column"] or "",
            "" if f["failing_count"] is None else str(f["failing_count"]),
            f["observed"],
            "; ".join(f["examples"]),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _gx_check(table: str) -> dg.AssetChecksDefinition:
    schema, name = table.split(".")
    key = dg.AssetKey([schema, name])
    check_key = dg.AssetCheckKey(key, f"gx_{name}")

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
                "previous_row_count": _previous_row_count(context, check_key),
                "volume_tolerance": warehouse.volume_tolerance,
                "min_segment_size": warehouse.min_segment_size,
                "max_segment_share": warehouse.max_segment_share,
                "freshness_days": warehouse.freshness_days,
            }
            outcome = validate(con, table, sample_rows=warehouse.gx_sample_rows, context=run_facts)
        failures = _failure_rows(outcome)
        errors, warnings = outcome.failures("error"), outcome.failures("warn")
        # Only error-severity failures block; warnings fail the check visibly at WARN severity.
        severity = dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN
        return dg.AssetCheckResult(
            passed=not errors and not warnings,
            severity=severity,
            description=outcome.summary()[:2000] or "all expectations met",
            metadata={
                "rows_checked": outcome.rows_checked,
                "rows_total": outcome.rows_total,
                "expectations": len(outcome.results),
                "errors": len(errors),
                "warnings": len(warnings),
                "failures": dg.MetadataValue.json(failures),
                "failing_values": dg.MetadataValue.md(_markdown(failures)),
            },
        )

    return _check


gx_checks = [_gx_check(table) for table in GATED_TABLES]
