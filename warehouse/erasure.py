"""Erasure that sticks: remove a person from every layer, keep them out, purge the bytes.

Runs after the identity layer (so every record of the person is known) and before features:
it deletes the person's rows from raw, staging, identity and the persistent marts, adds keyed
hashes of their records and personal identifiers to a suppression list that ingest applies to
every later file, scrubs earlier exports, access responses and the serving snapshot, and
rewrites the DuckDB files so deleted rows leave no bytes behind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from warehouse import audit
from warehouse.privacy import PERSON_ANCESTORS_SQL, PERSON_ID_COLUMNS

# Columns that name a person or one of their graph nodes, wherever a table carries them.
_PERSON_COLUMNS = PERSON_ID_COLUMNS
_NODE_COLUMNS = (
    "record_node",
    "node_id",
    "identifier_node",
    "subject_node",
    "left_node",
    "right_node",
    "source_node",
    "target_node",
)
_SCRUBBED_SCHEMAS = ("staging", "intermediate", "marts", "ml")


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# Per source: its record node and its identifier nodes, as SQL over a raw row (alias {a}). Every
# key is a macro of warehouse/identity_keys.py, the same the dbt staging models call, so a
# suppression key always equals the graph key of the same value.
_RECORD_NODE_SQL = {
    "crm": "crm_record_node({a}.source_system, {a}.crm_customer_id)",
    "pos": "pos_record_node({a}.transaction_id)",
    "web": "web_record_node({a}.anonymous_id)",
}
_IDENTIFIER_NODES_SQL = {
    "crm": (
        "identifier_node('email', identity_email({a}.email))",
        "identifier_node('phone', identity_phone({a}.phone, {a}.country))",
        "identifier_node('card', clean_identifier({a}.loyalty_card_id))",
        "identifier_node('user', clean_identifier({a}.web_user_id))",
    ),
    "pos": (
        "identifier_node('email', identity_email({a}.receipt_email))",
        "identifier_node('card', clean_identifier({a}.loyalty_card_id))",
        "identifier_node('pay', clean_identifier({a}.payment_card_token))",
    ),
    "web": (
        "identifier_node('email', identity_email({a}.email))",
        "identifier_node('user', clean_identifier({a}.user_id))",
    ),
}


def record_node_sql(source: str, alias: str = "r") -> str:
    """SQL of the identity-graph record node of a raw row of `source` (crm, pos or web)."""
    return _RECORD_NODE_SQL[source].format(a=alias)


def suppression_keys_sql(source: str, alias: str = "r") -> list[str]:
    """SQL expressions of the keyed identity keys a raw row of `source` carries (may be null)."""
    if source not in _RECORD_NODE_SQL:
        return []
    record = f"record_suppression_key({record_node_sql(source, alias)})"
    return [record] + [k.format(a=alias) for k in _IDENTIFIER_NODES_SQL[source]]


def ensure_privacy_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists privacy")
    con.execute(
        """
        create table if not exists privacy.suppression_list (
            key varchar primary key,
            key_type varchar not null,
            added_at timestamp not null
        )
        """
    )
    # Raw rows removed per file: the ingest reconciliation gate counts them as accounted for.
    con.execute(
        """
        create table if not exists privacy.erased_rows (
            source varchar not null,
            path varchar not null,
            rows bigint not null,
            erased_at timestamp not null
        )
        """
    )
    con.execute(
        """
        create table if not exists privacy.erasures_done (
            request_id varchar primary key,
            completed_at timestamp not null,
            persons bigint not null,
            rows_deleted bigint not null
        )
        """
    )


def drop_suppressed(con: duckdb.DuckDBPyConnection, source: str, table: str) -> int:
    """Delete rows of `table` (raw columns of `source`) that carry a suppressed key."""
    keys = suppression_keys_sql(source, "r")
    if not keys:
        return 0
    ensure_privacy_schema(con)
    if not con.execute("select count(*) from privacy.suppression_list").fetchall()[0][0]:
        return 0
    predicate = " or ".join(f"({k}) in (select key from privacy.suppression_list)" for k in keys)
    before = con.execute(f"select count(*) from {table}").fetchall()[0][0]
    con.execute(f"delete from {table} as r where {predicate}")
    return before - con.execute(f"select count(*) from {table}").fetchall()[0][0]


def _tables(con: duckdb.DuckDBPyConnection, schemas: tuple[str, ...]) -> list[tuple[str, str]]:
    return con.execute(
        """
        select table_schema, table_name from information_schema.tables
        where table_catalog = current_database() and table_type = 'BASE TABLE'
          and table_schema in (select unnest(?))
        order by 1, 2
        """,
        [list(schemas)],
    ).fetchall()


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    return {
        c
        for (c,) in con.execute(
            "select column_name from information_schema.columns where table_catalog = "
            "current_database() and table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    }


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(_columns(con, schema, table))


def _delete_count(con: duckdb.DuckDBPyConnection, sql: str, table: str) -> int:
    before = con.execute(f"select count(*) from {table}").fetchall()[0][0]
    con.execute(sql)
    return before - con.execute(f"select count(*) from {table}").fetchall()[0][0]


def _collect(con: duckdb.DuckDBPyConnection) -> bool:
    """Temp tables of what to erase; False when no erasure request is pending."""
    if not _exists(con, "intermediate", "int_privacy_requests_resolved"):
        return False
    con.execute(
        """
        create or replace temp table erase_requests as
        select request_id, person_id, subject_node
        from intermediate.int_privacy_requests_resolved
        where request_type = 'erasure'
          and request_id not in (select request_id from privacy.erasures_done)
        """
    )
    if not con.execute("select count(*) from erase_requests").fetchall()[0][0]:
        return False
    con.execute(
        "create or replace temp table erase_persons as "
        "select distinct person_id from erase_requests where person_id is not null"
    )
    if _exists(con, "marts", "person_id_lineage"):
        # ids the person held before a re-key or a merge: rows of earlier runs carry them
        con.execute(
            "insert into erase_persons select distinct ancestor_id from ("
            + PERSON_ANCESTORS_SQL.format(persons="erase_persons")
            + ") where ancestor_id not in (select person_id from erase_persons)"
        )
    con.execute(
        """
        create or replace temp table erase_records as
        select distinct source_record_node(m.source_system, m.source_key) as record_node
        from marts.identity_map as m
        inner join erase_persons as p on m.person_id = p.person_id
        """
    )
    # Only identifiers that link this person alone: a family email stays, its other owners too.
    con.execute(
        """
        create or replace temp table erase_identifiers as
        select distinct l.identifier_node
        from intermediate.int_identity_links_collected as l
        inner join erase_records as r on l.record_node = r.record_node
        where l.is_linking
        """
    )
    con.execute(
        """
        create or replace temp table erase_nodes as
        select record_node as node from erase_records
        union select identifier_node from erase_identifiers
        union select subject_node from erase_requests where subject_node is not null
        """
    )
    return True


def _needles(con: duckdb.DuckDBPyConnection) -> None:
    """Plaintext values of the person in raw, to find their quarantined rows by content."""
    con.execute(
        f"""
        create or replace temp table erase_needles as
        select distinct v as needle from (
            select unnest([email, phone, crm_customer_id, loyalty_card_id, web_user_id]) as v
            from raw.crm as r
            where {record_node_sql("crm")} in (select record_node from erase_records)
            union all
            select unnest([transaction_id, receipt_email, loyalty_card_id, payment_card_token])
            from raw.pos as r
            where {record_node_sql("pos")} in (select record_node from erase_records)
            union all
            select unnest([anonymous_id, user_id, email])
            from raw.web as r
            where {record_node_sql("web")} in (select record_node from erase_records)
        )
        where length(trim(v)) >= 5
        """
    )


def _delete_raw(
    con: duckdb.DuckDBPyConnection, source: str, table: str, condition: str, now: datetime
) -> int:
    """Delete raw rows matching `condition` (alias r), logging how many per file."""
    con.execute(
        f"insert into privacy.erased_rows select ?, r._file, count(*), ? from {table} as r "
        f"where {condition} group by r._file",
        [source, now],
    )
    return _delete_count(con, f"delete from {table} as r where {condition}", table)


def _scrub_raw(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    deleted: dict[str, int] = {}
    consent_ids = (
        "select consent_event_id from staging.stg_consent__events "
        "where subject_node in (select node from erase_nodes)"
    )
    if _exists(con, "staging", "stg_consent__events"):
        con.execute(f"create or replace temp table erase_consent as {consent_ids}")
    else:
        con.execute("create or replace temp table erase_consent (consent_event_id varchar)")
    now = datetime.now(UTC).replace(tzinfo=None)
    for source in _RECORD_NODE_SQL:
        deleted[f"raw.{source}"] = _delete_raw(
            con, source, f"raw.{source}",
            f"{record_node_sql(source)} in (select record_node from erase_records)", now,
        )  # fmt: skip
    deleted["raw.consent"] = _delete_raw(
        con, "consent", "raw.consent",
        "r.consent_event_id in (select consent_event_id from erase_consent)", now,
    )  # fmt: skip
    for _schema, table in _tables(con, ("raw",)):
        if table.endswith("_quarantine"):
            deleted[f"raw.{table}"] = _delete_raw(
                con, table.removesuffix("_quarantine"), f"raw.{_q(table)}",
                "exists (select 1 from erase_needles as n where contains(r.record, n.needle))",
                now,
            )  # fmt: skip
    # The requests themselves stay (proof they were honoured), with the subject pseudonymised.
    con.execute(
        """
        update raw.privacy set subject_id = 'erased:' || hmac_key(subject_id)
        where request_id in (select request_id from erase_requests)
           or request_id in (
               select request_id from intermediate.int_privacy_requests_resolved
               where person_id in (select person_id from erase_persons)
           )
        """
    )
    return deleted


def _scrub_models(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    deleted: dict[str, int] = {}
    # Component rows are keyed by node index only: remove them before the node index goes.
    if _exists(con, "intermediate", "int_identity_components") and _exists(
        con, "intermediate", "int_identity_nodes_indexed"
    ):
        deleted["intermediate.int_identity_components"] = _delete_count(
            con,
            "delete from intermediate.int_identity_components where node_index in ("
            "select node_index from intermediate.int_identity_nodes_indexed "
            "where node_id in (select node from erase_nodes))",
            "intermediate.int_identity_components",
        )
    for schema, table in _tables(con, _SCRUBBED_SCHEMAS):
        columns = _columns(con, schema, table)
        conditions = [
            f"{_q(c)} in (select person_id from erase_persons)"
            for c in _PERSON_COLUMNS
            if c in columns
        ] + [f"{_q(c)} in (select node from erase_nodes)" for c in _NODE_COLUMNS if c in columns]
        if {"source_system", "source_key"} <= columns:
            conditions.append(
                "source_record_node(source_system, source_key) "
                "in (select record_node from erase_records)"
            )
        if not conditions:
            continue
        name = f"{_q(schema)}.{_q(table)}"
        count = _delete_count(con, f"delete from {name} where {' or '.join(conditions)}", name)
        if count:
            deleted[f"{schema}.{table}"] = count
    return deleted


def _suppress(con: duckdb.DuckDBPyConnection) -> int:
    now = datetime.now(UTC).replace(tzinfo=None)
    before = con.execute("select count(*) from privacy.suppression_list").fetchall()[0][0]
    con.execute(
        """
        insert or ignore into privacy.suppression_list
        select record_suppression_key(record_node), 'record', ? from erase_records
        union all
        select identifier_node, split_part(identifier_node, ':', 1), ? from erase_identifiers
        """,
        [now, now],
    )
    return con.execute("select count(*) from privacy.suppression_list").fetchall()[0][0] - before


def _scrub_access_responses(con: duckdb.DuckDBPyConnection, privacy_dir: str | Path) -> int:
    ids = [
        r[0]
        for r in con.execute(
            "select distinct request_id from intermediate.int_privacy_requests_resolved "
            "where request_type = 'access' and person_id in (select person_id from erase_persons)"
        ).fetchall()
    ]
    removed = 0
    for request_id in ids:
        path = Path(privacy_dir) / "access" / f"{request_id}.json"
        if path.exists():
            path.unlink()
            removed += 1
    return removed


def compact_database(path: str | Path) -> None:
    """Rewrite a DuckDB file from its live rows only, then swap it in.

    Deleted rows stay in DuckDB's blocks until they are overwritten; a fresh copy holds none.
    No other connection may be open on `path` (the run holds the warehouse lock).
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.compact")
    con = duckdb.connect(str(path))
    try:
        con.execute("checkpoint")
        con.execute("attach ? as compacted", [str(tmp)])
        con.execute(f"copy from database {_q(_catalog(con))} to compacted")
        con.execute("detach compacted")
    finally:
        con.close()
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        wal.unlink()


def _catalog(con: duckdb.DuckDBPyConnection) -> str:
    return con.execute("select current_database()").fetchall()[0][0]


def scrub_serving(serving_path: str | Path, person_ids: list[str]) -> int:
    """Drop the persons from the current serving snapshot now, whatever the rest of the run does."""
    serving = Path(serving_path)
    if not serving.exists() or not person_ids:
        return 0
    work = serving.with_name(f"{serving.name}.{uuid.uuid4().hex}.erasing")
    shutil.copy(serving, work)
    con = duckdb.connect(str(work))
    removed = 0
    try:
        con.execute(
            "create temp table erase_persons as select unnest(?) as person_id", [person_ids]
        )
        for schema, table in _tables(con, ("marts", "ml")):
            columns = _columns(con, schema, table)
            conditions = [
                f"{_q(c)} in (select person_id from erase_persons)"
                for c in _PERSON_COLUMNS
                if c in columns
            ]
            if conditions:
                name = f"{_q(schema)}.{_q(table)}"
                removed += _delete_count(
                    con, f"delete from {name} where {' or '.join(conditions)}", name
                )
    finally:
        con.close()
    compact_database(work)
    os.replace(work, serving)
    return removed


def apply_erasures(
    con: duckdb.DuckDBPyConnection,
    *,
    privacy_dir: str | Path,
    run_id: str | None = None,
) -> dict:
    """Erase every pending request's persons; returns counts (never identifiers).

    The platforms' lists lose them through the same run's exports: a person no longer in the
    warehouse is no longer in any full file, so the export's removes delta withdraws them from
    each platform, and the superseded export folders are deleted (warehouse/activation.py)."""
    ensure_privacy_schema(con)
    if not _collect(con):
        return {"requests": 0, "persons": 0, "person_ids": []}
    requests = [
        r[0]
        for r in con.execute("select distinct request_id from erase_requests order by 1").fetchall()
    ]
    # every id of the persons (current and earlier ones), and how many persons that is
    persons = [
        r[0] for r in con.execute("select person_id from erase_persons order by 1").fetchall()
    ]
    n_persons = con.execute(
        "select count(distinct person_id) from erase_requests where person_id is not null"
    ).fetchall()[0][0]
    _needles(con)
    con.execute("begin")
    try:
        deleted = _scrub_raw(con)
        deleted.update(_scrub_models(con))
        suppressed = _suppress(con)
        now = datetime.now(UTC).replace(tzinfo=None)
        total = sum(deleted.values())
        for request_id in requests:
            con.execute(
                "insert into privacy.erasures_done select ?, ?, count(distinct person_id), ? "
                "from erase_requests where request_id = ?",
                [request_id, now, total, request_id],
            )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    access_removed = _scrub_access_responses(con, privacy_dir)
    batch = uuid.uuid4().hex[:12]
    per_request = dict(
        con.execute(
            "select request_id, count(distinct person_id) from erase_requests group by 1"
        ).fetchall()
    )
    # One event per request (its completion), one per batch with what was removed where.
    for request_id in requests:
        audit.record(
            con,
            "erasure",
            subject=request_id,
            rows=per_request.get(request_id, 0),
            detail={"batch": batch, "persons": per_request.get(request_id, 0)},
            run_id=run_id,
        )
    audit.record(
        con,
        "erasure",
        subject=f"batch:{batch}",
        rows=total,
        detail={
            "requests": len(requests),
            "persons": n_persons,
            "tables": deleted,
            "suppressed_keys": suppressed,
            "access_responses_removed": access_removed,
        },
        run_id=run_id,
    )
    return {
        "requests": len(requests),
        "persons": n_persons,
        "person_ids": persons,
        "rows_deleted": deleted,
        "suppressed_keys": suppressed,
        "access_responses_removed": access_removed,
    }


RETENTION_EVENT_TIMES = {"pos": "transacted_at", "web": "event_at"}


def apply_retention(
    con: duckdb.DuckDBPyConnection, as_of: date, retention_days: int, run_id: str | None = None
) -> dict[str, int]:
    """Delete raw POS lines and web events older than the retention window (the same window
    staging applies), logging per file so the ingest reconciliation stays exact."""
    ensure_privacy_schema(con)
    cutoff = datetime.combine(as_of + timedelta(days=1), datetime.min.time()) - timedelta(
        days=retention_days
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    deleted: dict[str, int] = {}
    con.execute("begin")
    try:
        for source, column in RETENTION_EVENT_TIMES.items():
            if not _exists(con, "raw", source):
                continue
            con.execute(
                "create or replace temp table retention_cutoff as select ?::timestamp as t",
                [cutoff],
            )
            deleted[f"raw.{source}"] = _delete_raw(
                con, source, f"raw.{source}",
                f"r.{_q(column)} < (select t from retention_cutoff)", now,
            )  # fmt: skip
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    if any(deleted.values()):
        audit.record(
            con,
            "retention",
            subject=f"older than {cutoff.isoformat()}",
            rows=sum(deleted.values()),
            detail={"tables": deleted, "retention_days": retention_days},
            run_id=run_id,
        )
    return deleted
