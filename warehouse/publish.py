"""The serving snapshot: a separate DuckDB file analysts read, swapped in atomically."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

PUBLISHED_SCHEMAS = ("marts", "ml")
# dbt-duckdb's intermediate relations: left behind only by a run killed mid-swap, never served.
SCRATCH_SUFFIXES = ("__dbt_tmp", "__dbt_backup")

# Direct identifiers never leave the warehouse: dropped from the snapshot, not renamed.
DIRECT_IDENTIFIER_COLUMNS = frozenset(
    {
        "first_name",
        "last_name",
        "first_name_display",
        "last_name_display",
        "full_name",
        "email",
        "email_normalised",
        "receipt_email",
        "phone",
        "phone_e164",
        "street_address",
        "date_of_birth",
        "record",
    }
)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def publish_snapshot(con: duckdb.DuckDBPyConnection, serving_path: str | Path) -> dict:
    """Copy every table of the published schemas, minus identifier columns, then swap files.

    Readers holding the old file keep reading it; new readers open the new one. A crash before
    the swap leaves the previous snapshot untouched (the temporary file is removed next time).
    """
    serving = Path(serving_path)
    serving.parent.mkdir(parents=True, exist_ok=True)
    # A publish killed before its swap leaves its temporary file (and DuckDB's WAL beside it).
    for pattern in (".*.tmp", ".*.tmp.wal"):
        for stale in serving.parent.glob(serving.name + pattern):
            stale.unlink(missing_ok=True)
    tmp = serving.with_name(f"{serving.name}.{uuid.uuid4().hex}.tmp")
    tables: dict[str, int] = {}
    dropped: dict[str, list[str]] = {}
    con.execute("attach ? as snapshot", [str(tmp)])
    try:
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"create schema if not exists snapshot.{_quote(schema)}")
            names = con.execute(
                """
                select table_name from information_schema.tables
                where table_catalog = current_database() and table_schema = ?
                  and table_type = 'BASE TABLE'
                order by table_name
                """,
                [schema],
            ).fetchall()
            for (name,) in names:
                if name.endswith(SCRATCH_SUFFIXES):
                    continue
                columns = [
                    c
                    for (c,) in con.execute(
                        """
                        select column_name from information_schema.columns
                        where table_catalog = current_database() and table_schema = ?
                          and table_name = ?
                        order by ordinal_position
                        """,
                        [schema, name],
                    ).fetchall()
                ]
                keep = [c for c in columns if c.lower() not in DIRECT_IDENTIFIER_COLUMNS]
                removed = [c for c in columns if c.lower() in DIRECT_IDENTIFIER_COLUMNS]
                if removed:
                    dropped[f"{schema}.{name}"] = removed
                select_list = ", ".join(_quote(c) for c in keep) or "1 as empty"
                con.execute(
                    f"create table snapshot.{_quote(schema)}.{_quote(name)} as "
                    f"select {select_list} from {_quote(schema)}.{_quote(name)}"
                )
                tables[f"{schema}.{name}"] = con.execute(
                    f"select count(*) from snapshot.{_quote(schema)}.{_quote(name)}"
                ).fetchone()[0]
        con.execute("checkpoint snapshot")
    finally:
        con.execute("detach snapshot")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, serving)
    dir_fd = os.open(serving.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return {"path": str(serving), "tables": tables, "dropped_columns": dropped}
