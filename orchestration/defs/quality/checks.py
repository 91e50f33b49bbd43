"""great-expectations suites as blocking asset checks: an error stops everything downstream.

A failed error-severity expectation makes the check fail with ERROR severity (Dagster blocks the
downstream steps); when only warn-severity expectations fail, the check fails with WARN severity,
which Dagster shows but does not block on.
"""

from collections.abc import Mapping

import dagster as dg

from expectations import SUITES, validate
from expectations.runner import validate_landing
from expectations.sql_checks import LANDING_CHECKS
from orchestration.defs.layers import layer_key
from orchestration.defs.resources import WarehouseResource
from warehouse.ingest import SOURCES, discover_files


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


def describe_suite(table: str) -> str:
    """What the great-expectations suite of `table` checks, and what to do when it fails."""
    spec = SUITES[table]
    parts = []
    if spec.required:
        parts.append(f"columns present: {', '.join(spec.required)}")
    for key in spec.unique:
        parts.append(f"one row per {' + '.join(key)}")
    errors = sorted({f"{r.expectation.removeprefix('Expect')} {r.column}" for r in spec.rules
                     if r.severity == "error"})  # fmt: skip
    warns = sorted({f"{r.expectation.removeprefix('Expect')} {r.column}" for r in spec.rules
                    if r.severity != "error"})  # fmt: skip
    if errors:
        parts.append("errors: " + "; ".join(errors))
    if warns:
        parts.append("warnings: " + "; ".join(warns))
    if spec.event_times:
        parts.append(f"event times plausible: {', '.join(spec.event_times)}")
    if spec.freshness:
        parts.append(f"newest {spec.freshness} within MICROSEG_FRESHNESS_DAYS (warning)")
    if spec.dynamic is not None:
        parts.append("per-column rules for the feature and score columns found at run time")
    if spec.sql_checks:
        parts.append("cross-table SQL checks: " + ", ".join(spec.sql_checks))
    return (
        f"Protects everything built from {table}: " + "; ".join(parts) + ". An error blocks the "
        "downstream assets and keeps the last serving snapshot; a warning shows without "
        "blocking. When it fails, read `failing_values` (rule, count, example rows), fix the "
        "input (or the rule in expectations/suites.py if the data is right), and re-run."
    )


def _gx_check(table: str, key: dg.AssetKey) -> dg.AssetChecksDefinition:
    name = table.split(".")[1]
    check_key = dg.AssetCheckKey(key, f"gx_{name}")

    @dg.asset_check(
        asset=key,
        name=f"gx_{name}",
        blocking=True,
        description=describe_suite(table),
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


LANDING_CHECK_DESCRIPTIONS = {
    "rejected_files": "No file of the source is rejected (a missing required column, an "
    "unreadable file); per source, a rejection can be set to warn. When it fails, the result "
    "names the file and the rule: fix or replace the file in the landing folder (or set "
    "MICROSEG_REJECTED_FILE_POLICY_<SOURCE>=warn to load the rest without it) and re-run.",
    "quarantine_share": "No file has more of its rows quarantined than the warn / error share "
    "(MICROSEG_QUARANTINE_WARN_SHARE, MICROSEG_QUARANTINE_ERROR_SHARE; the error needs the file to "
    "have the minimum rows, or every row quarantined). When it fails, the result gives the "
    "share and the commonest rules: read the rows in raw.<source>_quarantine, fix the export "
    "that produced them, and deliver the file again.",
    "schema_drift": "No known column renamed or retyped (error, or warn per source with "
    "MICROSEG_SCHEMA_DRIFT_POLICY); unknown columns, kept in _extra, warn in the run that loads "
    "the file. When it fails, the result names both columns: rename the column back in the "
    "export, or update the contract if the change is intended.",
}
MAX_DESCRIPTION = 2000


def _landing_description(result) -> str:
    """One line: every finding, errors first, so the run summary prints it whole."""
    if result.success:
        return f"{result.observed['files_checked']} files checked: nothing to report"
    parts = [
        f"[{f['severity']}] {f['finding']}" if f["severity"] != "error" else f["finding"]
        for f in result.failing_examples
    ]
    text = "; ".join(parts)
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 40].rsplit("; ", 1)[0] + f"; … {len(parts)} findings in all"
    return text


def _landing_check(source: str) -> dg.AssetChecksDefinition:
    key = layer_key("raw", source)

    @dg.multi_asset_check(
        name=f"landing_gates_{source}",
        specs=[
            dg.AssetCheckSpec(name, asset=key, blocking=True, description=description)
            for name, description in LANDING_CHECK_DESCRIPTIONS.items()
        ],
        description=f"the files of the `{source}/` landing folder, judged by their current "
        "version in raw.load_ledger",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        present = [rel for rel, _ in discover_files(warehouse.landing_dir, source)]
        with warehouse.connect() as con:
            results = validate_landing(
                con,
                source,
                warehouse.landing_gates(source),
                present=present,
                run_id=context.run.run_id,
            )
        for name in LANDING_CHECKS:
            result = results[name]
            errors = result.observed["errors"]
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=name,
                passed=result.success,
                # an error blocks everything downstream; warnings alone show, not block
                severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
                description=_landing_description(result),
                metadata={
                    "files_checked": result.observed["files_checked"],
                    "errors": errors,
                    "warnings": result.observed["warnings"],
                    "findings": dg.MetadataValue.json(result.failing_examples),
                },
            )

    return _check


landing_checks = [_landing_check(source) for source in SOURCES]


def build_gx_checks(table_keys: Mapping[str, dg.AssetKey]) -> list[dg.AssetChecksDefinition]:
    """A blocking great-expectations check on the asset of every table with a suite (tables no
    asset writes, such as raw.load_ledger, are judged by the landing gates), plus the landing
    gates of each source."""
    gx = [_gx_check(table, table_keys[table]) for table in SUITES if table in table_keys]
    return [*gx, *landing_checks]
