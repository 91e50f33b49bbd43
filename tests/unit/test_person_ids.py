"""Person ids are keyed: derived with the HMAC key, and ids of the former unkeyed rule re-keyed."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tests.unit.test_dbt_identity import (
    META,
    RAW_TABLES,
    _crm,
    _insert,
    build,
    create_identity_sources,
)
from warehouse.connection import configure_connection
from warehouse.privacy import is_keyed_person_id, is_legacy_person_id
from warehouse.publish import publish_snapshot

KEY = b"test-key"  # the key build() hands dbt

CRM = [
    _crm("a1", "crm", "Ada", "Ames", "ada@x.com", None, date(1970, 1, 1)),
    _crm("a2", "crm", "Ada", "Ames", "ada@x.com", None, date(1970, 1, 1)),
    _crm("b1", "crm", "Ben", "Bo", None, None, date(1971, 1, 1)),
]  # fmt: skip
POS = [
    {"transaction_id": "T1", "line_number": 1, "payment_card_token": "tok-1"},
    {"transaction_id": "T2", "line_number": 1, "payment_card_token": "tok-1"},
]
WEB = [{"event_id": "e1", "anonymous_id": "anon-1", "event_type": "page_view"}]


def _keyed(anchor: str) -> str:
    return "p_k" + hmac.new(KEY, anchor.encode(), hashlib.sha256).hexdigest()[:15]


def _unkeyed(anchor: str) -> str:
    return "p_" + hashlib.md5(anchor.encode()).hexdigest()[:16]


def _warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create schema if not exists raw")
        for table, columns in RAW_TABLES.items():
            con.execute(f"create or replace table raw.{table} ({columns}, {META})")
        _insert(con, "crm", CRM)
        _insert(con, "pos", POS)
        _insert(con, "web", WEB)
        create_identity_sources(con, tmp_path, [], [])
    return path


def _state(path: Path) -> tuple[list, list, list]:
    with duckdb.connect(str(path)) as con:
        return (
            con.execute("select * from intermediate.person_id_registry order by 1").fetchall(),
            con.execute("select * from marts.person_id_lineage order by 1, 2").fetchall(),
            con.execute("select * from marts.identity_map order by 1, 2").fetchall(),
        )


def test_every_person_id_is_keyed_on_its_anchor_record(tmp_path: Path):
    path = _warehouse(tmp_path)
    build(path, tmp_path)
    with duckdb.connect(str(path)) as con:
        ids = dict(
            con.execute(
                "select source_system || ':' || source_key, person_id from marts.identity_map"
            ).fetchall()
        )
    # anchors of each kind: a CRM record, a POS transaction, a web device
    assert ids["crm:a1"] == ids["crm:a2"] == _keyed("crm:crm:a1")
    assert ids["crm:b1"] == _keyed("crm:crm:b1")
    assert ids["pos:T1"] == ids["pos:T2"] == _keyed("pos:T1")
    assert ids["web:anon-1"] == _keyed("web:anon-1")
    assert all(is_keyed_person_id(p) and not is_legacy_person_id(p) for p in ids.values())
    assert not {_unkeyed(a) for a in ("crm:crm:a1", "crm:crm:b1", "pos:T1", "web:anon-1")} & set(
        ids.values()
    )


def test_unkeyed_ids_are_re_keyed_once_with_lineage(tmp_path: Path):
    path = _warehouse(tmp_path)
    build(path, tmp_path, as_of="2026-06-29")
    # Make it a warehouse of the former release: every id the unkeyed md5 of its anchor, and a
    # record no longer in the graph (aged out) of Ada and of a person now gone entirely.
    with duckdb.connect(str(path)) as con:
        con.execute(
            """
            update intermediate.person_id_registry as r
            set person_id = 'p_' || left(md5(a.anchor), 16)
            from (
                select person_id, min(record_node) as anchor
                from intermediate.person_id_registry group by person_id
            ) as a
            where r.person_id = a.person_id
            """
        )
        con.execute(
            "insert into intermediate.person_id_registry values "
            "('web:old-device', ?, date '2026-01-01', date '2026-01-01'), "
            "('pos:T-gone', ?, date '2026-01-01', date '2026-01-01')",
            [_unkeyed("crm:crm:a1"), _unkeyed("pos:T-gone")],
        )
        con.execute(
            "update marts.identity_map as m set person_id = r.person_id "
            "from intermediate.person_id_registry as r "
            "where r.record_node = case m.source_system when 'pos' then 'pos:' || m.source_key "
            "when 'web' then 'web:' || m.source_key "
            "else 'crm:' || m.source_system || ':' || m.source_key end"
        )
        old = dict(
            con.execute(
                "select record_node, person_id from intermediate.person_id_registry"
            ).fetchall()
        )

    build(path, tmp_path, as_of="2026-06-30")
    registry, lineage, identity_map = _state(path)
    ids = {node: person for node, person, *_ in registry}
    # only keyed ids remain, each the keyed hash of its person's anchor record
    assert all(is_keyed_person_id(p) for p in ids.values()), ids
    assert ids["crm:crm:a1"] == ids["crm:crm:a2"] == _keyed("crm:crm:a1")
    assert ids["pos:T1"] == _keyed("pos:T1") and ids["web:anon-1"] == _keyed("web:anon-1")
    assert all(is_keyed_person_id(p) for _, _, p in identity_map)
    # a record absent from this run follows its person; a person with no record left is re-keyed
    # from its own smallest record node
    assert ids["web:old-device"] == ids["crm:crm:a1"]
    assert ids["pos:T-gone"] == _keyed("pos:T-gone")
    # lineage: one rekey row per old id, old -> new, counting the records that moved
    rekeys = {(o, n): r for o, n, kind, as_of, r in lineage if kind == "rekey"}
    assert {kind for _, _, kind, _, _ in lineage} == {"rekey"}
    assert all(as_of == date(2026, 6, 30) for _, _, _, as_of, _ in lineage)
    assert rekeys == {
        (old["crm:crm:a1"], _keyed("crm:crm:a1")): 2,
        (old["crm:crm:b1"], _keyed("crm:crm:b1")): 1,
        (old["pos:T1"], _keyed("pos:T1")): 2,
        (old["web:anon-1"], _keyed("web:anon-1")): 1,
        (old["pos:T-gone"], _keyed("pos:T-gone")): 1,
    }
    assert all(is_legacy_person_id(o) for o, _ in rekeys)

    # a second run changes nothing
    build(path, tmp_path, as_of="2026-06-30")
    assert _state(path) == (registry, lineage, identity_map)


def test_snapshot_keys_source_keys_and_withholds_unkeyed_ids(tmp_path: Path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    configure_connection(con, KEY)
    keyed, other, legacy = _keyed("crm:crm:C1"), _keyed("web:anon-2"), _unkeyed("web:anon-1")
    con.execute("create schema marts; create schema ml")
    con.execute(
        "create table marts.identity_map as select * from (values "
        "('crm', 'C1', ?), ('web', 'anon-1', ?), ('pos', 'T9', null)) "
        "as t(source_system, source_key, person_id)",
        [keyed, legacy],
    )
    con.execute(
        "create table marts.person_id_lineage as select * from (values "
        "(?, ?, 'rekey'), (?, ?, 'merge')) as t(old_person_id, new_person_id, change_type)",
        [legacy, keyed, other, keyed],
    )
    con.execute(
        "create table marts.identity_cuts as select 'crm:crm:C1' as source_node, "
        "'email:abc' as target_node, 'cluster_size' as cut_reason"
    )
    report = publish_snapshot(con, tmp_path / "serving.duckdb")
    assert report["keyed_columns"] == {
        "marts.identity_map": ["source_key"],
        "marts.identity_cuts": ["source_node", "target_node"],
    }
    assert report["withheld_rows"] == {"marts.identity_map": 1, "marts.person_id_lineage": 1}
    snap = duckdb.connect(str(tmp_path / "serving.duckdb"), read_only=True)
    digest = hmac.new(KEY, b"C1", hashlib.sha256).hexdigest()
    assert snap.execute("select * from marts.identity_map order by 1").fetchall() == [
        ("crm", digest, keyed),
        ("pos", hmac.new(KEY, b"T9", hashlib.sha256).hexdigest(), None),
    ]
    assert snap.execute("select * from marts.person_id_lineage").fetchall() == [
        (other, keyed, "merge")
    ]
    node = hmac.new(KEY, b"crm:crm:C1", hashlib.sha256).hexdigest()
    assert snap.execute("select source_node from marts.identity_cuts").fetchall() == [(node,)]
    snap.close()
    # without the key on the connection nothing is published in clear: the publish fails
    con.execute("reset variable hmac_ipad")
    con.execute("reset variable hmac_opad")
    with pytest.raises(RuntimeError, match="no HMAC key"):
        publish_snapshot(con, tmp_path / "other.duckdb")
    assert not (tmp_path / "other.duckdb").exists()


def test_access_history_follows_the_ancestry_erasure_follows():
    """Segment history held under an id re-keyed and then merged into the person is theirs."""
    from warehouse.privacy import _person_report

    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        "create table marts.person_id_lineage as select * from (values "
        "('p_old', 'p_kA', 'rekey'), ('p_kA', 'p_kB', 'merge'), ('p_kX', 'p_kY', 'split')) "
        "t(old_person_id, new_person_id, change_type)"
    )
    con.execute(
        "create table marts.segment_membership_history as select * from (values "
        "('s1', 'p_old', date '2026-01-01', false), ('s2', 'p_kA', date '2026-02-01', false), "
        "('s3', 'p_kB', date '2026-03-01', true), ('s4', 'p_kX', date '2026-03-01', false)) "
        "t(segment_id, person_id, as_of, is_holdout)"
    )
    con.execute(
        "alter table marts.segment_membership_history add column entered_on date default null"
    )
    history = _person_report(con, "p_kB")["segment_history"]
    assert [row["segment_id"] for row in history] == ["s1", "s2", "s3"]
