"""Persona clusters on inputs with planted groups (ml.testing): model choice, personas in words,
persons too inactive to place, ids kept across runs, pinned versions and the registry."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from ml import score_customers
from ml.clusters import FAMILIES, K_RANGE, fit_clusters
from ml.registry import ArtifactError
from ml.testing import make_inputs

AS_OF = date(2026, 6, 30)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    con = duckdb.connect()
    truth = make_inputs(con, n_persons=4000, as_of=AS_OF, seed=1)
    metrics = score_customers(con, AS_OF, seed=42, model_dir=str(models))
    yield con, truth, metrics, models
    con.close()


def _placed(con) -> dict[str, int]:
    return dict(
        con.execute(
            "select person_id, cluster_id from marts.customer_scores where cluster_id is not null"
        ).fetchall()
    )


def _agreement(truth, placed: dict[str, int]) -> float:
    ids = np.asarray(truth.person_id)
    keep = np.isin(ids, list(placed))
    labels = np.array([placed[p] for p in ids[keep]])
    return adjusted_rand_score(np.asarray(truth.group)[keep], labels)


def test_model_choice_is_recorded_and_recovers_the_planted_groups(run):
    con, truth, metrics, _ = run
    clusters = metrics["clusters"]
    assert clusters["status"] == "trained"
    assert clusters["k"] == 4
    grid = {(c["family"], c["k"]) for c in clusters["candidates"]}
    assert grid == {(f, k) for f in FAMILIES for k in K_RANGE}
    for c in clusters["candidates"]:
        assert c["silhouette"] is not None and c["davies_bouldin"] is not None
        assert ("bic" in c) == (c["family"] == "gaussian_mixture")
    best = max(c["silhouette"] for c in clusters["candidates"])
    assert clusters["silhouette"] == best
    assert _agreement(truth, _placed(con)) > 0.95


def test_persons_with_too_little_activity_or_no_consent_get_no_cluster(run):
    con, _, metrics, _ = run
    rows = con.execute(
        """
        select
            count(*) filter (where s.cluster_id is not null and f.activity_events_365d < 5),
            count(*) filter (where s.cluster_id is not null and not p.consent_analytics),
            count(*) filter (
                where s.cluster_id is null and f.activity_events_365d >= 5 and p.consent_analytics
            ),
            count(*) filter (where s.cluster_id is not null)
        from marts.customer_scores s
        join ml.cluster_features f using (person_id)
        join marts.customer_profiles p using (person_id)
        """
    ).fetchall()[0]
    assert rows[:3] == (0, 0, 0)
    assert rows[3] == metrics["clusters"]["placed_persons"] > 0


def test_each_cluster_is_a_named_persona_described_by_what_sets_it_apart(run):
    con, _, metrics, _ = run
    personas = con.execute(
        "select cluster_id, persona_name, description, persons from ml.cluster_personas "
        "order by cluster_id"
    ).fetchall()
    assert len(personas) == metrics["clusters"]["k"]
    names = [p[1] for p in personas]
    assert len(set(names)) == len(names) and all(names)
    sizes = dict(
        con.execute(
            "select cluster_id, count(*) from marts.customer_scores "
            "where cluster_id is not null group by 1"
        ).fetchall()
    )
    assert {p[0]: p[3] for p in personas} == sizes
    # the persona's name is on every member's score row
    mismatched = con.execute(
        "select count(*) from marts.customer_scores s join ml.cluster_personas c "
        "using (cluster_id) where s.persona_name is distinct from c.persona_name"
    ).fetchone()[0]
    assert mismatched == 0
    # the cluster that buys most in store is described so, and the least so as mostly online
    shares = con.execute(
        "select s.cluster_id, avg(f.store_order_share) from marts.customer_scores s "
        "join ml.cluster_features f using (person_id) where s.cluster_id is not null "
        "group by 1 order by 2"
    ).fetchall()
    described = {p[0]: p[2] for p in personas}
    assert "mostly in store" in described[shares[-1][0]]
    assert "mostly online" in described[shares[0][0]]


def test_projection_map_shows_every_cluster(run):
    _, _, metrics, _ = run
    svg = metrics["projection_svg"]
    assert svg.startswith("<svg") and svg.count("<circle") >= 1000
    for persona in metrics["clusters"]["personas"]:
        assert persona["persona_name"].split(" · ")[0] in svg


def test_cluster_ids_are_kept_when_the_next_run_finds_the_same_clusters(run, tmp_path):
    con, truth, metrics, models = run
    first = _placed(con)
    # the next day: the same persons with fresh noise and fresh group draws
    con2 = duckdb.connect()
    registered = con.sql("select * from ml.model_runs").to_arrow_table()  # noqa: F841
    con2.execute("create schema ml")
    con2.execute("create table ml.model_runs as select * from registered")
    truth2 = make_inputs(con2, n_persons=4000, as_of=AS_OF, seed=2)
    again = score_customers(con2, AS_OF, seed=7, model_dir=str(models))
    second = _placed(con2)
    assert again["clusters"]["ids_kept_from_previous"] == 4

    def majority(t, placed):
        ids = np.asarray(t.person_id)
        out = {}
        for g in range(4):
            members = [placed[p] for p in ids[np.asarray(t.group) == g] if p in placed]
            out[g] = max(set(members), key=members.count)
        return out

    assert majority(truth, first) == majority(truth2, second)
    con2.close()


def test_registry_saves_artifacts_and_a_pinned_version_scores_without_training(run, tmp_path):
    con, _, metrics, models = run
    rows = con.execute(
        "select model_name, version, status, artifact from ml.model_runs order by model_name"
    ).fetchall()
    by_name = {r[0]: r for r in rows}
    for name in ("behavioural_clusters", "purchase_propensity"):
        assert by_name[name][2] == "trained"
        assert Path(by_name[name][3]).is_file()
        assert by_name[name][1] == metrics["versions"][name]
    version = by_name["behavioural_clusters"][1]
    named = con.execute(
        "select distinct cluster_model_version from marts.customer_scores "
        "where cluster_id is not null"
    ).fetchall()
    assert named == [(version,)]

    runs_before = con.execute("select count(*) from ml.model_runs").fetchone()[0]
    con.execute("update ml.cluster_features set exposure_days = exposure_days + 1")
    pinned = score_customers(
        con,
        AS_OF,
        seed=42,
        model_dir=str(models),
        pinned_versions={"behavioural_clusters": version},
    )
    assert pinned["versions"]["behavioural_clusters"] == version
    new_rows = con.execute(
        "select model_name from ml.model_runs order by trained_at desc limit ?",
        [con.execute("select count(*) from ml.model_runs").fetchone()[0] - runs_before],
    ).fetchall()
    assert ("behavioural_clusters",) not in new_rows
    assert (
        json.loads(
            con.execute(
                "select metrics from ml.model_runs where model_name = 'behavioural_clusters'"
            ).fetchone()[0]
        )["k"]
        == 4
    )

    with pytest.raises(ArtifactError, match="not registered.*latest trained versions"):
        score_customers(
            con, AS_OF, model_dir=str(models), pinned_versions={"behavioural_clusters": "v0"}
        )


def test_too_few_placeable_persons_skip_clustering_with_the_reason():
    con = duckdb.connect()
    make_inputs(con, n_persons=20, as_of=AS_OF, seed=4)
    metrics = score_customers(con, AS_OF, seed=42)
    assert metrics["clusters"]["status"] == "skipped"
    assert "placeable persons" in metrics["clusters"]["reason"]
    assert any(w.startswith("clusters:") for w in metrics["warnings"])
    assert con.execute(
        "select count(cluster_id), count(persona_name) from marts.customer_scores"
    ).fetchone() == (0, 0)
    assert con.execute("select count(*) from ml.cluster_personas").fetchone()[0] == 0


def test_scoring_without_cluster_features_publishes_without_clusters():
    con = duckdb.connect()
    make_inputs(con, n_persons=500, as_of=AS_OF, seed=5)
    con.execute("drop table ml.cluster_features")
    metrics = score_customers(con, AS_OF, seed=42)
    assert metrics["clusters"]["status"] == "skipped"
    assert "cluster_features" in metrics["clusters"]["reason"]
    assert con.execute("select count(*) from marts.customer_scores").fetchone()[0] == 500


def test_fit_clusters_skips_on_a_handful_of_rows():
    model = fit_clusters(np.ones((8, 2), dtype=np.float32), ["a", "b"], seed=0)
    assert not model.trained and model.metrics["status"] == "skipped"
    assert model.predict(np.zeros((3, 2), dtype=np.float32)).tolist() == [-1, -1, -1]


def test_placement_check_finds_a_person_placed_against_the_rules():
    from orchestration.defs.ml.cluster_checks import placement_problems, stability_findings

    con = duckdb.connect()
    make_inputs(con, n_persons=600, as_of=AS_OF, seed=8)
    score_customers(con, AS_OF, seed=42)
    assert set(placement_problems(con, 5).values()) == {0}
    assert stability_findings(con) == []
    con.execute(
        "update marts.customer_scores set cluster_id = 0, persona_name = ("
        "select persona_name from ml.cluster_personas where cluster_id = 0) "
        "where person_id = (select min(person_id) from marts.customer_profiles "
        "where not consent_analytics)"
    )
    con.execute(
        "update marts.customer_scores set cluster_id = 99 where person_id = (select min(person_id)"
        " from ml.cluster_features where activity_events_365d < 5)"
    )
    problems = placement_problems(con, 5)
    assert problems["placed_without_analytics_consent"] == 1
    assert problems["placed_below_min_events"] == 1
    assert problems["cluster_without_persona"] == 1
    # a later run whose clusters matched none of the previous ones warns
    con.execute(
        "insert into ml.model_runs (model_name, version, trained_at, metrics, status) values "
        "('behavioural_clusters', 'later', now() + interval 1 day, "
        "'{\"k\": 4, \"ids_kept_from_previous\": 1}', 'trained')"
    )
    assert "1 of 4 clusters kept" in stability_findings(con)[0]
