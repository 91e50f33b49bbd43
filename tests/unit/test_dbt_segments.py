"""The segment models (dbt) over hand-made persons, across two runs: consent, exclusive groups,
minimum size, keyed holdouts fixed at entry, history with entries and exits, KPIs, overlap."""

from __future__ import annotations

import hashlib
import hmac
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.dbt_build import dbt_build
from warehouse.audiences import compile_audiences, load_audiences, write_audience_tables
from warehouse.connection import configure_connection

HMAC_KEY = "segments-key-3"
DAY1, DAY2 = "2026-06-30", "2026-07-01"
# the segment layer (its campaign model needs the campaigns staging) and the enrichment view
SELECTION = [
    "stg_enrichment__postcodes",
    "path:models/segments",
    "--exclude",
    "campaign_performance",
]

AUDIENCES = """\
segments:
  - id: vip
    name: VIP
    purpose: analytics
    group: tier
    priority: 1
    rank_by: {attribute: recency_days, order: asc}
    personalization:
      offer: VIP reward
      template: loyalty_rewards
      variables: [loyalty_tier]
      priority: 1
      channels: [email]
    where: {attribute: recency_days, le: 10}
  - id: active
    name: Active
    purpose: analytics
    group: tier
    priority: 2
    where: {attribute: recency_days, le: 50}
  - id: tiny
    name: Tiny
    purpose: analytics
    min_size: 3
    where: {attribute: recency_days, eq: 50}
  - id: everyone
    name: Everyone
    purpose: personalization
    holdout_share: {share}
    personalization:
      offer: Something for everyone
      variables: [first_category_of_interest, discount_level]
      priority: 2
    where: {attribute: is_known, eq: true}
  - id: urban_adults
    name: Urban adults
    purpose: analytics
    where:
      all:
        - {attribute: urbanicity, eq: urban}
        - {attribute: age, ge: 30}
"""

# person_id, recency_days (run 1), consent_personalization, postcode, date_of_birth
PERSONS = {
    "p1": (1, True, "10001", "1990-06-30"),
    "p2": (5, True, "10001", "1996-07-01"),
    "p3": (9, True, "90001", None),
    "p4": (20, True, "90001", "1980-01-01"),
    "p5": (50, True, "60601", "1970-01-01"),
    "p6": (300, True, "60601", "1970-01-01"),
    "p7": (None, True, None, None),
    "p8": (2, False, "10001", "1985-05-05"),
}


def _seed(con: duckdb.DuckDBPyConnection, recency: dict[str, int | None], extra: list[str]):
    for schema in ("raw", "marts", "intermediate"):
        con.execute(f"create schema if not exists {schema}")
    con.execute(
        "create or replace table marts.customer_profiles (person_id varchar, is_known boolean, "
        "date_of_birth date, country varchar, postcode varchar, consent_analytics boolean, "
        "consent_personalization boolean, consent_ad_targeting boolean, "
        "consent_third_party_sharing boolean)"
    )
    persons = {**PERSONS, **{p: (1, True, "10001", None) for p in extra}}
    con.executemany(
        "insert into marts.customer_profiles values (?, true, ?, 'US', ?, true, ?, false, false)",
        [[p, dob, pc, consent] for p, (_, consent, pc, dob) in persons.items()],
    )
    con.execute(
        "create or replace table marts.customer_features "
        "(person_id varchar, as_of date, recency_days bigint, frequency_365d bigint, "
        "monetary_365d double, web_events_30d bigint, top_category_365d varchar)"
    )
    con.executemany(
        "insert into marts.customer_features values (?, null, ?, 1, 10.0, 0, 'home')",
        [[p, recency.get(p, 1)] for p in persons],
    )
    con.execute(
        "create or replace table marts.customer_scores "
        "(person_id varchar, as_of date, propensity_30d double, expected_spend_365d double, "
        "propensity_model_version varchar, cluster_model_version varchar, "
        "clv_model_version varchar)"
    )
    con.executemany(
        "insert into marts.customer_scores values (?, null, ?, ?, 'v1', null, 'v1')",
        [[p, i / 10, 10.0 * i] for i, p in enumerate(persons)],
    )
    con.execute(
        "create or replace table marts.lookalike_scores (person_id varchar, seed_segment varchar, "
        "lookalike_score double, lookalike_rank_pct double, is_lookalike_seed boolean, as_of date)"
    )
    con.execute(
        "create or replace table raw.enrichment (country varchar, postcode varchar, "
        "urbanicity varchar, median_household_income double, population_density double, "
        "provider varchar, _file varchar, _row_number bigint, _loaded_at timestamp, "
        "_extra varchar, _flags varchar)"
    )
    con.execute(
        "insert into raw.enrichment values "
        "('US', '10001', 'urban', 90000, 10000, 'x', 'f', 1, now(), null, null), "
        "('us', '90001 ', 'suburban', 60000, 2000, 'x', 'f', 2, now(), null, null)"
    )
    con.execute(
        "create or replace table intermediate.int_web_events_attributed (person_id varchar, "
        "event_id varchar, event_at timestamp, event_type varchar, session_id varchar, "
        "device_type varchar, sku varchar, product_category varchar, page_url varchar, "
        "order_id varchar, "
        "revenue decimal(18, 2))"
    )
    con.execute(
        "create or replace table intermediate.int_pos_lines_attributed (person_id varchar, "
        "transaction_id varchar, transacted_at timestamp, is_return boolean, sku varchar, "
        "product_category varchar, line_amount decimal(18, 2))"
    )
    con.execute(
        "create or replace table intermediate.int_customer_days_aggregated (person_id varchar, "
        "activity_date date, purchases bigint, pos_net_amount decimal(18, 2), "
        "web_revenue decimal(18, 2))"
    )
    con.execute(
        "insert into intermediate.int_customer_days_aggregated values "
        "('p1', '2026-07-01', 2, 30.00, 0), ('p4', '2026-07-01', 1, 0, 12.50)"
    )


def _audiences(con: duckdb.DuckDBPyConnection, folder: Path, share: float) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "test.yml").write_text(textwrap.dedent(AUDIENCES).replace("{share}", str(share)))
    audiences = load_audiences(folder, root=folder)
    write_audience_tables(con, audiences, compile_audiences(audiences), 1, 0.1)


def _build(tmp: Path, path: Path, as_of: str) -> None:
    dbt_build(tmp, path, HMAC_KEY, as_of, SELECTION)


def _bucket(segment_id: str, person_id: str) -> int:
    digest = hmac.new(
        HMAC_KEY.encode(), f"holdout|{segment_id}|{person_id}".encode(), hashlib.sha256
    ).hexdigest()
    return int(digest[:8], 16) % 10_000


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("dbt_segments")
    path = tmp / "warehouse.duckdb"
    snapshots = {}
    # run 1: the persons above, holdout share 0.5 for `everyone`
    con = duckdb.connect(str(path))
    _seed(con, {p: v[0] for p, v in PERSONS.items()}, [])
    _audiences(con, tmp / "segments", 0.5)
    con.close()
    _build(tmp, path, DAY1)
    con = duckdb.connect(str(path))
    snapshots["members_1"] = con.execute(
        "select segment_id, person_id, is_holdout from marts.segment_members"
    ).fetchall()
    # run 2: p2 lapses from vip to active, p6 stops being in nothing (recency 40: active),
    # p9 arrives; the share of `everyone` drops to 0
    recency = {p: v[0] for p, v in PERSONS.items()} | {"p2": 30, "p6": 40, "p3": 200}
    _seed(con, recency, ["p9"])
    _audiences(con, tmp / "segments", 0.0)
    con.close()
    _build(tmp, path, DAY2)
    con = duckdb.connect(str(path))
    configure_connection(con, HMAC_KEY.encode())
    yield {"con": con, **snapshots}
    con.close()


def _set(con, sql: str, params=()) -> set:
    return set(con.execute(sql, list(params)).fetchall())


def test_exclusive_groups_consent_and_minimum_size(runs):
    members_1 = {(s, p) for s, p, _ in runs["members_1"]}
    assert {p for s, p in members_1 if s == "vip"} == {"p1", "p2", "p3", "p8"}
    # active matches p1-p5 and p8, but p1-p3 and p8 are vip (priority 1 in group tier)
    assert {p for s, p in members_1 if s == "active"} == {"p4", "p5"}
    # everyone is personalization: p8 did not consent
    assert {p for s, p in members_1 if s == "everyone"} == set(PERSONS) - {"p8"}
    # tiny meets its condition for one person, below min_size 3: not published
    assert not {p for s, p in members_1 if s == "tiny"}


def test_a_segment_too_small_to_publish_is_served_nowhere(runs):
    con = runs["con"]
    for table in ("segment_members", "segment_membership_history"):
        rows = con.execute(f"select count(*) from marts.{table} where segment_id = 'tiny'")
        assert rows.fetchone()[0] == 0, table
    # kept internally (spells continue), and flagged
    assert con.execute(
        "select count(*), bool_or(published) from intermediate.int_segment_memberships_historized "
        "where segment_id = 'tiny'"
    ).fetchone() == (2, False)
    kpi = con.execute(
        "select members, buyers, revenue from marts.segment_kpis where segment_id = 'tiny'"
    ).fetchall()
    assert kpi == [(1, None, None), (1, None, None)]
    profile = con.execute(
        "select mean_monetary_365d from marts.segment_summary where segment_id = 'tiny'"
    ).fetchone()
    assert profile == (None,)


def test_summary_counts_and_reasons(runs):
    con = runs["con"]
    row = con.execute(
        "select eligible, members, excluded_by_group, published from marts.segment_summary "
        "where segment_id = 'tiny'"
    ).fetchone()
    assert row == (1, 1, 0, False)
    excluded = con.execute(
        "select excluded_no_consent from marts.segment_summary where segment_id = 'everyone'"
    ).fetchone()[0]
    assert excluded == 1  # p8
    by_group = con.execute(
        "select excluded_by_group from marts.segment_summary where segment_id = 'active'"
    ).fetchone()[0]
    # run 2: vip = p1, p8 (p2 lapsed to 30, p3 to 200); active also matches p1, p8 and p9
    assert by_group == 3


def test_holdout_is_the_keyed_hash_drawn_at_entry_and_kept(runs):
    con = runs["con"]
    first = {p: h for s, p, h in runs["members_1"] if s == "everyone"}
    assert first == {p: _bucket("everyone", p) < 5_000 for p in first}
    assert any(first.values()) and not all(first.values())
    now = dict(
        con.execute(
            "select person_id, is_holdout from marts.segment_members where segment_id = 'everyone'"
        ).fetchall()
    )
    # the share fell to 0: members who stayed keep their draw, the newcomer is not held out
    assert {p: now[p] for p in first} == first
    assert now["p9"] is False


def test_history_has_both_runs_with_entries_and_exits(runs):
    con = runs["con"]
    assert _set(con, "select distinct as_of::varchar from marts.segment_membership_history") == {
        (DAY1,),
        (DAY2,),
    }
    vip = _set(
        con,
        "select person_id, entered_on::varchar from marts.segment_membership_history "
        "where segment_id = 'vip' and as_of = ?",
        [DAY2],
    )
    assert vip == {("p1", DAY1), ("p8", DAY1), ("p9", DAY2)}
    row = con.execute(
        "select previous_members, entered, exited, size_change from marts.segment_summary "
        "where segment_id = 'vip'"
    ).fetchone()
    assert row == (4, 1, 2, -0.25)  # p2 and p3 left, p9 came
    active = _set(
        con,
        "select person_id from marts.segment_members where segment_id = 'active'",
    )
    assert active == {("p2",), ("p4",), ("p5",), ("p6",)}  # p2 moved down from vip
    # membership as of any date: the latest run on or before it
    as_of_day1 = _set(
        con,
        """
        select person_id from marts.segment_membership_history
        where segment_id = 'vip' and as_of = (
            select max(as_of) from marts.segment_membership_history where as_of <= ?
        )
        """,
        ["2026-06-30"],
    )
    assert as_of_day1 == {("p1",), ("p2",), ("p3",), ("p8",)}


def test_kpis_overlap_and_outcomes(runs):
    con = runs["con"]
    kpi = con.execute(
        "select members, buyers, orders, revenue, average_order_value, churn_rate "
        "from marts.segment_kpis where segment_id = 'vip' and as_of = ?",
        [DAY2],
    ).fetchone()
    # of day 1's four members, p1 bought twice for 30.00 on day 2; 2 of the 4 left
    assert kpi[:3] == (3, 1, 2)
    assert float(kpi[3]) == 30.0 and float(kpi[4]) == 15.0 and kpi[5] == 0.5
    assert _set(con, "select count(distinct as_of) from marts.segment_kpis") == {(2,)}
    overlap = con.execute(
        "select overlap, share_of_members from marts.segment_overlap "
        "where segment_id = 'vip' and other_segment_id = 'everyone'"
    ).fetchone()
    assert overlap == (2, round(2 / 3, 6))  # p1 and p9 (p8 has no personalization consent)
    outcomes = con.execute(
        "select sum(persons), sum(converters) from marts.segment_outcomes "
        "where segment_id = 'active'"
    ).fetchone()
    # spells of active (p4, p5 from day 1; p2, p6 from day 2) that bought after entering: p4
    assert outcomes == (4, 1)


def test_age_and_urbanicity_come_from_birth_date_and_enrichment(runs):
    con = runs["con"]
    attrs = dict(
        con.execute(
            "select person_id, struct_pack(age, urbanicity) from marts.segment_attributes"
        ).fetchall()
    )
    assert attrs["p1"] == {"age": 36, "urbanicity": "urban"}  # 36 on 2026-06-30
    assert attrs["p2"] == {"age": 30, "urbanicity": "urban"}  # 30 on 2026-07-01 (run 2)
    assert attrs["p3"] == {"age": None, "urbanicity": "suburban"}  # '90001 ' normalised
    assert attrs["p7"] == {"age": None, "urbanicity": None}
    urban_adults = _set(
        con, "select person_id from marts.segment_members where segment_id = 'urban_adults'"
    )
    assert urban_adults == {("p1",), ("p2",), ("p8",)}


def test_size_drift_and_unpublished_segments_warn(runs):
    from orchestration.defs.segment_checks import size_findings

    moved, small = size_findings(runs["con"], 0.2)
    assert moved == [
        "active: 2 -> 4 members (+100%, tolerance 20%)",
        "urban_adults: 2 -> 3 members (+50%, tolerance 20%)",
        "vip: 4 -> 3 members (-25%, tolerance 20%)",
    ]
    assert small == ["tiny: 1 members, below min_size 3: not published"]
    assert size_findings(runs["con"], 0.5)[0] == ["active: 2 -> 4 members (+100%, tolerance 50%)"]


def test_personalization_feed_picks_the_first_offer_with_its_variables(runs, tmp_path):
    from warehouse.feeds import verify_feeds, write_feeds

    con = runs["con"]
    feed = {
        r[0]: r[1:]
        for r in con.execute(
            "select person_id, segment_id, offer, feed_channels, loyalty_tier, "
            "first_category_of_interest, discount_level from marts.personalization_feed"
        ).fetchall()
    }
    # run 2: vip is p1, p8, p9; p8 has no personalization consent, so no feed row at all
    assert "p8" not in feed
    assert {p for p, r in feed.items() if r[0] == "vip"} == {"p1", "p9"}
    tiers = dict(
        con.execute(
            "select person_id, loyalty_tier from marts.personalization_variables"
        ).fetchall()
    )
    for person in ("p1", "p9"):
        offer, channels, tier, category, discount = feed[person][1:]
        assert (offer, channels, tier) == ("VIP reward", ["email"], tiers[person])
        assert category is None and discount is None  # not variables of the vip template
    others = {p: r for p, r in feed.items() if r[0] == "everyone"}
    # everyone's targeted members (holdouts drawn in run 1 stay held out) outside vip
    targeted = {
        p
        for (p,) in con.execute(
            "select person_id from marts.segment_members "
            "where segment_id = 'everyone' and not is_holdout"
        ).fetchall()
    }
    assert set(others) == targeted - {"p1", "p9"} and 0 < len(others) < 6
    for _segment, offer, channels, tier, category, discount in others.values():
        assert offer == "Something for everyone" and sorted(channels) == ["dco", "email"]
        assert tier is None and category == "home" and discount is not None

    as_of = con.execute("select max(as_of) from marts.segment_members").fetchall()[0][0]
    earlier = tmp_path / "feeds" / "email" / "2026-01-01"
    earlier.mkdir(parents=True)
    (earlier / "feed.jsonl").write_text('{"person_id": "erased"}\n')
    report = write_feeds(con, tmp_path, as_of)
    assert not earlier.exists()  # an earlier feed (and whoever it held) is gone
    assert report["email"]["rows"] == len(feed) and report["dco"]["rows"] == len(others)
    assert verify_feeds(con, tmp_path, as_of) == []
    lines = (tmp_path / "feeds" / "email" / as_of.isoformat() / "feed.jsonl").read_text()
    import json

    rows = [json.loads(line) for line in lines.splitlines()]
    assert all(r["offer"] for r in rows)
    assert {r["person_id"] for r in rows} == set(feed)
    # a person who loses consent is caught by the check on the written files
    revoked = sorted(others)[0]
    con.execute(
        "update marts.customer_profiles set consent_personalization = false where person_id = ?",
        [revoked],
    )
    try:
        problems = verify_feeds(con, tmp_path, as_of)
    finally:
        con.execute(
            "update marts.customer_profiles set consent_personalization = true where person_id = ?",
            [revoked],
        )
    assert [p["channel"] for p in problems] == ["dco", "email"]
