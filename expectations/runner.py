"""`validate`: run a table's suite, GX rules on a seeded sample plus exact SQL checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import duckdb

from expectations import sql_checks
from expectations._gx import run_rules
from expectations.results import ERROR, WARN, ExpectationResult, ValidationOutcome
from expectations.sql_checks import quote_ident, table_ref
from expectations.suites import SUITES, Rule
from warehouse.sources import LandingGates

DEFAULT_SEED = 42


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def run_parameters(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """Run facts with their defaults; rule values written "$name" read from here."""
    context = dict(context or {})
    run_date = context.get("run_date") or context.get("as_of")
    run_date = _as_date(run_date) if run_date else dt.datetime.now(dt.UTC).date()
    parameters: dict[str, Any] = {
        "run_date": run_date,
        "min_event_time": dt.datetime(1970, 1, 1),
        # events up to the end of run_date + 1 day are accepted by ingest (strict upper bound)
        "max_event_time": dt.datetime.combine(run_date + dt.timedelta(days=2), dt.time()),
        "freshness_days": int(context.get("freshness_days", 3)),
        "volume_tolerance": float(context.get("volume_tolerance", 0.5)),
        "previous_row_count": context.get("previous_row_count"),
        "sample_seed": int(context.get("sample_seed", DEFAULT_SEED)),
    }
    if context.get("as_of") is not None:
        parameters["as_of"] = _as_date(context["as_of"])
    if context.get("min_segment_size") is not None:
        parameters["min_segment_size"] = int(context["min_segment_size"])
    # a segment holding nearly everyone targets no one in particular (warn)
    parameters["max_segment_share"] = float(context.get("max_segment_share", 0.95))
    return parameters


def sample_frame(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[str],
    sample_rows: int,
    seed: int = DEFAULT_SEED,
    rows_total: int | None = None,
) -> Any:
    """`columns` of at most `sample_rows` rows of `table` as pandas: all rows when the table is
    small, else a seeded (repeatable) reservoir sample."""
    ref = table_ref(table)
    select = ", ".join(quote_ident(c) for c in columns) or "1 as _row"
    if rows_total is None:
        rows_total = sql_checks.row_count(con, table)
    if rows_total <= sample_rows:
        return con.execute(f"select {select} from {ref}").df()
    # DuckDB takes neither as a bind parameter here; both are validated ints
    sample = f"using sample reservoir({int(sample_rows)} rows) repeatable ({int(seed)})"
    if sql_checks.is_base_table(con, table):
        # sampling narrow rowids then fetching the rows is ~2x faster than sampling wide rows
        return con.execute(
            f"select {select} from {ref} where rowid in (select rowid from {ref} {sample})"
        ).df()
    return con.execute(f"select {select} from {ref} {sample}").df()


def validate(
    con: duckdb.DuckDBPyConnection,
    table: str,
    *,
    sample_rows: int = 200_000,
    context: dict | None = None,
) -> ValidationOutcome:
    """Run the suite of `table` (a key of SUITES; KeyError otherwise) and return its outcome.

    Row-level rules run in GX on at most `sample_rows` rows (a seeded reservoir sample);
    uniqueness, row counts, freshness and cross-table rules are exact SQL over all rows.
    """
    spec = SUITES[table]
    if int(sample_rows) < 1:
        raise ValueError("sample_rows must be at least 1")
    parameters = run_parameters(context)
    columns = sql_checks.table_columns(con, table)
    if not columns:
        missing = ExpectationResult(
            "table_exists", None, ERROR, False, f"table {table} does not exist", [], None
        )
        return ValidationOutcome(table, False, 0, 0, [missing])

    rows_total = sql_checks.row_count(con, table)
    results: list[ExpectationResult] = [
        ExpectationResult(
            "expect_column_to_exist", c, ERROR, False, f"column {c} missing from {table}", [], None
        )
        for c in spec.required
        if c not in columns
    ]
    results.append(sql_checks.not_empty(rows_total))
    results.append(
        sql_checks.volume(
            rows_total, parameters["previous_row_count"], parameters["volume_tolerance"]
        )
    )
    for key in spec.unique:
        if all(c in columns for c in key):
            results.append(sql_checks.unique_key(con, table, key))
    id_columns = [c for c in spec.id_columns if c in columns]
    for column in spec.event_times:
        if column in columns:
            results.append(
                sql_checks.values_in_range(
                    con,
                    table,
                    column,
                    parameters["min_event_time"],
                    parameters["max_event_time"],
                    id_columns,
                    spec.event_times_severity,
                )
            )
    if spec.freshness and spec.freshness in columns:
        results.append(
            sql_checks.freshness(
                con, table, spec.freshness, parameters["run_date"], parameters["freshness_days"]
            )
        )
    for name in spec.sql_checks:
        results.append(sql_checks.SQL_CHECKS[name](con, table, parameters))

    rules: list[Rule] = list(spec.rules)
    if spec.dynamic is not None:
        rules += spec.dynamic(columns, rows_total > 0)
    runnable: list[Rule] = []
    for rule in rules:
        absent = [c for c in rule.columns if c not in columns]
        unset = [p for p in rule.parameters if parameters.get(p) is None]
        if absent or unset:
            reason = f"column {absent[0]} not present" if absent else f"no {unset[0]} given"
            results.append(
                ExpectationResult(rule.name, rule.column, rule.severity, True, f"skipped: {reason}")
            )
        else:
            runnable.append(rule)

    needed = list(dict.fromkeys([*(c for r in runnable for c in r.columns), *id_columns]))
    frame = sample_frame(con, table, needed, sample_rows, parameters["sample_seed"], rows_total)
    gx_parameters = {p: parameters[p] for r in runnable for p in r.parameters}
    results += run_rules(table, runnable, frame, gx_parameters, id_columns)

    success = not any(not r.success and r.severity == ERROR for r in results)
    return ValidationOutcome(table, success, len(frame), rows_total, results)


def validate_landing(
    con: duckdb.DuckDBPyConnection,
    source: str,
    gates: LandingGates,
    *,
    present: list[str] | None = None,
    run_id: str | None = None,
) -> dict[str, ExpectationResult]:
    """The landing gates of one source's files by check name (`rejected_files`,
    `quarantine_share`, `schema_drift`): see `expectations.sql_checks.landing_checks`."""
    results = sql_checks.landing_checks(con, source, gates, present, run_id)
    return {r.name: r for r in results}


__all__ = ["ERROR", "WARN", "run_parameters", "sample_frame", "validate", "validate_landing"]
