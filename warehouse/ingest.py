"""File ingest from the landing zone into the `raw` schema (data-contracts.md section 2).

Every file is read by DuckDB into a temporary all-VARCHAR stage, then one SQL rule set types it
into `raw.<source>` or quarantines each broken row into `raw.<source>_quarantine`. Each file is
loaded in one transaction with its `raw.load_ledger` row, so a crash never leaves half a file.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from warehouse.erasure import drop_suppressed
from warehouse.sources import RENAMED_SIMILARITY, RETYPED_SHARE, SOURCES, Column, SourceSpec

__all__ = ["SOURCES", "FileResult", "LoadResult", "ensure_raw_schema", "load_source"]

META_COLUMNS = (
    ("_file", "VARCHAR"),
    ("_row_number", "BIGINT"),
    ("_loaded_at", "TIMESTAMP"),
    ("_extra", "VARCHAR"),
    ("_flags", "VARCHAR"),
)
QUARANTINE_COLUMNS = (
    ("_file", "VARCHAR"),
    ("_row_number", "BIGINT"),
    ("rule", "VARCHAR"),
    ("record", "VARCHAR"),
    ("quarantined_at", "TIMESTAMP"),
)
LEDGER_COLUMNS = (
    ("source", "VARCHAR"),
    ("path", "VARCHAR"),
    ("sha256", "VARCHAR"),
    ("rows_loaded", "BIGINT"),
    ("rows_quarantined", "BIGINT"),
    ("status", "VARCHAR"),
    ("message", "VARCHAR"),
    ("loaded_at", "TIMESTAMP"),
    # data rows the reader produced (loaded + quarantined); the raw gates reconcile against it
    ("rows_read", "BIGINT"),
    # rows read but dropped because they carry a key on the erasure suppression list
    ("rows_suppressed", "BIGINT"),
    # the file's columns against its source's: JSON list of findings (see `_schema_drift`)
    ("schema_drift", "VARCHAR"),
    # the orchestrator's run that loaded this version (warnings are reported in that run only)
    ("run_id", "VARCHAR"),
)
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_CHUNK = 1 << 20
_HEADER_LIMIT = 1 << 20
# A CSV or JSON line may hold a field this long (DuckDB's default is 2 MB).
_MAX_LINE = 100_000_000
_GZIP_MAGIC = b"\x1f\x8b"
_GLOB_CHARS = "*?[]{}"
# Temporary tables private to this module (one ingest at a time per connection).
_STAGE = "temp._ingest_stage"
_LINES = "temp._ingest_lines"
_SCRATCH = (
    "temp._ingest_checked",
    "temp._ingest_raw_lines",
    "temp._ingest_parsed",
    "temp._ingest_parsed2",
    "temp._ingest_gaps",
    "temp._ingest_stage2",
    "temp._ingest_malformed",
    "temp._ingest_good",
    "temp._ingest_rejects2",
    "temp._ingest_scans2",
)
_REJECTS = "_ingest_rejects"
_SCANS = "_ingest_scans"
_MALFORMED = (
    "temp._ingest_malformed"  # (_row_number, rule, record): rows the reader could not split
)
# An offset at the end of a time part: such values are cast via TIMESTAMPTZ, naive ones are UTC.
_OFFSET_RE = r"\d:\d\d(:\d\d(\.\d*)?)?\s*([Zz]|[+-]\d\d(:?\d\d)?)$"
_TRUE = "('true', 't', '1', 'yes', 'y')"
_FALSE = "('false', 'f', '0', 'no', 'n')"


@dataclass
class FileResult:
    """Outcome for one discovered file."""

    path: str
    status: str  # 'loaded', 'rejected' or 'skipped'
    sha256: str
    rows_loaded: int = 0
    rows_quarantined: int = 0
    message: str | None = None
    replaced: bool = False  # a new version of a path loaded before
    rows_read: int | None = None  # None for a rejected file
    rows_suppressed: int = 0  # dropped: an erased person's record delivered again
    # unknown, renamed and retyped columns of a loaded file (ledger `schema_drift`)
    schema_drift: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LoadResult:
    """Outcome of `load_source` for one source."""

    source: str
    files_seen: int = 0
    files_loaded: int = 0
    files_skipped_unchanged: int = 0
    files_rejected: list[tuple[str, str]] = field(default_factory=list)
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_suppressed: int = 0
    files: list[FileResult] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.source}: {self.files_seen} files seen, {self.files_loaded} loaded, "
            f"{self.files_skipped_unchanged} unchanged, {len(self.files_rejected)} rejected; "
            f"{self.rows_loaded} rows loaded, {self.rows_quarantined} quarantined"
        )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str | int | bool) -> str:
    # Only for constants from the source specs, never for values read from files.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _ddl(columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{_ident(n)} {t}" for n, t in columns)


def _spec(source: str) -> SourceSpec:
    try:
        return SOURCES[source]
    except KeyError:
        raise ValueError(f"unknown source {source!r}; expected one of {sorted(SOURCES)}") from None


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create schema `raw` with every source table, its quarantine table and the load ledger."""
    con.execute("create schema if not exists raw")
    for spec in SOURCES.values():
        cols = tuple((c.name, c.type) for c in spec.columns) + META_COLUMNS
        con.execute(f"create table if not exists {spec.table} ({_ddl(cols)})")
        con.execute(
            f"create table if not exists {spec.quarantine_table} ({_ddl(QUARANTINE_COLUMNS)})"
        )
    con.execute(f"create table if not exists raw.load_ledger ({_ddl(LEDGER_COLUMNS)})")
    # Warehouses created before a ledger column existed gain it (older rows hold NULL).
    for name, dtype in LEDGER_COLUMNS:
        con.execute(f"alter table raw.load_ledger add column if not exists {_ident(name)} {dtype}")


def _skip_name(name: str) -> bool:
    low = name.lower()
    return name.startswith((".", "_")) or low.endswith((".tmp", ".part"))


def discover_files(landing_root: str | Path, source: str) -> list[tuple[str, Path]]:
    """(path relative to the landing root, absolute path) of each data file, sorted by path."""
    root = Path(landing_root)
    folder = root / source
    if not folder.is_dir():
        return []
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in filenames:
            if _skip_name(name) or Path(name).suffix.lower() not in FORMATS:
                continue
            full = Path(dirpath) / name
            if full.is_file():
                found.append((full.relative_to(root).as_posix(), full))
    return sorted(found)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Rejected(Exception):
    """The whole file is rejected; the message names the file."""


@dataclass
class _Stage:
    """An all-VARCHAR stage table of columns c0..cN (JSON stages add `_line`, `_json_invalid`)."""

    names: list[str]  # original column name of c<i>
    json: bool
    row_expr: str = "s._row_number"  # SQL for the 1-based data row number
    malformed: int = 0  # rows in the malformed table (lines the reader could not split)
    types: list[str] | None = None  # the file's own column types (Parquet); None: all text


def _drop_temp(con: duckdb.DuckDBPyConnection) -> None:
    for table in (_STAGE, _LINES, f"temp.{_REJECTS}", f"temp.{_SCANS}", *_SCRATCH):
        con.execute(f"drop table if exists {table}")


def _compression(path: Path) -> str:
    """'gzip' for gzip bytes whatever the name says (a `.csv` that is really `.csv.gz`)."""
    with path.open("rb") as fh:
        return "gzip" if fh.read(2) == _GZIP_MAGIC else "none"


def _csv_header(path: Path, rel: str, compression: str) -> list[str] | None:
    opener = gzip.open if compression == "gzip" else open
    try:
        with opener(path, "rb") as fh:
            first = fh.readline(_HEADER_LIMIT)
    except (OSError, EOFError) as exc:
        raise _Rejected(f"{rel}: cannot read the file: {exc}") from None
    if not first.strip(b"\r\n\t \xef\xbb\xbf"):
        return None
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _Rejected(f"{rel}: header row is not UTF-8") from None
    row = next(csv.reader([text.rstrip("\r\n")]), [])
    return row


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"select count(*) from {table}").fetchone()
    return int(row[0]) if row else 0


def _read_csv_sql(header: bool, rejects: str, scans: str, columns: str = "$columns") -> str:
    return f"""
        read_csv($path, header = {"true" if header else "false"}, auto_detect = false,
                 columns = {columns}, delim = ',', quote = '"', escape = '"',
                 strict_mode = true, max_line_size = {_MAX_LINE}, compression = $compression,
                 store_rejects = true, rejects_table = '{rejects}', rejects_scan = '{scans}')
    """


def _stage_csv(
    con: duckdb.DuckDBPyConnection, path: Path, rel: str, compression: str
) -> _Stage | None:
    header = _csv_header(path, rel, compression)
    if header is None:
        return None
    columns = {f"c{i}": "VARCHAR" for i in range(len(header))}
    params = {"path": str(path), "columns": columns, "compression": compression}
    con.execute(
        f"create temp table _ingest_stage as select * from {_read_csv_sql(True, _REJECTS, _SCANS)}",
        params,
    )
    # An unbalanced quote makes the reader swallow the following lines into one bad record:
    # re-read line by line so every other row still loads.
    swallowed = con.execute(
        f"select count(*) from temp.{_REJECTS} "
        "where contains(rtrim(csv_line, chr(10) || chr(13)), chr(10))"
    ).fetchone()[0]
    if swallowed:
        _drop_temp(con)
        return _stage_csv_lines(con, header, params)
    con.execute(
        f"""
        create temp table _ingest_malformed as
        select line - 1 as _row_number, 'csv_malformed' as rule,
               trim(any_value(csv_line order by byte_position), chr(10) || chr(13)) as record
        from temp.{_REJECTS} group by line
        """
    )
    # rowid follows insertion order: the stage is created outside any transaction.
    return _Stage(header, json=False, row_expr="(s.rowid + 1)", malformed=_count(con, _MALFORMED))


def _physical_lines(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> None:
    """`_ingest_lines(ln, line)`: every physical line with its 1-based number, and the lines
    the reader rejects (not UTF-8) in the malformed table with rule `malformed_rule`."""
    con.execute(
        f"""
        create temp table _ingest_raw_lines as
        select line
        from read_csv($path, header = false, auto_detect = false,
                      columns = {{'line': 'VARCHAR'}}, delim = $delim, quote = '',
                      escape = '', strict_mode = false, max_line_size = {_MAX_LINE},
                      compression = $compression,
                      store_rejects = true, rejects_table = '{_REJECTS}',
                      rejects_scan = '{_SCANS}')
        """,
        {"path": params["path"], "compression": params["compression"], "delim": "\x01"},
    )
    _shift_past_gaps(
        con,
        "temp._ingest_raw_lines",
        "s.rowid + 1",
        f"select distinct line as r from temp.{_REJECTS}",
        "_ingest_lines",
        "ln",
    )


def _shift_past_gaps(
    con: duckdb.DuckDBPyConnection,
    table: str,
    ord_expr: str,
    gaps_sql: str,
    out: str,
    out_col: str,
) -> None:
    """Create temp table `out` = `table` plus `out_col`: its ordinal `ord_expr` (over alias `s`)
    shifted past the numbers in `gaps_sql` (rows the reader left out), so both count the same
    physical rows."""
    con.execute(
        f"""
        create or replace temp table _ingest_gaps as
        select gap, max(j) as skipped
        from (
            select r, row_number() over (order by r) as j, r - row_number() over (order by r) as gap
            from ({gaps_sql})
        )
        group by gap
        """
    )
    con.execute(
        f"""
        create or replace temp table {out} as
        select s.*, {ord_expr} + coalesce(g.skipped, 0) as {out_col}
        from {table} s
        asof left join temp._ingest_gaps g on {ord_expr} > g.gap
        """
    )
    con.execute("drop table temp._ingest_gaps")
    if table.removeprefix("temp.") != out:
        con.execute(f"drop table {table}")


def _stage_csv_lines(
    con: duckdb.DuckDBPyConnection, header: list[str], params: dict[str, Any]
) -> _Stage:
    """Line mode for a CSV with an unbalanced quote: each physical line is one record; a line
    with an odd number of quotes is malformed, the others are parsed as CSV."""
    _physical_lines(con, params)
    con.execute(
        f"""
        create temp table _ingest_malformed as
        select line - 1 as _row_number, 'csv_malformed' as rule,
               trim(any_value(csv_line order by byte_position), chr(10) || chr(13)) as record
        from temp.{_REJECTS} where line > 1 group by line
        union all
        select ln - 1, 'csv_malformed', rtrim(line, chr(13))
        from temp._ingest_lines
        where ln > 1 and (length(line) - length(replace(line, '"', ''))) % 2 = 1
        """
    )
    con.execute(
        """
        create temp table _ingest_good as
        select row_number() over (order by ln) as k, ln, line
        from temp._ingest_lines
        where ln > 1 and trim(line, ' ' || chr(9) || chr(13)) <> ''
          and (length(line) - length(replace(line, '"', ''))) % 2 = 0
        """
    )
    handle, tmp_name = tempfile.mkstemp(prefix="microseg-ingest-", suffix=".csv")
    os.close(handle)
    try:
        con.execute(
            "copy (select line from temp._ingest_good order by k) to "
            f"'{_sql_path(tmp_name)}' (format csv, header false, quote '', escape '', "
            "delimiter '\x01')"
        )
        con.execute(
            "create temp table _ingest_parsed as select * from "
            f"{_read_csv_sql(False, '_ingest_rejects2', '_ingest_scans2')}",
            {"path": tmp_name, "columns": params["columns"], "compression": "none"},
        )
    finally:
        os.unlink(tmp_name)
    con.execute(
        """
        insert into temp._ingest_malformed
        select g.ln - 1, 'csv_malformed',
               trim(any_value(r.csv_line order by r.byte_position), chr(10) || chr(13))
        from temp._ingest_rejects2 r join temp._ingest_good g on g.k = r.line
        group by g.ln
        """
    )
    _shift_past_gaps(
        con,
        "temp._ingest_parsed",
        "s.rowid + 1",
        "select distinct line as r from temp._ingest_rejects2",
        "_ingest_parsed2",
        "k",
    )
    con.execute(
        """
        create temp table _ingest_stage as
        select p.* exclude (k), g.ln - 1 as _row_mapped
        from temp._ingest_parsed2 p join temp._ingest_good g using (k)
        """
    )
    for table in ("_ingest_parsed2", "_ingest_good", "_ingest_lines"):
        con.execute(f"drop table if exists temp.{table}")
    return _Stage(header, json=False, row_expr="s._row_mapped", malformed=_count(con, _MALFORMED))


def _sql_path(path: str) -> str:
    # A path we created ourselves (mkstemp); quotes doubled all the same.
    return path.replace("'", "''")


def _stage_jsonl(con: duckdb.DuckDBPyConnection, path: Path, compression: str) -> _Stage | None:
    # One VARCHAR column per physical line: no quoting, a delimiter JSON text never holds raw.
    _physical_lines(con, {"path": str(path), "compression": compression})
    con.execute(
        f"""
        create temp table _ingest_malformed as
        select line as _row_number, 'json_invalid' as rule,
               trim(any_value(csv_line order by byte_position), chr(10) || chr(13)) as record
        from temp.{_REJECTS} group by line
        """
    )
    keys = [
        r[0]
        for r in con.execute(
            f"""
            select distinct unnest(json_keys(line)) as k
            from {_LINES}
            where case when json_valid(line) then json_type(line) = 'OBJECT' else false end
            order by k
            """
        ).fetchall()
    ]
    # JSON Pointer paths ('~' and '/' escaped) so any key text is addressed safely.
    paths = ["/" + k.replace("~", "~0").replace("/", "~1") for k in keys]
    values = ", ".join(f"v[{i + 1}] as c{i}" for i in range(len(keys)))
    con.execute(
        f"""
        create temp table _ingest_stage as
        select _row_number, line as _line, not ok as _json_invalid{", " if keys else ""}{values}
        from (
            select ln::bigint as _row_number, line, ok,
                   case when ok and len($paths) > 0
                        then json_extract_string(line, $paths) end as v
            from (
                select ln, line,
                       case when json_valid(line) then json_type(line) = 'OBJECT'
                            else false end as ok
                from {_LINES}
                where trim(line) <> ''
            )
        )
        """,
        {"paths": paths or ["/"]},
    )
    if _count(con, _STAGE) == 0 and _count(con, _MALFORMED) == 0:
        return None
    return _Stage(names=keys, json=True, malformed=_count(con, _MALFORMED))


def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> _Stage:
    described = con.execute(
        "select column_name, column_type from (describe select * from read_parquet($path))",
        {"path": str(path)},
    ).fetchall()
    exprs = []
    for i, (name, ctype) in enumerate(described):
        col = _ident(name)
        if str(ctype).upper().startswith("TIMESTAMP WITH TIME ZONE"):
            # Render instants in UTC whatever the session TimeZone is.
            col = f"timezone('UTC', {col})"
        exprs.append(f"cast({col} as varchar) as c{i}")
    select = ", ".join(["(file_row_number + 1)::bigint as _row_number"] + exprs)
    con.execute(
        f"""
        create temp table _ingest_stage as
        select {select} from read_parquet($path, file_row_number = true)
        """,
        {"path": str(path)},
    )
    return _Stage(names=[n for n, _ in described], json=False, types=[str(t) for _, t in described])


def _typed(col: Column, b: str) -> str:
    """SQL parsing the blank-nulled VARCHAR expression `b` into the column's type (NULL if not)."""
    if col.type == "DOUBLE":
        return f"(case when isfinite(try_cast({b} as double)) then try_cast({b} as double) end)"
    if col.type in ("INTEGER", "BIGINT"):
        d = f"try_cast({b} as double)"
        return f"(case when {d} = trunc({d}) then try_cast({d} as {col.type}) end)"
    if col.type == "BOOLEAN":
        return (
            f"(case when lower({b}) in {_TRUE} then true "
            f"when lower({b}) in {_FALSE} then false end)"
        )
    if col.type == "DATE":
        parsed = f"try_cast({b} as date)"
        if col.compact_date:
            parsed = (
                f"coalesce({parsed}, case when regexp_full_match({b}, '\\d{{8}}') "
                f"then try_strptime({b}, '%Y%m%d')::date end)"
            )
        return f"({parsed})"
    if col.type == "TIMESTAMP":
        return (
            f"(case when regexp_matches({b}, '{_OFFSET_RE}') "
            f"then timezone('UTC', try_cast({b} as timestamptz)) "
            f"else try_cast({b} as timestamp) end)"
        )
    return b


def _bound(bound: str) -> str:
    if bound == "run_date":
        return "$run_date::date"
    if bound == "run_date+1":
        return "($run_date::date + 1)"
    return f"date '{bound}'"


def _build_load_sql(spec: SourceSpec, stage: _Stage) -> tuple[str, dict[str, Any]]:
    """A SELECT over the stage giving every typed column, meta columns, `_record` and `_rule`."""
    params: dict[str, Any] = {}
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(stage.names):
        by_name.setdefault(name.strip().lower(), []).append(i)
    known = {c.name for c in spec.columns}
    extra_idx = [i for i, n in enumerate(stage.names) if n.strip().lower() not in known]

    raw_cols: list[str] = []  # v_<col>: the VARCHAR value as read
    for c in spec.columns:
        idx = by_name.get(c.name, [])
        if not idx:
            v = "null::varchar"
        elif len(idx) == 1:
            v = f"s.c{idx[0]}"
        else:
            v = "coalesce(" + ", ".join(f"s.c{i}" for i in idx) + ")"
        raw_cols.append(f"{v} as {_ident('v_' + c.name)}")

    if extra_idx:
        pairs = []
        for i in extra_idx:
            params[f"n{i}"] = stage.names[i]
            pairs.append(f"$n{i}, s.c{i}")
        all_null = " and ".join(f"s.c{i} is null" for i in extra_idx)
        extra = f"case when {all_null} then null else json_object({', '.join(pairs)}) end"
    else:
        extra = "null::varchar"
    invalid = "s._json_invalid" if stage.json else "false"
    if stage.json:
        record = "s._line"
    elif stage.names:
        pairs = []
        for i, name in enumerate(stage.names):
            params[f"r{i}"] = name
            pairs.append(f"$r{i}, s.c{i}")
        record = f"json_object({', '.join(pairs)})"
    else:
        record = "null::varchar"

    parsed: list[str] = []  # b_<col> (blank → NULL) and p_<col> (parsed)
    final: list[str] = []  # the value stored in raw
    flags: list[str] = []
    required: list[tuple[str, str]] = []
    types: list[tuple[str, str]] = []
    ranges: list[tuple[str, str]] = []
    values: list[tuple[str, str]] = []
    casts: list[str] = []
    for c in spec.columns:
        v, b, p = (_ident(f"{k}_{c.name}") for k in ("v", "b", "p"))
        parsed.append(f"nullif(trim({v}), '') as {b}")
        parsed.append(f"{_typed(c, b)} as {p}")
        if c.required:
            required.append((f"required:{c.name}", f"{b} is null"))
        if c.type != "VARCHAR" and not c.soft_range:
            types.append((f"type:{c.name}", f"{b} is not null and {p} is null"))
        if c.type != "VARCHAR":
            # per typed column: a value given, a value that does not cast (retyped columns)
            casts.append(f"{b} is not null as {_ident('_cv_' + c.name)}")
            casts.append(f"{b} is not null and {p} is null as {_ident('_cf_' + c.name)}")
        if c.type == "VARCHAR":
            value = v
            if c.default is not None:
                value = f"case when {b} is null then {_literal(c.default)} else {v} end"
        elif c.soft_range:
            day = f"{p}::date" if c.type == "TIMESTAMP" else p
            lo, hi = (_bound(x) for x in c.soft_range)
            ok = f"{day} >= {lo} and {day} <= {hi}"
            value = f"case when {ok} then {p} end"
            flags.append(
                f"case when {b} is not null and not coalesce({ok}, false) "
                f"then '{c.name}_invalid' end"
            )
        elif c.default is not None:
            value = f"coalesce({p}, {_literal(c.default)})"
        else:
            value = p
        final.append(f"{value} as {_ident(c.name)}")
        if c.event_time:
            ranges.append(
                (
                    f"event_time_out_of_range:{c.name}",
                    f"{p} < timestamp '1970-01-01' or {p}::date > $run_date::date + 1",
                )
            )
        if c.allowed:
            allowed = "(" + ", ".join(_literal(a) for a in c.allowed) + ")"
            values.append((f"value_not_allowed:{c.name}", f"lower(trim({b})) not in {allowed}"))
        if c.non_negative:
            values.append((f"negative:{c.name}", f"{_ident(c.name)} < 0"))

    ordered = [("json_invalid", "_json_invalid")] + required + types + ranges + values
    ordered += list(spec.rules)
    cases = " ".join(f"when {cond} then '{name}'" for name, cond in ordered)
    flag_expr = f"nullif(concat_ws(',', {', '.join(flags)}), '')" if flags else "null::varchar"
    sql = f"""
        select *, case {cases} end as _rule
        from (
            select *, {", ".join(final + casts)}, {flag_expr} as _flags
            from (
                select *, {", ".join(parsed)}
                from (
                    select {stage.row_expr}::bigint as _row_number, {invalid} as _json_invalid,
                           {record} as _record,
                           {extra} as _extra, {", ".join(raw_cols)}
                    from {_STAGE} s
                )
            )
        )
    """
    return sql, params


def _row_number_map(con: duckdb.DuckDBPyConnection, stage: _Stage) -> None:
    """Shift stage row numbers past malformed rows so both count data rows of the file."""
    con.execute(
        f"create temp table _ingest_stage2 as select {stage.row_expr} as _ord, * from {_STAGE} s"
    )
    con.execute(f"drop table {_STAGE}")
    _shift_past_gaps(
        con,
        "temp._ingest_stage2",
        "s._ord",
        f"select distinct _row_number as r from {_MALFORMED}",
        "_ingest_stage",
        "_row_mapped",
    )
    stage.row_expr = "s._row_mapped"


def _stage_file(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, fmt: str, path: Path, rel: str
) -> _Stage | None:
    """Read one file into the stage (outside any transaction); None for an empty file."""
    with _unglobbed(path) as path:
        return _stage_path(con, spec, fmt, path, rel)


@contextmanager
def _unglobbed(path: Path) -> Iterator[Path]:
    """DuckDB's readers expand glob characters in a path (`[a].csv` would read `a.csv`): read
    such a file through a symlink with a plain name."""
    if not any(ch in path.name or ch in str(path.parent) for ch in _GLOB_CHARS):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="microseg-ingest-") as folder:
        alias = Path(folder) / ("data" + path.suffix.lower())
        alias.symlink_to(path.resolve())
        yield alias


def _stage_path(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, fmt: str, path: Path, rel: str
) -> _Stage | None:
    if fmt == "parquet":
        stage: _Stage | None = _stage_parquet(con, path)
    else:
        compression = _compression(path)
        if fmt == "csv":
            stage = _stage_csv(con, path, rel, compression)
        else:
            stage = _stage_jsonl(con, path, compression)
    if stage is None:
        return None
    has_valid = (
        not stage.json
        or con.execute(f"select count(*) from {_STAGE} where not _json_invalid").fetchone()[0] > 0
    )
    if has_valid:
        _check_required_columns(spec, stage, rel)
    if not stage.json and stage.malformed and stage.row_expr != "s._row_mapped":
        _row_number_map(con, stage)
    return stage


def _name_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.strip().lower())


def _alike(known: str, found: str) -> float:
    """How alike two column names are (0..1), ignoring case and punctuation."""
    a, b = _name_key(known), _name_key(found)
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b).ratio()


def _similarity(known: str, found: str) -> float:
    """`_alike`, or 1 where one name holds the other (`email` in `email_address`): weaker
    evidence, as `source` in `source_system` shows, so the drift gate only warns on it."""
    a, b = _name_key(known), _name_key(found)
    if a and b and min(len(a), len(b)) >= 3 and (a in b or b in a):
        return 1.0
    return _alike(known, found)


def _columns_of(spec: SourceSpec, names: list[str]) -> tuple[list[str], list[str]]:
    """(known columns the file lacks, the file's unknown columns with a name) in spec/file order."""
    present = {n.strip().lower() for n in names}
    known = {c.name for c in spec.columns}
    missing = [c.name for c in spec.columns if c.name not in present]
    unknown = [n for n in names if n.strip() and n.strip().lower() not in known]
    return missing, list(dict.fromkeys(unknown))


def _renamed_pairs(missing: list[str], unknown: list[str]) -> list[tuple[str, str]]:
    """(known column, unknown column) pairs where the unknown one likely replaces the known one:
    names at least RENAMED_SIMILARITY alike (or one holding the other), best pairs first, each
    column in one pair at most."""
    scored = sorted(
        (
            (-_similarity(m, u), i, j)
            for i, m in enumerate(missing)
            for j, u in enumerate(unknown)
            if _similarity(m, u) >= RENAMED_SIMILARITY
        ),
    )
    pairs: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in scored:
        if i not in pairs and j not in used:
            pairs[i] = j
            used.add(j)
    return [(missing[i], unknown[j]) for i, j in sorted(pairs.items())]


def _check_required_columns(spec: SourceSpec, stage: _Stage, rel: str) -> None:
    """Reject the file when a required column is missing, naming file, column and a likely cause."""
    missing_known, unknown = _columns_of(spec, stage.names)
    missing = [c for c in spec.required if c in missing_known]
    if not missing:
        return
    plural = "s" if len(missing) > 1 else ""
    message = f"{rel}: missing required column{plural} {', '.join(missing)}"
    renamed = [(m, u) for m, u in _renamed_pairs(missing_known, unknown) if m in missing]
    if len(stage.names) == 1 and any(d in stage.names[0] for d in ";\t|"):
        message += f"; the header is one column {stage.names[0][:80]!r}: wrong delimiter (use ',')?"
    elif renamed:
        message += "; " + "; ".join(
            f"column `{m}` missing, unknown column `{u[:40]}` found: renamed?" for m, u in renamed
        )
    elif unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        message += f"; unknown column(s) {shown} (renamed?)"
    raise _Rejected(message)


def _schema_drift(
    con: duckdb.DuckDBPyConnection,
    spec: SourceSpec,
    stage: _Stage,
    casts: dict[str, tuple[int, int]],
) -> list[dict[str, Any]]:
    """How a loadable file's columns differ from its source's: known columns renamed (missing,
    with a like-named unknown column), other unknown columns (kept in `_extra`), and typed columns
    whose non-empty values mostly do not cast (retyped)."""
    missing, unknown = _columns_of(spec, stage.names)
    renamed = _renamed_pairs(missing, unknown)
    findings: list[dict[str, Any]] = [
        {"kind": "renamed", "column": m, "found": u, "alike": round(_alike(m, u), 3)}
        for m, u in renamed
    ]
    replaced = {u for _, u in renamed}
    rest = [u for u in unknown if u not in replaced]
    if rest:
        findings.append({"kind": "unknown", "columns": rest})
    return findings + _retyped(con, spec, stage, casts)


def _retyped(
    con: duckdb.DuckDBPyConnection,
    spec: SourceSpec,
    stage: _Stage,
    casts: dict[str, tuple[int, int]],
) -> list[dict]:
    """Typed columns whose non-empty values mostly fail to cast; `casts` holds (non-empty
    values, values that do not cast) per typed column, counted while the file was checked."""
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(stage.names):
        by_name.setdefault(name.strip().lower(), []).append(i)
    findings = []
    for c in spec.columns:
        values, failing = casts.get(c.name, (0, 0))
        if c.name not in by_name or not failing or failing < RETYPED_SHARE * values:
            continue
        idx = by_name[c.name]
        blanked = f"nullif(trim(coalesce({', '.join(f's.c{i}' for i in idx)})), '')"
        failing_values = f"""
            select b from (select {blanked} as b from {_STAGE} s)
            where b is not null and {_typed(c, "b")} is null limit 200
        """
        sample = [r[0] for r in con.execute(failing_values).fetchall()]
        found = stage.types[idx[0]] if stage.types else _text_type(con, sample)
        findings.append(
            {
                "kind": "retyped",
                "column": c.name,
                "expected": c.type,
                "found": found,
                "values": values,
                "failing": failing,
                "examples": [v[:40] for v in dict.fromkeys(sample)][:3],
            }
        )
    return findings


def _text_type(con: duckdb.DuckDBPyConnection, values: list[str]) -> str:
    """The narrowest raw type every one of `values` (text that failed its column's cast) casts to,
    with the casts ingest itself uses; VARCHAR when none."""
    for candidate in ("BIGINT", "DOUBLE", "BOOLEAN", "DATE", "TIMESTAMP"):
        ok = con.execute(
            f"select bool_and({_typed(Column('x', candidate), 'x')} is not null) "
            "from (select unnest($v::varchar[]) as x)",
            {"v": values},
        ).fetchone()[0]
        if ok:
            return candidate
    return "VARCHAR"


def _insert_file(
    con: duckdb.DuckDBPyConnection,
    spec: SourceSpec,
    stage: _Stage,
    rel: str,
    run_date: date,
    loaded_at: datetime,
) -> tuple[int, int, int, dict[str, tuple[int, int]]]:
    """Check and insert a staged file inside the caller's transaction: (loaded, quarantined,
    suppressed, {typed column: (non-empty values, values that do not cast)})."""
    select, params = _build_load_sql(spec, stage)
    if "$run_date" in select:
        params["run_date"] = run_date
    names = [c.name for c in spec.columns]
    cols = ", ".join(_ident(n) for n in names)
    meta = ", ".join(_ident(n) for n, _ in META_COLUMNS)
    typed = [c.name for c in spec.columns if c.type != "VARCHAR"]
    flags = "".join(f", {_ident('_cv_' + n)}, {_ident('_cf_' + n)}" for n in typed)
    # One rule pass; the record text is built only for quarantined rows (CASE is lazy).
    con.execute(
        f"""
        create temp table _ingest_checked as
        select {cols}, _row_number, _extra, _flags, _rule{flags},
               case when _rule is not null then _record end as _record
        from ({select})
        """,
        params,
    )
    casts: dict[str, tuple[int, int]] = {}
    if typed:
        counted = ", ".join(
            f"count(*) filter (where {_ident('_cv_' + n)}), "
            f"count(*) filter (where {_ident('_cf_' + n)})"
            for n in typed
        )
        row = con.execute(f"select {counted} from temp._ingest_checked").fetchone()
        casts = {n: (int(row[2 * k]), int(row[2 * k + 1])) for k, n in enumerate(typed)}
    # An erased person's records never come back, whichever file carries them again.
    suppressed = drop_suppressed(con, spec.name, "temp._ingest_checked")
    params = {"file": rel, "at": loaded_at}
    inserted = con.execute(
        f"""
        insert into {spec.table} ({cols}, {meta})
        select {cols}, $file, _row_number, $at, _extra, _flags
        from temp._ingest_checked where _rule is null
        """,
        params,
    ).fetchone()
    quarantined_rows = con.execute(
        f"""
        insert into {spec.quarantine_table}
        select $file, _row_number, _rule, _record, $at
        from temp._ingest_checked where _rule is not null order by _row_number
        """,
        params,
    ).fetchone()
    con.execute("drop table temp._ingest_checked")
    loaded = int(inserted[0]) if inserted else 0
    quarantined = int(quarantined_rows[0]) if quarantined_rows else 0
    if stage.malformed:
        row = con.execute(
            f"""
            insert into {spec.quarantine_table}
            select $file, _row_number, rule, record, $at
            from {_MALFORMED} order by _row_number
            """,
            {"file": rel, "at": loaded_at},
        ).fetchone()
        quarantined += int(row[0]) if row else 0
    return loaded, quarantined, suppressed, casts


def _rows_read(con: duckdb.DuckDBPyConnection, stage: _Stage | None) -> int:
    """Data rows the reader produced: staged rows plus rows it could not split."""
    if stage is None:
        return 0
    # blank lines are not rows: neither stage holds them
    return _count(con, _STAGE) + stage.malformed


def _current_ledger(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    rows = con.execute(
        "select path, arg_max(sha256, loaded_at) from raw.load_ledger where source = $s "
        "group by path",
        {"s": source},
    ).fetchall()
    return {path: sha for path, sha in rows}


def _ledger_row(
    con: duckdb.DuckDBPyConnection,
    source: str,
    result: FileResult,
    loaded_at: datetime,
    run_id: str | None = None,
) -> None:
    names = ", ".join(_ident(n) for n, _ in LEDGER_COLUMNS)
    con.execute(
        f"insert into raw.load_ledger ({names}) "
        "values ($s, $p, $h, $l, $q, $st, $m, $at, $r, $sup, $drift, $run)",
        {
            "s": source,
            "p": result.path,
            "h": result.sha256,
            "l": result.rows_loaded,
            "q": result.rows_quarantined,
            "st": result.status,
            "m": result.message,
            "at": loaded_at,
            "r": result.rows_read,
            "sup": result.rows_suppressed,
            "drift": json.dumps(result.schema_drift) if result.schema_drift else None,
            "run": run_id,
        },
    )


def load_source(
    con: duckdb.DuckDBPyConnection,
    source: str,
    landing_root: str | Path,
    run_date: date,
    run_id: str | None = None,
) -> LoadResult:
    """Load new or changed files of `<landing_root>/<source>/` into `raw`; idempotent.

    `run_id` (the orchestrator's run) is recorded on each ledger row this call writes."""
    spec = _spec(source)
    ensure_raw_schema(con)
    result = LoadResult(source=source)
    files = discover_files(landing_root, source)
    result.files_seen = len(files)
    ledger = _current_ledger(con, source)
    for rel, path in files:
        sha = file_sha256(path)
        previous = ledger.get(rel)
        if previous == sha:
            result.files_skipped_unchanged += 1
            result.files.append(FileResult(rel, "skipped", sha))
            continue
        fmt = FORMATS[path.suffix.lower()]
        # Distinct per file so the ledger's newest row per path is unambiguous.
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        outcome = FileResult(rel, "loaded", sha, replaced=previous is not None)
        _drop_temp(con)
        try:
            try:
                stage = _stage_file(con, spec, fmt, path, rel)
            except (_Rejected, duckdb.Error) as exc:
                # Only reading the file rejects it; warehouse errors below propagate (retryable).
                message = str(exc) if isinstance(exc, _Rejected) else f"{rel}: {exc}"
                outcome = FileResult(rel, "rejected", sha, message=message.splitlines()[0])
                stage = None
            con.execute("begin transaction")
            try:
                if outcome.status == "loaded":
                    if previous is not None:
                        for table in (spec.table, spec.quarantine_table):
                            con.execute(f"delete from {table} where _file = $f", {"f": rel})
                    outcome.rows_read = _rows_read(con, stage)
                    if stage is not None:
                        counts = _insert_file(con, spec, stage, rel, run_date, loaded_at)
                        (
                            outcome.rows_loaded,
                            outcome.rows_quarantined,
                            outcome.rows_suppressed,
                            casts,
                        ) = counts
                        outcome.schema_drift = _schema_drift(con, spec, stage, casts)
                    if stage is None:
                        outcome.message = "empty file: no rows to load"
                # A rejected new version leaves what the path loaded before in place.
                _ledger_row(con, source, outcome, loaded_at, run_id)
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
        finally:
            _drop_temp(con)
        result.files.append(outcome)
        if outcome.status == "rejected":
            result.files_rejected.append((rel, outcome.message or rel))
        else:
            result.files_loaded += 1
            result.rows_loaded += outcome.rows_loaded
            result.rows_quarantined += outcome.rows_quarantined
            result.rows_suppressed += outcome.rows_suppressed
    return result
