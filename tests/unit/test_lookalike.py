"""Lookalike scores on synthetic inputs with planted groups: the seed's group is found, seed
members and persons without analytics consent get no score, a tiny seed skips with a reason."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from ml.lookalike import MIN_SEED, default_seed_name, score_lookalikes
from ml.testing import make_inputs
from warehouse.audiences import load_audiences

AS_OF = date(2026, 6, 30)
REPO = Path(__file__).resolve().parents[2]


def _inputs(n_persons: int = 4000, seed: int = 3):
    con = duckdb.connect()
    truth = make_inputs(con, n_persons=n_persons, as_of=AS_OF, seed=seed, training=False)
    return con, truth


def _history(con: duckdb.DuckDBPyConnection, segment_id: str, person_ids, as_of=AS_OF) -> None:
    """A segment run whose published members are person_ids (what the segment models write)."""
    con.register("_members", pa.table({"person_id": pa.array(list(person_ids), type=pa.string())}))
    con.execute(
        "create or replace table marts.segment_membership_history as "
        "select $segment as segment_id, person_id, cast($as_of as date) as as_of, "
        "cast($as_of as date) as entered_on, false as is_holdout from _members",
        {"segment": segment_id, "as_of": as_of},
    )
    con.execute(
        "create or replace table marts.segment_runs as select cast($d as date) as as_of",
        {"d": as_of},
    )
    con.unregister("_members")


def _consented(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("select person_id from marts.customer_profiles where consent_analytics")
    return {r[0] for r in rows.fetchall()}


def _tier(con: duckdb.DuckDBPyConnection, share: float) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "select person_id from marts.lookalike_scores "
            "where lookalike_rank_pct < ? and not is_lookalike_seed",
            [share],
        ).fetchall()
    ]


@pytest.fixture(scope="module")
def planted():
    """Seed: a random half of the consented persons of planted group 0."""
    con, truth = _inputs()
    ids, group = np.asarray(truth.person_id), np.asarray(truth.group)
    consented = _consented(con)
    rng = np.random.default_rng(0)
    in_group = [p for p, g in zip(ids, group, strict=True) if g == 0 and p in consented]
    seed_ids = set(rng.choice(in_group, size=len(in_group) // 2, replace=False))
    _history(con, "planted_group", seed_ids)
    metrics = score_lookalikes(con, AS_OF, seed_segment="planted_group", seed=42)
    yield con, dict(zip(ids, group, strict=True)), seed_ids, metrics
    con.close()


def test_lookalikes_of_a_planted_group_are_that_group(planted):
    con, group_of, seed_ids, metrics = planted
    assert metrics["status"] == "trained"
    assert metrics["seed_segment"] == "planted_group" and metrics["seed_source"] == "segment"
    assert metrics["seed_size"] == len(seed_ids)
    assert metrics["holdout_auc"] > 0.8
    rest = [
        p
        for (p,) in con.execute(
            "select person_id from marts.lookalike_scores where lookalike_score is not null"
        ).fetchall()
    ]
    base = np.mean([group_of[p] == 0 for p in rest])
    for share in (0.01, 0.05, 0.10):
        tier = _tier(con, share)
        assert len(tier) == math.ceil(share * len(rest))
        in_group = np.mean([group_of[p] == 0 for p in tier])
        # the unseeded half of group 0 is found: far above its share among the rest
        assert in_group >= 0.9, (share, in_group)
        assert in_group / base > 3, (share, in_group, base)


def test_seed_members_and_persons_without_consent_get_no_score(planted):
    con, _, seed_ids, _ = planted
    consented = _consented(con)
    rows = con.execute(
        "select person_id, lookalike_score, lookalike_rank_pct, is_lookalike_seed, seed_segment "
        "from marts.lookalike_scores"
    ).fetchall()
    everyone = {
        r[0] for r in con.execute("select person_id from marts.customer_features").fetchall()
    }
    assert {r[0] for r in rows} == everyone  # one row per person
    for person, score, rank, is_seed, seed_segment in rows:
        assert seed_segment == "planted_group"
        assert is_seed == (person in seed_ids)
        if is_seed or person not in consented:
            assert score is None and rank is None, person
        else:
            assert 0.0 <= score <= 1.0 and 0.0 <= rank < 1.0, person
    assert not set(_tier(con, 0.10)) & seed_ids


def test_prospects_without_purchases_are_scored(planted):
    con, _, _, _ = planted
    prospects, scored = con.execute(
        """
        select count(*), count(l.lookalike_score)
        from marts.customer_features as f
        join marts.lookalike_scores as l using (person_id)
        join marts.customer_profiles as p using (person_id)
        where f.recency_days is null and p.consent_analytics and not l.is_lookalike_seed
        """
    ).fetchone()
    assert prospects > 0 and scored == prospects


def test_a_run_records_its_model_and_a_rerun_changes_nothing(planted):
    con, _, _, metrics = planted
    rows = con.execute(
        "select version, status, metrics, features from ml.model_runs "
        "where model_name = 'lookalike'"
    ).fetchall()
    assert len(rows) == 1 and rows[0][1] == "trained"
    assert rows[0][0].startswith(f"{AS_OF.isoformat()}-s42-")
    stored = json.loads(rows[0][2])
    assert stored["seed_size"] == metrics["seed_size"] and stored["feature_weights"]
    assert "recency_days" in json.loads(rows[0][3])
    before = con.execute(
        "select person_id, lookalike_score, lookalike_rank_pct from marts.lookalike_scores "
        "order by person_id"
    ).fetchall()
    again = score_lookalikes(
        con, AS_OF, seed_segment="planted_group", seed=42, skip_known_versions=True
    )
    assert again["model_runs_appended"] == 0
    after = con.execute(
        "select person_id, lookalike_score, lookalike_rank_pct from marts.lookalike_scores "
        "order by person_id"
    ).fetchall()
    assert after == before


def test_default_seed_is_the_top_5_percent_by_expected_spend_and_leaves_it_out_of_the_model():
    con, truth = _inputs(n_persons=3000, seed=5)
    # expected spend planted high for group 2, so the default seed is (mostly) group 2
    rng = np.random.default_rng(1)
    spend = np.where(np.asarray(truth.group) == 2, 500.0, 50.0) * rng.lognormal(0, 0.3, 3000)
    con.register(
        "_spend",
        pa.table({"person_id": np.asarray(truth.person_id), "expected_spend_365d": spend}),
    )
    con.execute("create table marts.customer_scores as select * from _spend")
    metrics = score_lookalikes(con, AS_OF, seed_segment="not_built_yet")
    assert metrics["status"] == "trained"
    assert metrics["seed_segment"] == default_seed_name() == "top_5pct_expected_spend_365d"
    assert any("no segment history" in w and "default seed" in w for w in metrics["warnings"])
    consented = _consented(con)
    valued = sum(p in consented for p in np.asarray(truth.person_id))
    seeds = {
        r[0]
        for r in con.execute(
            "select person_id from marts.lookalike_scores where is_lookalike_seed"
        ).fetchall()
    }
    assert len(seeds) == math.ceil(0.05 * valued) and seeds <= consented
    top = con.execute(
        "select min(s.expected_spend_365d) from marts.customer_scores as s "
        "join marts.lookalike_scores as l using (person_id) where l.is_lookalike_seed"
    ).fetchone()[0]
    rest_max = con.execute(
        "select max(s.expected_spend_365d) from marts.customer_scores as s "
        "join marts.lookalike_scores as l using (person_id) where l.lookalike_score is not null"
    ).fetchone()[0]
    assert top >= rest_max
    features = json.loads(
        con.execute("select features from ml.model_runs where model_name = 'lookalike'").fetchone()[
            0
        ]
    )
    assert "expected_spend_365d" not in features
    group_of = dict(zip(np.asarray(truth.person_id), np.asarray(truth.group), strict=True))
    tier = _tier(con, 0.05)
    assert np.mean([group_of[p] == 2 for p in tier]) >= 0.9


def test_a_tiny_seed_gives_no_scores_and_says_why():
    con, truth = _inputs(n_persons=600, seed=7)
    few = sorted(_consented(con))[: MIN_SEED - 1]
    _history(con, "tiny", few)
    metrics = score_lookalikes(con, AS_OF, seed_segment="tiny")
    assert metrics["status"] == "skipped"
    assert f"{MIN_SEED - 1} persons" in metrics["reason"]
    assert any("not scored" in w for w in metrics["warnings"])
    scored, seeds, rows = con.execute(
        "select count(lookalike_score), count(*) filter (where is_lookalike_seed), count(*) "
        "from marts.lookalike_scores"
    ).fetchone()
    assert scored == 0 and seeds == len(few) and rows == len(truth.person_id)
    status, reason = con.execute(
        "select status, reason from ml.model_runs where model_name = 'lookalike'"
    ).fetchone()
    assert status == "skipped" and "need" in reason


def test_a_segment_without_members_on_the_latest_run_falls_back_to_the_default():
    con, truth = _inputs(n_persons=600, seed=8)
    _history(con, "elsewhere", sorted(_consented(con))[:30])
    # no customer_scores: the default seed has no values either, so nothing is scored
    metrics = score_lookalikes(con, AS_OF, seed_segment="gone")
    assert metrics["status"] == "skipped"
    assert any("'gone'" in w and "no published" in w for w in metrics["warnings"])
    assert metrics["seed_segment"] == default_seed_name()


def test_shipped_lookalike_segments():
    audiences = load_audiences(REPO / "segments", root=REPO)
    by_id = {s.segment_id: s for s in audiences.segments}
    tiers = ("lookalike_1pct", "lookalike_2pct", "lookalike_5pct", "lookalike_10pct")
    # lookalike_champions: the segment the paid-social lookalike campaign targets
    for segment_id in (*tiers, "lookalike_champions"):
        assert by_id[segment_id].purpose == "ad_targeting"
        assert by_id[segment_id].kind == "lookalike"
