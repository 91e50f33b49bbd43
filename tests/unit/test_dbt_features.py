"""dbt staging of POS and web, customer_features and ml.propensity_training_examples.

Builds only these models once per module on hand-written raw rows in a tmp DuckDB; the identity
marts they read (identity_map, customer_profiles) are written directly as tables.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from tests.dbt_build import dbt_build
from warehouse.connection import configure_connection

HMAC_KEY = "test-key"
AS_OF = "2026-06-30"

SELECTION = [
    "path:models/staging/pos",
    "path:models/staging/web",
    "path:models/intermediate/features",
    "customer_features",
    "propensity_training_examples",
]

POS_COLUMNS = {
    "transaction_id": "varchar",
    "line_number": "integer",
    "transacted_at": "timestamp",
    "store_id": "varchar",
    "loyalty_card_id": "varchar",
    "receipt_email": "varchar",
    "payment_card_token": "varchar",
    "sku": "varchar",
    "product_category": "varchar",
    "quantity": "double",
    "unit_price": "double",
    "is_return": "boolean",
}
WEB_COLUMNS = {
    "event_id": "varchar",
    "event_type": "varchar",
    "anonymous_id": "varchar",
    "event_at": "timestamp",
    "user_id": "varchar",
    "email": "varchar",
    "session_id": "varchar",
    "page_url": "varchar",
    "sku": "varchar",
    "product_category": "varchar",
    "search_query": "varchar",
    "order_id": "varchar",
    "device_type": "varchar",
    "geo_city": "varchar",
    "geo_region": "varchar",
    "geo_country": "varchar",
    "geo_postcode": "varchar",
    "utm_source": "varchar",
    "utm_medium": "varchar",
    "utm_campaign": "varchar",
    "revenue": "double",
}
META_COLUMNS = {
    "_file": "varchar",
    "_row_number": "bigint",
    "_loaded_at": "timestamp",
    "_extra": "varchar",
    "_flags": "varchar",
}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _pos(tid, at, qty, price, *, line=1, ret=False, cat=None, card=None, email=None,
         token=None, loaded="2026-07-01 01:00:00", file="pos/a.csv", row=1):  # fmt: skip
    return {
        "transaction_id": tid,
        "line_number": line,
        "transacted_at": ts(at),
        "loyalty_card_id": card,
        "receipt_email": email,
        "payment_card_token": token,
        "product_category": cat,
        "quantity": qty,
        "unit_price": price,
        "is_return": ret,
        "_file": file,
        "_row_number": row,
        "_loaded_at": ts(loaded),
    }


def _web(eid, at, etype, anon, *, session=None, device=None, order=None, revenue=None,
         geo=(None, None, None, None), email=None, user=None, cat=None,
         loaded="2026-07-01 01:00:00", file="web/a.jsonl", row=1):  # fmt: skip
    city, region, country, postcode = geo
    return {
        "event_id": eid,
        "event_type": etype,
        "anonymous_id": anon,
        "event_at": ts(at),
        "user_id": user,
        "email": email,
        "session_id": session,
        "order_id": order,
        "revenue": revenue,
        "device_type": device,
        "product_category": cat,
        "geo_city": city,
        "geo_region": region,
        "geo_country": country,
        "geo_postcode": postcode,
        "_file": file,
        "_row_number": row,
        "_loaded_at": ts(loaded),
    }


PARIS = ("Paris", "IDF", "FR", "75001")
BERLIN = ("Berlin", "BE", "DE", "10115")

POS_ROWS = [
    # p1: purchases on the as_of day (last second), a return, one 364 and one 365 days back
    _pos("T1", "2026-06-30 23:59:59", 2, 10.0, cat=" Shoes ", card=" L1 ", email=" A@X.COM "),
    _pos("T1", "2026-06-30 23:59:59", 1, 5.0, line=2, cat="bags", token="tok1"),
    _pos("T2", "2026-06-20 12:00:00", -1, 5.0, ret=True, cat="bags"),
    _pos("T3", "2026-07-01 00:00:00", 1, 100.0, cat="toys"),  # after as_of: never counts
    _pos("T4", "2025-07-01 09:00:00", 1, 10.0, cat="shoes"),
    _pos("T5", "2025-06-30 09:00:00", 1, 1000.0, cat="garden"),  # 365 days back: outside
    # p3: label edges
    _pos("T30", "2026-04-01 10:00:00", 1, 20.0),
    _pos("T31", "2026-05-01 00:00:00", -1, 20.0, ret=True),
    _pos("T32", "2026-05-31 23:59:59", 1, 20.0),
    _pos("T33", "2026-06-30 12:00:00", 1, 20.0),
    # p4: first seen 2026-05-20, buys exactly at the end of the 2026-05-31 cutoff day
    _pos("T40", "2026-06-01 00:00:00", 1, 30.0),
    # p6: active only long before every cutoff's 365-day window
    _pos("T60", "2025-02-01 09:00:00", 1, 12.0, cat="garden"),
    # a cash sale: no person
    _pos("T90", "2026-06-15 10:00:00", 1, 7.0),
    # a line delivered again later: the later load wins
    _pos("T50", "2026-06-29 10:00:00", 1, 1.0, loaded="2026-06-29 23:00:00", row=7),
    _pos(
        "T50", "2026-06-29 10:00:00", 3, 1.0, loaded="2026-06-30 23:00:00", row=2, file="pos/b.csv"
    ),  # fmt: skip
]

WEB_ROWS = [
    # p1 device d1: a web purchase, with a Paris location that the CRM address outranks
    _web(
        "w1",
        "2026-06-10 10:00:00",
        "purchase",
        "d1",
        order="o1",
        revenue=50.0,
        device="Mobile",
        geo=PARIS,
        session="s1",
    ),  # fmt: skip
    # p2 device d2: window edges (as_of 2026-06-30)
    _web(
        "e1",
        "2026-06-24 10:00:00",
        "page_view",
        "d2",
        session="sA",
        device="mobile",
        geo=PARIS,
        email=" B@Y.ORG ",
        user=" u2 ",
    ),  # fmt: skip
    _web(
        "e2", "2026-06-23 23:50:00", "product_view", "d2", session="sB", device="desktop", geo=PARIS
    ),  # fmt: skip
    _web(
        "e3", "2026-06-24 00:10:00", "product_view", "d2", session="sB", device="DESKTOP", geo=PARIS
    ),  # fmt: skip
    _web(
        "e4", "2026-06-01 08:00:00", "add_to_cart", "d2", session="sC", device="mobile", geo=BERLIN
    ),  # fmt: skip
    _web("e5", "2026-05-31 12:00:00", "search", "d2", session="sD", device="mobile"),
    _web("e6", "2026-04-02 12:00:00", "email_open", "d2", session="sE", device="smart-tv"),
    _web("e7", "2026-04-01 12:00:00", "page_view", "d2", session="sF", device="tablet"),
    _web(
        "e8",
        "2026-07-01 00:00:00",
        "purchase",
        "d2",
        session="sG",
        device="mobile",
        order="o8",
        revenue=99.0,
    ),  # fmt: skip
    # e1 delivered again later with other values: the first load wins
    _web(
        "e1",
        "2026-06-24 10:00:00",
        "purchase",
        "d2",
        order="oX",
        revenue=500.0,
        loaded="2026-07-02 00:00:00",
        file="web/b.jsonl",
    ),  # fmt: skip
    _web("w6", "2025-03-01 09:00:00", "page_view", "d6", geo=BERLIN),
    # an unknown device: no person
    _web("x1", "2026-06-20 10:00:00", "purchase", "d9", order="o9", revenue=9.0),
]

IDENTITY_MAP = [
    ("pos", "T1", "p1"), ("pos", "T2", "p1"), ("pos", "T3", "p1"), ("pos", "T4", "p1"),
    ("pos", "T5", "p1"), ("web", "d1", "p1"), ("web", "d2", "p2"),
    ("pos", "T30", "p3"), ("pos", "T31", "p3"), ("pos", "T32", "p3"), ("pos", "T33", "p3"),
    ("pos", "T40", "p4"), ("pos", "T50", "p4"), ("pos", "T90", None), ("crm", "c1", "p1"),
    ("pos", "T60", "p6"), ("web", "d6", "p6"),
]  # fmt: skip

# person_id, first_seen_at, city, postcode, state, country
PROFILES = [
    ("p1", "2025-01-01 00:00:00", "Lyon", None, None, "FR"),
    ("p2", None, None, None, None, None),
    ("p3", "2026-01-01 00:00:00", None, None, None, None),
    ("p4", "2026-05-20 00:00:00", None, None, None, None),
    ("p5", "2026-03-01 00:00:00", None, None, None, None),
    ("p6", None, None, None, None, None),
]


def _create_raw(con: duckdb.DuckDBPyConnection, table: str, columns: dict, rows: list) -> None:
    all_columns = {**columns, **META_COLUMNS}
    ddl = ", ".join(f"{name} {kind}" for name, kind in all_columns.items())
    con.execute(f"create table raw.{table} ({ddl})")
    names = list(all_columns)
    placeholders = ", ".join("?" for _ in names)
    con.executemany(
        f"insert into raw.{table} ({', '.join(names)}) values ({placeholders})",
        [[row.get(name) for name in names] for row in rows],
    )


def _seed(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        for schema in ("raw", "marts"):
            con.execute(f"create schema {schema}")
        _create_raw(con, "pos", POS_COLUMNS, POS_ROWS)
        _create_raw(con, "web", WEB_COLUMNS, WEB_ROWS)
        con.execute(
            "create table marts.identity_map "
            "(source_system varchar, source_key varchar, person_id varchar)"
        )
        con.executemany("insert into marts.identity_map values (?, ?, ?)", IDENTITY_MAP)
        con.execute(
            "create table marts.customer_profiles (person_id varchar, is_known boolean, "
            "first_seen_at timestamp, city varchar, postcode varchar, state varchar, "
            "country varchar)"
        )
        con.executemany(
            "insert into marts.customer_profiles values (?, true, ?, ?, ?, ?, ?)",
            [[p, ts(f) if f else None, c, pc, s, co] for p, f, c, pc, s, co in PROFILES],
        )
    finally:
        con.close()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    tmp = tmp_path_factory.mktemp("dbt_features")
    path = tmp / "warehouse.duckdb"
    _seed(path)
    dbt_build(tmp, path, HMAC_KEY, AS_OF, SELECTION)
    # dbt-duckdb keeps its own handle open in this process: connect with the same configuration.
    con = duckdb.connect(str(path))
    configure_connection(con, HMAC_KEY.encode())  # the staging views compute keyed hashes
    yield con
    con.close()


def _row(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> dict:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def _features(con: duckdb.DuckDBPyConnection, person_id: str) -> dict:
    return _row(con, "select * from marts.customer_features where person_id = ?", [person_id])


def _key(value: str) -> str:
    return hmac.new(HMAC_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def test_pos_staging_dedups_cleans_and_hashes(warehouse):
    rows = warehouse.execute(
        "select transaction_id, line_number, quantity, line_amount from "
        "staging.stg_pos__transaction_lines where transaction_id = 'T50'"
    ).fetchall()
    assert rows == [("T50", 1, 3.0, 3.0)]
    t1 = _row(
        warehouse,
        "select * from staging.stg_pos__transaction_lines where transaction_id = ? "
        "and line_number = 1",
        ["T1"],
    )
    assert t1["loyalty_card_id"] == "L1"
    assert t1["loyalty_card_key"] == _key("L1")
    assert t1["receipt_email_key"] == _key("a@x.com")
    assert t1["payment_card_key"] is None
    assert t1["product_category"] == "shoes"
    assert t1["line_amount"] == 20.0
    columns = [
        d[0]
        for d in warehouse.execute("select * from staging.stg_pos__transaction_lines").description
    ]
    assert columns == [
        "transaction_id", "line_number", "transacted_at", "store_id", "loyalty_card_id",
        "loyalty_card_key", "receipt_email_key", "payment_card_key", "sku", "product_category",
        "quantity", "unit_price", "is_return", "line_amount",
    ]  # fmt: skip


def test_web_staging_keeps_first_load(warehouse):
    e1 = _row(warehouse, "select * from staging.stg_web__events where event_id = ?", ["e1"])
    assert e1["event_type"] == "page_view"
    assert e1["email_key"] == _key("b@y.org")
    assert e1["user_id_key"] == _key("u2")
    assert e1["device_type"] == "mobile"
    e6 = _row(warehouse, "select * from staging.stg_web__events where event_id = ?", ["e6"])
    assert e6["device_type"] is None
    assert warehouse.execute("select count(*) from staging.stg_web__events").fetchone() == (11,)


def test_one_feature_row_per_profile(warehouse):
    rows = warehouse.execute(
        "select person_id, as_of from marts.customer_features order by person_id"
    ).fetchall()
    assert rows == [(p, date(2026, 6, 30)) for p in ("p1", "p2", "p3", "p4", "p5", "p6")]


def test_rfm_with_return_and_365_day_edge(warehouse):
    f = _features(warehouse, "p1")
    assert f["recency_days"] == 0  # bought in the last second of the as_of day
    assert f["frequency_365d"] == 3  # T1, T4 (364 days back), web o1; not T2 (return), T5, T3
    assert f["monetary_365d"] == pytest.approx(25 - 5 + 10 + 50)
    assert f["avg_order_value_365d"] == pytest.approx(80 / 3)
    assert f["purchases_30d"] == 2
    assert f["purchases_90d"] == 2
    assert f["return_rate_365d"] == pytest.approx(1 / 4)
    assert f["online_share_365d"] == pytest.approx(50 / 80)
    assert f["tenure_days"] == 365 + 180  # 2025-01-01 to 2026-06-30
    assert f["days_since_last_visit"] == 20
    assert f["n_categories_365d"] == 2
    assert f["top_category_365d"] == "shoes"
    assert f["share_mobile"] == 1.0  # the one web event ("Mobile") is 20 days old
    assert f["web_events_90d"] == 1


def test_home_geo_prefers_profile_address(warehouse):
    f = _features(warehouse, "p1")
    assert (f["home_city"], f["home_region"], f["home_country"], f["home_postcode"]) == (
        "Lyon", None, "FR", None,
    )  # fmt: skip
    f2 = _features(warehouse, "p2")
    assert (f2["home_city"], f2["home_region"], f2["home_country"], f2["home_postcode"]) == PARIS


def test_web_windows_at_their_edges(warehouse):
    f = _features(warehouse, "p2")
    assert (f["web_events_7d"], f["web_events_30d"], f["web_events_90d"]) == (2, 4, 6)
    # sB spans midnight and counts once, on the day it started (7 days back)
    assert (f["sessions_7d"], f["sessions_30d"], f["sessions_90d"]) == (1, 3, 5)
    assert f["product_views_30d"] == 2
    assert f["cart_adds_30d"] == 1
    assert f["searches_30d"] == 0  # 30 days back: just outside
    assert f["email_opens_30d"] == 0
    assert f["checkout_starts_30d"] == 0
    assert f["product_views_without_purchase_30d"] == 2
    assert f["cart_adds_without_purchase_30d"] == 1
    assert f["days_since_last_visit"] == 6


def test_device_shares_and_no_spend(warehouse):
    f = _features(warehouse, "p2")
    assert f["share_mobile"] == pytest.approx(3 / 6)
    assert f["share_desktop"] == pytest.approx(2 / 6)
    assert f["share_tablet"] == 0.0
    assert f["share_app"] == 0.0
    # the purchase at 2026-07-01 00:00 is after as_of
    assert f["recency_days"] is None
    assert f["frequency_365d"] == 0
    assert f["monetary_365d"] == 0.0
    assert f["avg_order_value_365d"] is None
    assert f["online_share_365d"] is None
    assert f["tenure_days"] == 90  # no profile first_seen_at: first activity 2026-04-01


def test_person_without_events_gets_zeros(warehouse):
    f = _features(warehouse, "p5")
    assert f["frequency_365d"] == 0 and f["web_events_90d"] == 0 and f["sessions_90d"] == 0
    assert f["share_mobile"] == 0.0 and f["return_rate_365d"] == 0.0
    assert f["recency_days"] is None and f["days_since_last_visit"] is None
    assert f["tenure_days"] == 121
    assert f["n_categories_365d"] == 0 and f["top_category_365d"] is None
    assert f["home_city"] is None


def test_purchases_after_as_of_do_not_count(warehouse):
    assert _features(warehouse, "p4")["purchases_30d"] == 2  # T40 and T50
    t3 = warehouse.execute(
        "select count(*) from intermediate.int_pos_lines_attributed where transaction_id = 'T3'"
    ).fetchone()
    assert t3 == (0,)
    assert _features(warehouse, "p1")["monetary_365d"] == pytest.approx(80.0)


def test_training_examples_labels_at_window_edges(warehouse):
    rows = warehouse.execute(
        "select person_id, cutoff_date, purchased_next_30d, recency_days, frequency_365d "
        "from ml.propensity_training_examples order by person_id, cutoff_date"
    ).fetchall()
    got = {(p, c.isoformat()): (label, rec, freq) for p, c, label, rec, freq in rows}
    # p3: T30 on 04-01 (cutoff day), T32 at 05-31 23:59:59, T33 on 06-30
    assert got[("p3", "2026-04-01")] == (False, 0, 1)  # only a return in (04-01, 05-01]
    assert got[("p3", "2026-05-01")] == (True, 30, 1)  # T32 is in (05-01, 05-31]
    assert got[("p3", "2026-05-31")] == (True, 0, 2)  # T33 in (05-31, 06-30]
    # p4: first seen 05-20; buys at 06-01 00:00, just after the end of the 05-31 cutoff day
    assert got[("p4", "2026-05-31")] == (True, None, 0)
    assert ("p4", "2026-05-01") not in got and ("p4", "2026-04-01") not in got
    # p2: first activity on 2026-04-01 (no profile date); its only purchase is after as_of
    assert [got[("p2", c)][0] for c in ("2026-04-01", "2026-05-01", "2026-05-31")] == [False] * 3
    assert got[("p1", "2026-05-31")][0] is True  # o1 on 06-10, T1 on 06-30
    assert got[("p1", "2026-04-01")][0] is False
    # p5 first seen 03-01: present at every cutoff, never buys
    assert [k[1] for k in got if k[0] == "p5"] == ["2026-04-01", "2026-05-01", "2026-05-31"]
    assert [got[("p6", c)] for c in ("2026-04-01", "2026-05-01", "2026-05-31")] == [
        (False, 424, 0), (False, 454, 0), (False, 484, 0),
    ]  # fmt: skip
    assert len(rows) == 3 + 3 + 3 + 1 + 3 + 3


def test_activity_older_than_every_window(warehouse):
    f = _features(warehouse, "p6")
    assert f["recency_days"] == 514  # 2025-02-01 to 2026-06-30
    assert f["days_since_last_visit"] == 486  # 2025-03-01
    assert f["tenure_days"] == 514  # no profile date: first activity
    assert (f["frequency_365d"], f["monetary_365d"], f["n_categories_365d"]) == (0, 0.0, 0)
    assert f["home_city"] == "Berlin"  # web location, however old


def test_training_features_match_a_cutoff_replay(warehouse):
    f = _row(
        warehouse,
        "select * from ml.propensity_training_examples where person_id = ? and cutoff_date = ?",
        ["p2", date(2026, 5, 31)],
    )
    # as of 05-31: e5 (search) that day, e6 59 days back, e7 60 days back
    assert (f["web_events_7d"], f["web_events_30d"], f["web_events_90d"]) == (1, 1, 3)
    assert f["searches_30d"] == 1
    assert f["days_since_last_visit"] == 0
    assert f["tenure_days"] == 60
    assert f["home_city"] is None  # no located event by then
    feature_columns = [
        d[0] for d in warehouse.execute("select * from marts.customer_features").description
    ][2:]
    training_columns = [
        d[0] for d in warehouse.execute("select * from ml.propensity_training_examples").description
    ]
    assert training_columns == ["person_id", "cutoff_date", *feature_columns, "purchased_next_30d"]
