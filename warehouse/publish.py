"""The serving snapshot: a separate DuckDB file analysts read, swapped in atomically."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

from warehouse.privacy import PERSON_ID_COLUMNS, legacy_person_id_sql

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

# Source keys and the graph nodes built from them (crm:<system>:<id>, pos:<transaction_id>,
# web:<anonymous_id>) are published only as their keyed hash (HMAC-SHA256, hex, of the value as
# the warehouse holds it): whoever holds a source key and the HMAC key can still look it up.
SOURCE_KEY_COLUMNS = frozenset(
    {
        "source_key",
        "crm_customer_id",
        "anonymous_id",
        "web_anonymous_id",
        "transaction_id",
        "pos_transaction_id",
        "user_id",
        "web_user_id",
        "loyalty_card_id",
        "payment_card_token",
        "subject_id",
        "record_node",
        "node_id",
        "anchor_node",
        "source_node",
        "target_node",
        "left_node",
        "right_node",
        "subject_node",
        "identifier_node",
        # marts.segment_events: a web event id, order or POS transaction; a web session id
        "event_key",
        "session_id",
    }
)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _served_select(
    con: duckdb.DuckDBPyConnection, schema: str, name: str, columns: list[str]
) -> tuple[str, list[str], list[str]]:
    """SELECT of a table's served rows and columns; the columns dropped and keyed."""
    removed = [c for c in columns if c.lower() in DIRECT_IDENTIFIER_COLUMNS]
    keyed = [c for c in columns if c.lower() in SOURCE_KEY_COLUMNS]
    if keyed and con.execute("select getvariable('hmac_ipad') is null").fetchone()[0]:
        raise RuntimeError(
            f"{schema}.{name} has source keys to publish keyed, but the connection has no HMAC "
            "key (warehouse.connection.configure_connection)"
        )
    items = [
        f"hmac_key(cast({_quote(c)} as varchar)) as {_quote(c)}" if c in keyed else _quote(c)
        for c in columns
        if c not in removed
    ]
    # Ids of the former unkeyed rule (history rows before the re-key, the re-key's own lineage
    # rows) are recomputable from a source key: such rows stay in the warehouse.
    person = [c for c in columns if c.lower() in PERSON_ID_COLUMNS]
    where = " and ".join(f"not {legacy_person_id_sql(_quote(c))}" for c in person) or "true"
    sql = (
        f"select {', '.join(items) or '1 as empty'} from {_quote(schema)}.{_quote(name)} "
        f"where {where}"
    )
    return sql, removed, keyed


def publish_snapshot(con: duckdb.DuckDBPyConnection, serving_path: str | Path) -> dict:
    """Copy every table of the published schemas, minus identifier columns, then swap files.

    Direct identifiers are dropped, source keys replaced by their keyed hash, and rows naming a
    person id of the former unkeyed rule withheld (see SOURCE_KEY_COLUMNS, warehouse.privacy).

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
    hashed: dict[str, list[str]] = {}
    withheld: dict[str, int] = {}
    con.execute("attach ? as snapshot", [str(tmp)])
    try:
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"create schema if not exists snapshot.{_quote(schema)}")
            names = con.execute(
                """
                select table_name from information_schema.tables
                where table_catalog = current_database() and table_schema = ?
                  and table_type in ('BASE TABLE', 'VIEW')
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
                select, removed, keyed = _served_select(con, schema, name, columns)
                if removed:
                    dropped[f"{schema}.{name}"] = removed
                if keyed:
                    hashed[f"{schema}.{name}"] = keyed
                con.execute(f"create table snapshot.{_quote(schema)}.{_quote(name)} as {select}")
                tables[f"{schema}.{name}"] = con.execute(
                    f"select count(*) from snapshot.{_quote(schema)}.{_quote(name)}"
                ).fetchone()[0]
                total = con.execute(
                    f"select count(*) from {_quote(schema)}.{_quote(name)}"
                ).fetchone()[0]
                if total > tables[f"{schema}.{name}"]:
                    withheld[f"{schema}.{name}"] = total - tables[f"{schema}.{name}"]
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
    return {
        "path": str(serving),
        "tables": tables,
        "dropped_columns": dropped,
        "keyed_columns": hashed,
        "withheld_rows": withheld,
    }
