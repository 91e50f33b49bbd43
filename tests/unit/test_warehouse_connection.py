"""Keyed hashes in SQL equal Python hmac; phones parse to E.164; snapshots drop identifiers."""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import pytest

from warehouse.connection import configure_connection, normalize_phone
from warehouse.publish import publish_snapshot

SQL_HMAC = "hmac_key(v)"  # the macro every model, erasure and the snapshot call


@pytest.mark.parametrize("key", [b"k", b"a-much-longer-secret-key-" * 4])
def test_sql_hmac_equals_python_hmac(key):
    con = duckdb.connect()
    configure_connection(con, key)
    values = ["alice@example.com", "", "ünïcødé", "+12125550123"]
    got = con.execute(f"select {SQL_HMAC} from unnest(?) as t(v) order by v", [values]).fetchall()
    expected = [
        hmac.new(key, v.encode("utf-8"), hashlib.sha256).hexdigest() for v in sorted(values)
    ]
    assert [row[0] for row in got] == expected
    assert con.execute(f"select {SQL_HMAC} from (select null::varchar as v)").fetchone()[0] is None


def test_keyed_hash_depends_on_the_key():
    first, second = duckdb.connect(), duckdb.connect()
    configure_connection(first, b"one")
    configure_connection(second, b"two")
    query = f"select {SQL_HMAC} from (select 'x' as v)"
    assert first.execute(query).fetchone() != second.execute(query).fetchone()


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("(212) 736-5000", "US", "+12127365000"),
        ("+1 212 736 5000", "US", "+12127365000"),
        ("212.736.5000", "US", "+12127365000"),
        ("001 212 7365000", "US", "+12127365000"),
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("020 7946 0958", "UK", "+442079460958"),  # the common, non-ISO code
        ("12345", "US", None),
        ("not a phone", "US", None),
        ("   ", "US", None),
        (None, "US", None),
    ],
)
def test_normalize_phone(raw, region, e164):
    assert normalize_phone(raw, region) == e164


def test_phone_udf_in_sql_matches_python():
    con = duckdb.connect()
    configure_connection(con, b"k", "US")
    phones = ["(212) 736-5000", "+44 20 7946 0958", None, "junk", "(212) 736-5000"]
    got = con.execute(
        "select normalize_phone(p, getvariable('phone_region')) from unnest(?) with ordinality "
        "as t(p, i) order by i",
        [phones],
    ).fetchall()
    assert [row[0] for row in got] == [normalize_phone(p) for p in phones]


def test_snapshot_drops_direct_identifiers_and_replaces_atomically(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("create schema marts; create schema ml; create schema raw")
    con.execute(
        "create table marts.customer_profiles as select 'p_1' as person_id, "
        "'ann@example.com' as email, '+12127365000' as phone, 'Ann' as first_name, "
        "'1 Main St' as street_address, true as consent_ad_targeting"
    )
    con.execute("create table ml.model_runs as select 'propensity' as model_name")
    con.execute("create table raw.crm as select 'ann@example.com' as email")
    serving = tmp_path / "serving.duckdb"
    report = publish_snapshot(con, serving)
    assert report["tables"] == {"marts.customer_profiles": 1, "ml.model_runs": 1}
    snap = duckdb.connect(str(serving), read_only=True)
    columns = {
        c
        for (c,) in snap.execute(
            "select column_name from information_schema.columns where table_name = "
            "'customer_profiles'"
        ).fetchall()
    }
    assert columns == {"person_id", "consent_ad_targeting"}
    assert (
        snap.execute(
            "select count(*) from information_schema.tables where table_schema = 'raw'"
        ).fetchone()[0]
        == 0
    )
    snap.close()
    # A second publish replaces the file; no temporary file is left behind.
    con.execute("insert into ml.model_runs values ('clusters')")
    publish_snapshot(con, serving)
    snap = duckdb.connect(str(serving), read_only=True)
    assert snap.execute("select count(*) from ml.model_runs").fetchone()[0] == 2
    assert not list(tmp_path.glob("serving.duckdb.*.tmp"))
