"""Settings the dbt identity layer reads: the manual overrides CSV
(`intermediate.identity_overrides`) and the guards' parameters and blocklist
(`intermediate.identity_parameters`, `intermediate.identity_blocklist`)."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

OVERRIDE_COLUMNS = (
    "left_source_system",
    "left_source_key",
    "right_source_system",
    "right_source_key",
    "action",
    "reason",
)
OVERRIDE_ACTIONS = ("never_merge", "always_merge")


def write_overrides(con: duckdb.DuckDBPyConnection, path: str | Path | None) -> int:
    """Load the manual overrides CSV into `intermediate.identity_overrides` (replaced each run;
    a missing file means no overrides). Raise ValueError naming the file and row when invalid."""
    con.execute("create schema if not exists intermediate")
    con.execute(
        "create or replace table intermediate.identity_overrides ("
        "left_source_system varchar not null, left_source_key varchar not null, "
        "right_source_system varchar not null, right_source_key varchar not null, "
        "action varchar not null, reason varchar)"
    )
    if path is None or not Path(path).is_file():
        return 0
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = {(h or "").strip().lower() for h in reader.fieldnames or []}
        missing = [c for c in OVERRIDE_COLUMNS[:5] if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        for number, raw in enumerate(reader, start=2):
            if None in raw:
                raise ValueError(f"{path}, line {number}: more fields than columns (quote commas)")
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            values = [row.get(c, "") for c in OVERRIDE_COLUMNS]
            if not all(values[:4]):
                raise ValueError(f"{path}, line {number}: a record side is blank")
            values[4] = values[4].lower()
            if values[4] not in OVERRIDE_ACTIONS:
                raise ValueError(
                    f"{path}, line {number}: action {values[4]!r} is not one of "
                    f"{', '.join(OVERRIDE_ACTIONS)}"
                )
            rows.append(values)
    if rows:
        con.executemany(
            "insert into intermediate.identity_overrides values (?, ?, ?, ?, ?, ?)", rows
        )
    return len(rows)


def write_identity_parameters(
    con: duckdb.DuckDBPyConnection,
    *,
    max_cluster_size: int,
    max_values_per_type: int,
    match_threshold: float,
    blocklist: list[str] | tuple[str, ...] = (),
) -> None:
    """The identity settings the dbt layer reads: `intermediate.identity_parameters`
    (name, value) and `intermediate.identity_blocklist` (value: extra junk identifier values)."""
    if max_cluster_size < 2 or max_values_per_type < 1:
        raise ValueError("max_cluster_size must be >= 2 and max_values_per_type >= 1")
    con.execute("create schema if not exists intermediate")
    con.execute(
        "create or replace table intermediate.identity_parameters "
        "(name varchar not null primary key, value double not null)"
    )
    con.executemany(
        "insert into intermediate.identity_parameters values (?, ?)",
        [
            ("max_cluster_size", float(max_cluster_size)),
            ("max_values_per_type", float(max_values_per_type)),
            ("match_threshold", float(match_threshold)),
        ],
    )
    con.execute("create or replace table intermediate.identity_blocklist (value varchar not null)")
    values = sorted({v.strip().lower() for v in blocklist if v and v.strip()})
    if values:
        con.executemany(
            "insert into intermediate.identity_blocklist values (?)", [(v,) for v in values]
        )
