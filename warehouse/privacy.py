"""Person ids and data-subject access requests (everything held about a person, one JSON each).

Person ids are derived with the HMAC key in dbt (DuckDB macro person_id_for_anchor of
warehouse/identity_keys.py): 'p_k' + 15 hex digits of the keyed hash of the person's
anchor record node. Ids issued before keying were 'p_' + 16 hex digits of an unkeyed md5 of the
anchor, recomputable by anyone holding a source key: the first run of this release re-keys them
(marts.person_id_lineage, change_type 'rekey'), and the serving snapshot never carries one.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from warehouse import audit
from warehouse.audience_tools import Relations, explain_person
from warehouse.identity_keys import KEYED_PERSON_ID_PREFIX

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Ids of the former unkeyed rule: 'p_' || left(md5(anchor record node), 16).
LEGACY_PERSON_ID_PATTERN = "^p_[0-9a-f]{16}$"
_LEGACY_PERSON_ID = re.compile(LEGACY_PERSON_ID_PATTERN)

# Columns that hold a person id, wherever a table carries them (erasure, the serving snapshot).
PERSON_ID_COLUMNS = (
    "person_id",
    "old_person_id",
    "new_person_id",
    "source_person_id",
    "target_person_id",
)


def is_keyed_person_id(person_id: str) -> bool:
    """True when the id was derived with the HMAC key."""
    return person_id.startswith(KEYED_PERSON_ID_PREFIX)


def is_legacy_person_id(person_id: str) -> bool:
    """True when the id has the shape of the former unkeyed rule (md5 of a source key)."""
    return bool(_LEGACY_PERSON_ID.match(person_id))


def legacy_person_id_sql(expr: str) -> str:
    """SQL: true when `expr` holds an id of the former unkeyed rule."""
    return f"regexp_full_match(coalesce({expr}, ''), '{LEGACY_PERSON_ID_PATTERN[1:-1]}')"


# Ids a person held before a re-key or a merge into it (their history rows are theirs too).
PERSON_ANCESTORS_SQL = """
    with recursive ancestors(person_id, ancestor_id) as (
        select person_id, person_id from {persons}
        union
        select ancestors.person_id, lineage.old_person_id
        from ancestors
        inner join marts.person_id_lineage as lineage
            on lineage.new_person_id = ancestors.ancestor_id
           and lineage.change_type in ('rekey', 'merge')
    )
    select distinct person_id, ancestor_id from ancestors
"""

# (section, SQL over one person_id): what an access response holds about the person.
_PERSON_SECTIONS: list[tuple[str, str]] = [
    ("profile", "select * from marts.customer_profiles where person_id = ?"),
    (
        "source_records",
        "select source_system, source_key from marts.identity_map where person_id = ? "
        "order by source_system, source_key",
    ),
    (
        "crm_records",
        """
        select c.* exclude (email_key, phone_key, loyalty_card_key, web_user_key)
        from staging.stg_crm__customers as c
        join marts.identity_map as m
          on m.source_system = c.source_system and m.source_key = c.crm_customer_id
        where m.person_id = ?
        order by c.source_system, c.crm_customer_id
        """,
    ),
    (
        "consent_history",
        """
        select e.subject_type, e.purpose, e.status, e.event_at, e.source, e.consent_event_id
        from staging.stg_consent__events as e
        join intermediate.int_identity_subjects_resolved as s on s.subject_node = e.subject_node
        where s.person_id = ?
        order by e.event_at, e.consent_event_id
        """,
    ),
    ("features", "select * from marts.customer_features where person_id = ?"),
    ("scores", "select * from marts.customer_scores where person_id = ?"),
    (
        "segments",
        """
        select m.segment_id, d.name, d.purpose, m.rank, m.is_holdout, m.entered_on, m.as_of
        from marts.segment_members as m
        join marts.segment_definitions as d using (segment_id)
        where m.person_id = ?
        order by m.segment_id
        """,
    ),
    (
        "segment_history",
        # rows of earlier runs under an id the person held before a re-key or a merge stay
        # theirs: the same ancestry erasure follows
        "select segment_id, as_of, entered_on, is_holdout from marts.segment_membership_history "
        "where person_id in (select ancestor_id from ("
        + PERSON_ANCESTORS_SQL.format(persons="(select ?::varchar as person_id) as subject")
        + ")) order by as_of, segment_id",
    ),
]


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    try:
        cursor = con.execute(sql, params)
    except duckdb.CatalogException:
        return []  # a capability not built yet: nothing held there
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _segment_logic(con: duckdb.DuckDBPyConnection, person_id: str) -> list[dict[str, Any]]:
    """Meaningful information about the logic of profiling (GDPR art. 15(1)(h)): for every
    segment, each of its conditions, whether it held for the person and the deciding value."""
    try:
        leaves = con.execute("select sql from raw.audience_sql where part = 'leaves'").fetchall()
        if not leaves:
            return []
        return explain_person(
            con,
            person_id,
            leaves[0][0],
            Relations(
                attributes="marts.segment_attributes",
                events="marts.segment_events",
                conditions="raw.audience_conditions",
                as_of="(select max(as_of) from marts.segment_attributes)",
            ),
        )
    except duckdb.CatalogException:
        return []  # no segments built yet
    except duckdb.Error as exc:  # said in the response, never a failed request
        return [{"segment_id": None, "error": f"segment logic unavailable: {exc}"}]


def _person_report(con: duckdb.DuckDBPyConnection, person_id: str) -> dict[str, Any]:
    report: dict[str, Any] = {"person_id": person_id}
    for section, sql in _PERSON_SECTIONS:
        rows = _rows(con, sql, [person_id] * sql.count("?"))
        report[section] = rows[0] if section in ("profile", "features", "scores") and rows else rows
    report["segment_logic"] = _segment_logic(con, person_id)
    return report


def fulfil_access_requests(
    con: duckdb.DuckDBPyConnection, out_dir: str | Path, as_of: date, run_id: str | None = None
) -> dict[str, int]:
    """Write `<out_dir>/<request_id>.json` for each access request not answered yet.

    The file is written once (atomically) and its completion logged in the audit log; a
    request whose subject matches nobody gets a file saying so.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    requests = _rows(
        con,
        """
        select request_id, subject_type, requested_at, list(person_id order by person_id)
            filter (where person_id is not null) as person_ids
        from intermediate.int_privacy_requests_resolved
        where request_type = 'access'
        group by request_id, subject_type, requested_at
        order by request_id
        """,
        [],
    )
    written: dict[str, int] = {}
    for request in requests:
        request_id = request["request_id"]
        if not _REQUEST_ID.match(request_id):
            raise ValueError(f"access request id {request_id!r} cannot name a file")
        target = out / f"{request_id}.json"
        if target.exists():
            continue
        persons = [_person_report(con, pid) for pid in request["person_ids"] or []]
        document = {
            "request_id": request_id,
            "subject_type": request["subject_type"],
            "requested_at": request["requested_at"],
            "answered_as_of": as_of,
            "persons_found": len(persons),
            "persons": persons,
        }
        tmp = target.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2, default=str, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, target)
        audit.record(
            con,
            "access_request",
            subject=request_id,
            rows=len(persons),
            detail={"file": target.name, "persons_found": len(persons)},
            run_id=run_id,
        )
        written[request_id] = len(persons)
    return written
