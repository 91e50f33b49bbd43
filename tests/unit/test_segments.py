"""Segment engine: consent filtering, exclusion counts, stable holdouts, history per as_of."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import date

import duckdb
import pytest

from ml import SEGMENTS, SegmentDefinition, build_segments, score_customers
from ml.testing import make_inputs

AS_OF = date(2026, 6, 30)


@pytest.fixture(scope="module")
def warehouse():
    con = duckdb.connect()
    make_inputs(con, n_persons=3000, as_of=AS_OF, seed=5)
    score_customers(con, AS_OF, seed=42)
    result = build_segments(con, AS_OF, holdout_share=0.1, min_segment_size=50)
    yield con, result
    con.close()


def test_declared_segments_are_valid_and_frozen():
    ids = [s.segment_id for s in SEGMENTS]
    assert len(ids) == len(set(ids)) >= 8
    for required in (
        "rfm_champions",
        "rfm_at_risk",
        "rfm_hibernating",
        "propensity_top_decile",
        "cart_abandoners_30d",
        "lapsed_high_value",
        "mobile_first_browsers",
        "new_customers_90d",
    ):
        assert required in ids
    with pytest.raises(FrozenInstanceError):
        SEGMENTS[0].segment_id = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        SegmentDefinition("Bad id", "n", "rule", "d", "true", "1", "analytics")
    with pytest.raises(ValueError):
        SegmentDefinition("ok_id", "n", "rule", "d", "true", "1", "marketing")


def test_definitions_and_cluster_segments_written(warehouse):
    con, result = warehouse
    defs = dict(con.execute("select segment_id, kind from marts.segment_definitions").fetchall())
    n_clusters = con.execute(
        "select count(distinct cluster_id) from marts.customer_scores"
    ).fetchall()[0][0]
    cluster_defs = [k for k in defs if k.startswith("cluster_")]
    assert len(cluster_defs) == n_clusters >= 3
    assert all(defs[k] == "cluster" for k in cluster_defs)
    assert set(defs) == set(result["segments"])
    assert not result["skipped"]


def test_members_have_consent_for_purpose(warehouse):
    con, _ = warehouse
    violations = con.execute(
        """
        select count(*)
        from marts.segment_members m
        join marts.segment_definitions d using (segment_id)
        join marts.customer_profiles p using (person_id)
        where (d.purpose = 'ad_targeting' and not p.consent_ad_targeting)
            or (d.purpose = 'personalization' and not p.consent_personalization)
            or (d.purpose = 'analytics' and not p.consent_analytics)
            or (d.purpose = 'third_party_sharing' and not p.consent_third_party_sharing)
        """
    ).fetchall()[0][0]
    assert violations == 0
    ad_members = con.execute(
        "select count(*) from marts.segment_members where segment_id = 'propensity_top_decile'"
    ).fetchall()[0][0]
    assert ad_members > 0


def test_excluded_no_consent_counts_matching_persons_without_consent(warehouse):
    con, _ = warehouse
    expected = con.execute(
        """
        select
            count(*) filter (where not p.consent_ad_targeting),
            count(*) filter (where p.consent_ad_targeting)
        from marts.customer_scores s
        join marts.customer_profiles p using (person_id)
        where s.propensity_decile = 1
        """
    ).fetchall()[0]
    got = con.execute(
        "select excluded_no_consent, members from marts.segment_summary "
        "where segment_id = 'propensity_top_decile'"
    ).fetchall()[0]
    assert got == expected
    share, persons = con.execute(
        "select share_of_persons, (select count(*) from marts.customer_profiles) "
        "from marts.segment_summary where segment_id = 'propensity_top_decile'"
    ).fetchall()[0]
    assert share == pytest.approx(expected[1] / persons)


def test_rank_is_dense_from_one_by_score(warehouse):
    con, _ = warehouse
    bad = con.execute(
        """
        select count(*) from (
            select segment_id, count(*) as n, min(rank) as lo, max(rank) as hi,
                count(distinct rank) as d
            from marts.segment_members group by segment_id
        ) where lo <> 1 or hi <> n or d <> n
        """
    ).fetchall()[0][0]
    assert bad == 0
    top = con.execute(
        "select score = max(score) over () from marts.segment_members "
        "where segment_id = 'cart_abandoners_30d' order by rank limit 1"
    ).fetchall()
    assert top == [(True,)]


def test_holdout_share_near_setting_and_stable_across_runs(warehouse):
    con, _ = warehouse
    share = con.execute("select avg(is_holdout::int) from marts.segment_members").fetchall()[0][0]
    assert 0.08 < share < 0.12
    before = con.execute(
        "select segment_id, person_id, is_holdout from marts.segment_members order by 1, 2"
    ).fetchall()
    build_segments(con, AS_OF, holdout_share=0.1, min_segment_size=50)
    after = con.execute(
        "select segment_id, person_id, is_holdout from marts.segment_members order by 1, 2"
    ).fetchall()
    assert before == after
    # md5-based: the same (segment, person) is held out in a fresh process or DuckDB version.
    fixed = con.execute(
        "select md5_number_lower('rfm_champions' || ':' || 'p0000001') % 10000"
    ).fetchall()[0][0]
    assert (
        fixed
        == int.from_bytes(
            __import__("hashlib").md5(b"rfm_champions:p0000001").digest()[8:], "little"
        )
        % 10000
    )


def test_history_replaced_per_as_of_not_duplicated(warehouse):
    con, _ = warehouse
    members = con.execute("select count(*) from marts.segment_members").fetchall()[0][0]
    build_segments(con, AS_OF)
    build_segments(con, date(2026, 7, 1))
    counts = dict(
        con.execute(
            "select as_of, count(*) from marts.segment_membership_history group by 1"
        ).fetchall()
    )
    assert counts == {AS_OF: members, date(2026, 7, 1): members}
    dupes = con.execute(
        "select count(*) from (select segment_id, person_id, as_of, count(*) c "
        "from marts.segment_membership_history group by all having c > 1)"
    ).fetchall()[0][0]
    assert dupes == 0
    build_segments(con, AS_OF)  # leave the module fixture at its own as_of


def test_small_and_empty_segments_warn_not_fail(warehouse):
    con, _ = warehouse
    result = build_segments(con, AS_OF, min_segment_size=10_000)
    assert set(result["below_min_size"]) | set(result["empty"]) == set(result["segments"])
    assert len(result["warnings"]) == len(result["segments"])
    flagged = con.execute(
        "select count(*) from marts.segment_summary where below_min_size"
    ).fetchall()[0][0]
    assert flagged == len(result["segments"])
    build_segments(con, AS_OF)


def test_definition_that_does_not_bind_is_skipped_with_warning(monkeypatch):
    con = duckdb.connect()
    make_inputs(con, n_persons=400, as_of=AS_OF, seed=6, training=False)
    score_customers(con, AS_OF, seed=42)
    con.execute("alter table marts.customer_features drop column cart_adds_without_purchase_30d")
    result = build_segments(con, AS_OF)
    assert "cart_abandoners_30d" in result["skipped"]
    assert any("cart_abandoners_30d" in w for w in result["warnings"])
    assert "rfm_champions" in result["segments"]
