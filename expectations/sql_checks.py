"""Set-wide checks as exact SQL over the whole table in DuckDB (never sampled).

Identifiers come from the suite registry or from the table's own catalog and are quoted;
every value travels as a bind parameter.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import duckdb

from expectations.results import ERROR, WARN, ExpectationResult, to_jsonable
from expectations.suites import PURPOSES
from warehouse.sources import RENAMED_SIMILARITY, LandingGates

EXAMPLES = 5
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_ref(table: str) -> str:
    """`schema.table` from the suite registry as a quoted identifier."""
    parts = table.split(".")
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts):
        raise ValueError(f"not a registry table name: {table!r}")
    return ".".join(quote_ident(p) for p in parts)


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name -> DuckDB type, in table order; empty when the table or view does not exist."""
    schema, name = table.split(".")
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_catalog = current_database() and table_schema = ? and table_name = ? "
        "order by ordinal_position",
        [schema, name],
    ).fetchall()
    return {column: dtype for column, dtype in rows}


def is_base_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    row = con.execute(
        "select table_type from information_schema.tables "
        "where table_catalog = current_database() and table_schema = ? and table_name = ?",
        [schema, name],
    ).fetchone()
    return row is not None and row[0] == "BASE TABLE"


def row_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f"select count(*) from {table_ref(table)}").fetchone()[0])


def not_empty(rows_total: int) -> ExpectationResult:
    return ExpectationResult("table_not_empty", None, WARN, rows_total > 0, rows_total, [], None)


def volume(rows_total: int, previous: int | None, tolerance: float) -> ExpectationResult:
    """Row count within ±tolerance of the previous run's count (warn)."""
    name = "table_row_count_volume"
    if previous is None:
        return ExpectationResult(name, None, WARN, True, "skipped: no previous_row_count", [], None)
    low = previous * (1 - tolerance)
    high = previous * (1 + tolerance) if previous > 0 else None
    ok = rows_total >= low and (high is None or rows_total <= high)
    observed = {
        "rows": rows_total,
        "previous_rows": previous,
        "change": None if previous == 0 else round(rows_total / previous - 1, 4),
        "tolerance": tolerance,
    }
    return ExpectationResult(name, None, WARN, ok, observed, [], None)


def unique_key(con: duckdb.DuckDBPyConnection, table: str, key: Sequence[str]) -> ExpectationResult:
    """Exact uniqueness of a (compound) key over every row; rows with a null key part are left
    to the not-null rules. failing_count counts every row whose key repeats."""
    cols = ", ".join(quote_ident(c) for c in key)
    not_null = " and ".join(f"{quote_ident(c)} is not null" for c in key)
    rows = con.execute(
        f"with dup as (select {cols}, count(*) as n from {table_ref(table)} "
        f"where {not_null} group by {cols} having count(*) > 1) "
        f"select *, count(*) over () as keys, sum(n) over () as dup_rows from dup "
        f"order by n desc, {cols} limit ?",
        [EXAMPLES],
    ).fetchall()
    column = ", ".join(key)
    if not rows:
        observed = {"duplicate_keys": 0, "duplicate_rows": 0}
        return ExpectationResult("key_unique", column, ERROR, True, observed, [], 0)
    keys, dup_rows = int(rows[0][-2]), int(rows[0][-1])
    examples = [{**dict(zip(key, r[: len(key)], strict=True)), "rows": r[len(key)]} for r in rows]
    observed = {"duplicate_keys": keys, "duplicate_rows": dup_rows}
    return ExpectationResult(
        "key_unique", column, ERROR, False, observed, to_jsonable(examples), dup_rows
    )


def values_in_range(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    low: Any,
    high: Any,
    id_columns: Sequence[str],
    severity: str = ERROR,
) -> ExpectationResult:
    """Every non-null value of `column` in [low, high), over all rows."""
    col = quote_ident(column)
    shown = [c for c in id_columns if c != column]
    select = ", ".join([*(quote_ident(c) for c in shown), col])
    rows = con.execute(
        f"select {select}, count(*) over () as n from {table_ref(table)} "
        f"where {col} < ? or {col} >= ? order by {col} desc limit ?",
        [low, high, EXAMPLES],
    ).fetchall()
    observed = {"min_value": to_jsonable(low), "max_value_excluded": to_jsonable(high)}
    if not rows:
        return ExpectationResult("values_in_range", column, severity, True, observed, [], 0)
    examples = [dict(zip([*shown, column], r[:-1], strict=True)) for r in rows]
    count = int(rows[0][-1])
    observed["unexpected_count"] = count
    return ExpectationResult(
        "values_in_range", column, severity, False, observed, to_jsonable(examples), count
    )


def freshness(
    con: duckdb.DuckDBPyConnection, table: str, column: str, run_date: dt.date, days: int
) -> ExpectationResult:
    """Newest value of `column` within `days` of run_date (warn)."""
    newest = con.execute(f"select max({quote_ident(column)}) from {table_ref(table)}").fetchone()[0]
    if newest is None:
        return ExpectationResult("freshness", column, WARN, True, "skipped: no rows", [], None)
    newest_date = newest.date() if isinstance(newest, dt.datetime) else newest
    age = (run_date - newest_date).days
    observed = {"newest": to_jsonable(newest), "age_days": age, "max_age_days": days}
    return ExpectationResult("freshness", column, WARN, age <= days, observed, [], None)


def segment_member_consent(
    con: duckdb.DuckDBPyConnection, table: str, parameters: Mapping[str, Any]
) -> ExpectationResult:
    """The privacy gate: every segment member consents to its segment's purpose.

    A member whose segment has no definition, whose purpose is not in the whitelist, or whose
    person has no profile or no consent column for that purpose fails (fail closed).
    """
    name = "segment_member_consent"
    column = "segment_id, person_id"
    missing = [
        t
        for t in ("marts.segment_definitions", "marts.customer_profiles")
        if not table_columns(con, t)
    ]
    if missing:
        observed = f"cannot prove consent: {', '.join(missing)} does not exist"
        return ExpectationResult(name, column, ERROR, False, observed, [], None)
    profile_columns = table_columns(con, "marts.customer_profiles")
    purposes = [p for p in PURPOSES if f"consent_{p}" in profile_columns]
    if purposes:
        whens = " ".join(f"when ? then p.{quote_ident('consent_' + p)}" for p in purposes)
        consented = f"coalesce(case d.purpose {whens} else null end, false)"
    else:
        consented = "false"
    rows = con.execute(
        f"""
        with failing as (
            select distinct m.segment_id, m.person_id, d.purpose
            from {table_ref("marts.segment_members")} as m
            left join {table_ref("marts.segment_definitions")} as d
                on d.segment_id = m.segment_id
            left join {table_ref("marts.customer_profiles")} as p
                on p.person_id = m.person_id
            where not {consented}
        )
        select segment_id, person_id, purpose, count(*) over () as n
        from failing
        order by segment_id, person_id
        limit ?
        """,
        [*purposes, EXAMPLES],
    ).fetchall()
    if not rows:
        return ExpectationResult(name, column, ERROR, True, {"members_without_consent": 0}, [], 0)
    count = int(rows[0][3])
    examples = [{"segment_id": s, "person_id": p, "purpose": u} for s, p, u, _ in rows]
    return ExpectationResult(
        name,
        column,
        ERROR,
        False,
        {"members_without_consent": count},
        to_jsonable(examples),
        count,
    )


def score_consent(
    con: duckdb.DuckDBPyConnection, table: str, parameters: Mapping[str, Any]
) -> ExpectationResult:
    """The privacy gate for models: a person carries scores only with `analytics` consent
    (fail closed: a scored person without a profile fails too)."""
    name, column = "score_consent", "person_id"
    if "consent_analytics" not in table_columns(con, "marts.customer_profiles"):
        observed = "cannot prove consent: marts.customer_profiles.consent_analytics is missing"
        return ExpectationResult(name, column, ERROR, False, observed, [], None)
    scored = [
        c for c in ("propensity_30d", "cluster_id", "rfm_cell") if c in table_columns(con, table)
    ]
    if not scored:
        return ExpectationResult(name, column, ERROR, True, {"scored_without_consent": 0}, [], 0)
    has_score = " or ".join(f"s.{quote_ident(c)} is not null" for c in scored)
    rows = con.execute(
        f"""
        select s.person_id, count(*) over () as n
        from {table_ref(table)} as s
        left join {table_ref("marts.customer_profiles")} as p on p.person_id = s.person_id
        where ({has_score}) and not coalesce(p.consent_analytics, false)
        order by s.person_id
        limit ?
        """,
        [EXAMPLES],
    ).fetchall()
    count = int(rows[0][1]) if rows else 0
    examples = [{"person_id": person} for person, _ in rows]
    return ExpectationResult(
        name, column, ERROR, not rows, {"scored_without_consent": count}, examples, count
    )


def rows_reconcile(
    con: duckdb.DuckDBPyConnection, table: str, parameters: Mapping[str, Any]
) -> ExpectationResult:
    """Nothing lost at ingest: for each file the ledger says is loaded (its newest loaded
    version), rows read = rows in the raw table + rows in its quarantine + rows dropped at load
    by the erasure suppression list + rows erasure removed since; and every raw or quarantined
    row's file has such a ledger row."""
    name, column = "rows_reconcile", "_file"
    source = table.split(".", 1)[1]
    quarantine = f"{table}_quarantine"
    missing = [t for t in ("raw.load_ledger", quarantine) if not table_columns(con, t)]
    if missing:
        observed = f"cannot reconcile: {', '.join(missing)} does not exist"
        return ExpectationResult(name, column, ERROR, False, observed, [], None)
    ledger_columns = table_columns(con, "raw.load_ledger")
    # ledgers written before rows_read existed: loaded + quarantined is all they can say
    read = "coalesce(rows_read, rows_loaded + rows_quarantined)"
    if "rows_read" not in ledger_columns:
        read = "rows_loaded + rows_quarantined"
    suppressed = "coalesce(rows_suppressed, 0)" if "rows_suppressed" in ledger_columns else "0"
    if table_columns(con, "privacy.erased_rows"):
        erased = """
            select e.path, sum(e.rows) as n
            from privacy.erased_rows as e
            join ledger as l on l.path = e.path
            where e.source = $source and e.erased_at >= l.loaded_at
            group by e.path
        """
    else:
        erased = "select cast(null as varchar) as path, cast(0 as bigint) as n where false"
    rows = con.execute(
        f"""
        with ledger as (
            select path, arg_max({read}, loaded_at) as rows_read,
                   arg_max({suppressed}, loaded_at) as rows_suppressed,
                   max(loaded_at) as loaded_at
            from raw.load_ledger
            where source = $source and status = 'loaded'
            group by path
        ),
        erased as ({erased}),
        loaded as (select _file as path, count(*) as n from {table_ref(table)} group by _file),
        quarantined as (
            select _file as path, count(*) as n from {table_ref(quarantine)} group by _file
        ),
        files as (
            select path from ledger union select path from loaded
            union select path from quarantined
        ),
        joined as (
            select f.path, l.path is not null as in_ledger, l.rows_read,
                   coalesce(r.n, 0) as rows_loaded, coalesce(q.n, 0) as rows_quarantined,
                   coalesce(l.rows_suppressed, 0) + coalesce(e.n, 0) as rows_removed
            from files f
            left join ledger l on l.path is not distinct from f.path
            left join loaded r on r.path is not distinct from f.path
            left join quarantined q on q.path is not distinct from f.path
            left join erased e on e.path is not distinct from f.path
        )
        select path, in_ledger, rows_read, rows_loaded, rows_quarantined, rows_removed,
               count(*) over () as bad,
               (select count(*) from joined) as files,
               (select coalesce(sum(rows_read), 0) from joined) as total_read,
               (select coalesce(sum(rows_loaded + rows_quarantined), 0) from joined) as total_kept,
               (select coalesce(sum(rows_removed), 0) from joined) as total_removed
        from joined
        where not in_ledger
           or rows_read is distinct from rows_loaded + rows_quarantined + rows_removed
        union all
        select null, null, null, null, null, null, 0,
               (select count(*) from joined),
               (select coalesce(sum(rows_read), 0) from joined),
               (select coalesce(sum(rows_loaded + rows_quarantined), 0) from joined),
               (select coalesce(sum(rows_removed), 0) from joined)
        order by bad desc, path
        limit $limit
        """,
        {"source": source, "limit": EXAMPLES + 1},
    ).fetchall()
    failing = [r for r in rows if r[6]]
    files, total_read, total_kept, total_removed = rows[0][7], rows[0][8], rows[0][9], rows[0][10]
    observed = {
        "files": int(files),
        "rows_read": int(total_read),
        "rows_loaded_plus_quarantined": int(total_kept),
        "rows_suppressed_or_erased": int(total_removed),
        "mismatched_files": int(failing[0][6]) if failing else 0,
    }
    examples = [
        {
            "file": path,
            "in_ledger": in_ledger,
            "rows_read": read_n,
            "rows_loaded": loaded_n,
            "rows_quarantined": quarantined_n,
            "rows_suppressed_or_erased": removed_n,
        }
        for path, in_ledger, read_n, loaded_n, quarantined_n, removed_n, *_ in failing[:EXAMPLES]
    ]
    count = observed["mismatched_files"]
    return ExpectationResult(
        name, column, ERROR, not failing, observed, to_jsonable(examples), count
    )


def segment_sizes_match_members(
    con: duckdb.DuckDBPyConnection, table: str, parameters: Mapping[str, Any]
) -> ExpectationResult:
    """segment_summary.members equals the rows of segment_members per published segment, and an
    unpublished segment (below its minimum size) has no member rows."""
    name, column = "segment_sizes_match_members", "members"
    if not table_columns(con, "marts.segment_members"):
        observed = "cannot compare: marts.segment_members does not exist"
        return ExpectationResult(name, column, ERROR, False, observed, [], None)
    # a summary without `published` (older warehouses) publishes every segment
    published = (
        "case when s.published then s.members else 0 end"
        if "published" in table_columns(con, "marts.segment_summary")
        else "s.members"
    )
    rows = con.execute(
        f"""
        with counted as (
            select segment_id, count(*) as n from {table_ref("marts.segment_members")}
            group by segment_id
        )
        select coalesce(s.segment_id, c.segment_id) as segment_id, s.members,
               coalesce(c.n, 0) as member_rows, count(*) over () as bad
        from {table_ref("marts.segment_summary")} s
        full join counted c on c.segment_id = s.segment_id
        where {published} is distinct from coalesce(c.n, 0)
        order by 1 limit ?
        """,
        [EXAMPLES],
    ).fetchall()
    if not rows:
        return ExpectationResult(name, column, ERROR, True, {"mismatched_segments": 0}, [], 0)
    examples = [{"segment_id": s, "members": m, "member_rows": n} for s, m, n, _ in rows]
    count = int(rows[0][3])
    observed = {"mismatched_segments": count}
    return ExpectationResult(name, column, ERROR, False, observed, to_jsonable(examples), count)


SQL_CHECKS: dict[
    str, Callable[[duckdb.DuckDBPyConnection, str, Mapping[str, Any]], ExpectationResult]
] = {
    "segment_member_consent": segment_member_consent,
    "score_consent": score_consent,
    "rows_reconcile": rows_reconcile,
    "segment_sizes_match_members": segment_sizes_match_members,
}


# Landing gates: the files behind raw.<source> (docs/internals.md, Quality). Each judges the
# current version of every path (the ledger's newest row): an error stands, run after run, while
# that version is current and still in the landing zone (re-deliver it fixed, remove it, or set
# its source's policy to warn); a warning is reported in the run that loaded the version only.
LANDING_CHECKS = ("rejected_files", "quarantine_share", "schema_drift")


def _current_files(con: duckdb.DuckDBPyConnection, source: str) -> list[dict[str, Any]]:
    """The ledger's newest row of each path of `source` (the version raw holds, or rejected)."""
    columns = table_columns(con, "raw.load_ledger")
    if not columns:
        return []
    run_id = "run_id" if "run_id" in columns else "null::varchar as run_id"
    drift = "schema_drift" if "schema_drift" in columns else "null::varchar as schema_drift"
    cursor = con.execute(
        f"""
        select path, status, message, rows_loaded, rows_quarantined, {run_id}, {drift}
        from raw.load_ledger
        where source = $source
        qualify row_number() over (partition by path order by loaded_at desc) = 1
        """,
        {"source": source},
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def _pct(share: float) -> str:
    return f"{share:.1%}".replace(".0%", "%")


def _landing_result(
    name: str,
    findings: list[tuple[str, str, dict[str, Any]]],
    present: set[str] | None,
    run_id: str | None,
    files: int,
) -> ExpectationResult:
    """One gate's result from its (severity, message, row) findings: errors count while the file
    is present; warnings only in the run that loaded the file's version."""
    kept = []
    for severity, message, row in findings:
        if severity == ERROR and present is not None and row["path"] not in present:
            continue
        if severity == WARN and run_id is not None and row["run_id"] != run_id:
            continue
        kept.append((severity, message, row))
    kept.sort(key=lambda f: (f[0] != ERROR, f[2]["path"]))
    severity = ERROR if any(s == ERROR for s, _, _ in kept) else WARN
    examples = [{"file": r["path"], "severity": s, "finding": m} for s, m, r in kept]
    observed = {
        "files_checked": files,
        "errors": sum(s == ERROR for s, _, _ in kept),
        "warnings": sum(s == WARN for s, _, _ in kept),
    }
    return ExpectationResult(name, "_file", severity, not kept, observed, examples, len(kept))


def landing_checks(
    con: duckdb.DuckDBPyConnection,
    source: str,
    gates: LandingGates,
    present: Sequence[str] | None = None,
    run_id: str | None = None,
) -> list[ExpectationResult]:
    """`rejected_files`, `quarantine_share` and `schema_drift` of one landing source.

    `present`: paths (relative to the landing root) now in the landing zone; an error about a
    file no longer there is dropped (None: keep all). `run_id`: the run checking; warnings name
    only the file versions it loaded (None: all current versions).
    """
    present_set = set(present) if present is not None else None
    results = []
    current = _current_files(con, source)
    loaded = [r for r in current if r["status"] == "loaded"]

    rejected = [r for r in current if r["status"] == "rejected"]
    findings = []
    for row in rejected:
        rule = (row["message"] or "rejected").removeprefix(f"{row['path']}: ")
        findings.append((gates.rejected_file, f"{row['path']} rejected: {rule}", row))
    results.append(_landing_result("rejected_files", findings, present_set, run_id, len(current)))

    quarantined = [r for r in loaded if r["rows_quarantined"]]
    findings = []
    flagged = []
    for row in quarantined:
        bad = int(row["rows_quarantined"])
        total = int(row["rows_loaded"] or 0) + bad
        share = bad / total if total else 0.0
        if share <= gates.quarantine_warn_share:
            continue
        severity, limit = WARN, gates.quarantine_warn_share
        note = ""
        if share > gates.quarantine_error_share:
            limit = gates.quarantine_error_share
            if total >= gates.min_rows or bad == total:
                severity = ERROR
            else:
                note = f"; only {total} rows (< {gates.min_rows}), so a warning"
        flagged.append(row["path"])
        findings.append(
            (
                severity,
                f"{row['path']}: {_pct(share)} of {total} rows quarantined "
                f"(limit {_pct(limit)}){note}; top rules: ",
                row,
            )
        )
    rules = _top_rules(con, source, flagged)
    findings = [(s, m + (rules.get(r["path"]) or "none recorded"), r) for s, m, r in findings]
    results.append(_landing_result("quarantine_share", findings, present_set, run_id, len(current)))

    drifted = [r for r in loaded if r["schema_drift"] is not None]
    findings = []
    for row in drifted:
        for item in json.loads(row["schema_drift"]):
            findings.append(_drift_finding(row, item, gates))
    results.append(_landing_result("schema_drift", findings, present_set, run_id, len(current)))
    return results


def _top_rules(con: duckdb.DuckDBPyConnection, source: str, paths: list[str]) -> dict[str, str]:
    """'rule n, rule n, rule n': the three commonest quarantine rules of each file in `paths`."""
    quarantine = f"raw.{source}_quarantine"
    if not paths or not table_columns(con, quarantine):
        return {}
    rows = con.execute(
        f"""
        select _file, rule, count(*) as n
        from {table_ref(quarantine)}
        where _file in (select unnest($paths::varchar[]))
        group by _file, rule
        qualify row_number() over (partition by _file order by n desc, rule) <= 3
        order by _file, n desc, rule
        """,
        {"paths": paths},
    ).fetchall()
    tops: dict[str, list[str]] = {}
    for path, rule, n in rows:
        tops.setdefault(path, []).append(f"{rule} {n}")
    return {path: ", ".join(parts) for path, parts in tops.items()}


def _drift_finding(
    row: Mapping[str, Any], item: Mapping[str, Any], gates: LandingGates
) -> tuple[str, str, Mapping[str, Any]]:
    path = row["path"]
    if item["kind"] == "renamed":
        # names that only hold one another (`source` in `source_system`) are a guess: warn
        certain = item.get("alike", 1.0) >= RENAMED_SIMILARITY
        return (
            gates.schema_drift if certain else WARN,
            f"{path}: column `{item['column']}` missing, unknown column `{item['found']}` "
            "found: renamed?" + ("" if certain else " (names only overlap, so a warning)"),
            row,
        )
    if item["kind"] == "retyped":
        values, failing = int(item["values"]), int(item["failing"])
        severity = gates.schema_drift
        note = ""
        if values < gates.min_rows and failing < values:
            severity, note = WARN, f"; only {values} values (< {gates.min_rows}), so a warning"
        examples = ", ".join(repr(v) for v in item.get("examples") or [])
        return (
            severity,
            f"{path}: column `{item['column']}` retyped: expected {item['expected']}, found "
            f"{item['found']} ({failing} of {values} non-empty values do not cast"
            + (f", e.g. {examples}" if examples else "")
            + f"){note}",
            row,
        )
    columns = ", ".join(f"`{c}`" for c in item["columns"])
    return (WARN, f"{path}: unknown column(s) {columns} kept in _extra", row)
