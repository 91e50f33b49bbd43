"""ml scoring on synthetic inputs with planted structure: clusters, propensity, RFM, model_runs."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pyarrow as pa
import pytest

from ml import score_customers
from ml.testing import make_inputs

AS_OF = date(2026, 6, 30)


@pytest.fixture(scope="module")
def scored():
    con = duckdb.connect()
    truth = make_inputs(con, n_persons=5000, as_of=AS_OF, seed=1, label="features")
    metrics = score_customers(con, AS_OF, seed=42)
    yield con, truth, metrics
    con.close()


def test_only_persons_with_analytics_consent_are_scored(scored):
    con, _, _ = scored
    rows = con.execute(
        """
        select p.consent_analytics,
               count(*),
               count(s.cluster_id),
               count(s.propensity_30d),
               count(s.rfm_cell)
        from marts.customer_scores as s
        join marts.customer_profiles as p using (person_id)
        group by 1
        """
    ).fetchall()
    by_consent = {row[0]: row[1:] for row in rows}
    # every person keeps a row; only the consented carry scores
    assert by_consent[False][1:] == (0, 0, 0) and by_consent[False][0] > 0
    n, clusters, propensities, cells = by_consent[True]
    # clusters place only persons active enough (tests/unit/test_clusters.py)
    assert 0 < clusters < n and propensities == n and cells == n


def test_scores_table_shape_and_ranges(scored):
    con, _, _ = scored
    n, persons, bad_p, deciles, bad_rfm, nulls = con.execute(
        """
        select
            count(*),
            count(distinct person_id),
            count(*) filter (where propensity_30d not between 0 and 1),
            count(distinct propensity_decile),
            count(*) filter (where rfm_cell <> 'no_purchase'
                and (rfm_recency_score not between 1 and 5
                    or rfm_frequency_score not between 1 and 5
                    or rfm_monetary_score not between 1 and 5)),
            count(expected_transactions_90d) + count(probability_alive)
        from marts.customer_scores
        """
    ).fetchall()[0]
    assert n == persons == 5000
    assert bad_p == 0 and deciles == 10 and bad_rfm == 0 and nulls == 0
    # Decile 1 holds the most likely persons.
    top, bottom = con.execute(
        "select avg(propensity_30d) filter (where propensity_decile = 1), "
        "avg(propensity_30d) filter (where propensity_decile = 10) from marts.customer_scores"
    ).fetchall()[0]
    assert top > bottom


def test_propensity_validates_well_when_label_depends_on_features(scored):
    _, _, metrics = scored
    p = metrics["propensity"]
    assert p["status"] == "trained"
    assert p["roc_auc"] > 0.75
    assert 0 < p["base_rate"] < 1 and 0 <= p["brier"] < 0.25
    assert p["average_precision"] > p["base_rate"]


def test_model_runs_rows_hold_metrics_json(scored):
    con, _, metrics = scored
    rows = con.execute(
        "select model_name, metrics, features, params, as_of from ml.model_runs order by 1"
    ).fetchall()
    assert [r[0] for r in rows] == [
        "behavioural_clusters",
        "customer_lifetime_value",
        "purchase_propensity",
    ]
    propensity = json.loads(rows[2][1])
    assert propensity["roc_auc"] == metrics["propensity"]["roc_auc"]
    assert "recency_days" in json.loads(rows[2][2])
    # these inputs have no ml.clv_inputs: the lifetime-value model says why it did not train
    clv = json.loads(rows[1][1])
    assert (clv["status"], clv["reason"]) == ("skipped", "ml.clv_inputs is missing")
    assert json.loads(rows[0][1])["k"] == metrics["clusters"]["k"]
    assert all(r[4] == AS_OF for r in rows)


def test_propensity_near_chance_when_label_is_noise():
    con = duckdb.connect()
    make_inputs(con, n_persons=4000, as_of=AS_OF, seed=2, label="noise")
    metrics = score_customers(con, AS_OF, seed=42)
    assert metrics["propensity"]["status"] == "trained"
    assert metrics["propensity"]["roc_auc"] < 0.6
    # Appending: a second run adds rows (one per model: clusters, propensity, lifetime value)
    # rather than replacing.
    score_customers(con, AS_OF, seed=42)
    assert con.execute("select count(*) from ml.model_runs").fetchall()[0][0] == 6


def test_untrainable_propensity_warns_and_writes_null():
    con = duckdb.connect()
    make_inputs(con, n_persons=300, as_of=AS_OF, seed=3)
    con.execute(
        "update ml.propensity_training_examples set purchased_next_30d = false"
    )  # one class only
    metrics = score_customers(con, AS_OF, seed=42)
    assert metrics["propensity"]["status"] == "skipped"
    assert any("not trained" in w for w in metrics["warnings"])
    n, with_p, with_decile = con.execute(
        "select count(*), count(propensity_30d), count(propensity_decile) "
        "from marts.customer_scores"
    ).fetchall()[0]
    assert (n, with_p, with_decile) == (300, 0, 0)
    status = con.execute(
        "select json_extract_string(metrics, '$.status') from ml.model_runs "
        "where model_name = 'purchase_propensity'"
    ).fetchall()
    assert status == [("skipped",)]


def test_feature_null_in_every_row_is_left_out_not_a_crash():
    # a landing zone without web data: visit features are null for everyone, at every cutoff
    con = duckdb.connect()
    make_inputs(con, n_persons=1500, as_of=AS_OF, seed=5)
    for table in ("marts.customer_features", "ml.propensity_training_examples"):
        con.execute(f"update {table} set days_since_last_visit = null")
    metrics = score_customers(con, AS_OF, seed=42)
    assert metrics["propensity"]["status"] == "trained"
    assert metrics["propensity"]["features_left_out"] == ["days_since_last_visit"]
    assert any("days_since_last_visit" in w for w in metrics["warnings"])
    scored = con.execute("select count(propensity_30d) from marts.customer_scores").fetchone()[0]
    assert scored > 0


def test_no_training_cutoff_skips_propensity_with_its_reason():
    # history shorter than the earliest cutoff: the training model holds no row at all
    con = duckdb.connect()
    make_inputs(con, n_persons=300, as_of=AS_OF, seed=6)
    con.execute("delete from ml.propensity_training_examples")
    metrics = score_customers(con, AS_OF, seed=42)
    assert metrics["propensity"]["status"] == "skipped"
    assert "as_of minus 30 days" in metrics["propensity"]["reason"]


def test_missing_training_table_and_tiny_input_fall_back():
    con = duckdb.connect()
    make_inputs(con, n_persons=7, as_of=AS_OF, seed=4, training=False)
    metrics = score_customers(con, AS_OF, seed=42)
    assert metrics["propensity"]["status"] == "skipped"
    assert metrics["clusters"]["status"] == "skipped"
    assert len(metrics["warnings"]) >= 2
    clusters = con.execute(
        "select count(*) from marts.customer_scores where cluster_id is not null"
    ).fetchall()
    assert clusters == [(0,)]


def _features_table(rows: list[tuple]) -> pa.Table:
    names = ("person_id", "recency_days", "frequency_365d", "monetary_365d", "web_events_30d")
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "person_id": pa.array(cols[0], pa.string()),
            **{n: pa.array(c, pa.float64()) for n, c in zip(names[1:], cols[1:], strict=True)},
        }
    )


def test_rfm_cells_match_hand_checked_persons():
    # 15 purchasers with distinct values: ntile(5) puts 3 per score; recency 1..15 gives
    # R 5,5,5,4,4,4,3,3,3,2,2,2,1,1,1; frequency is chosen for the F score; monetary = 10 * F.
    cells = [
        ("a", 13, "champions"),  # R5 F5
        ("b", 1, "new_customers"),  # R5 F1
        ("c", 4, "potential_loyalists"),  # R5 F2
        ("d", 14, "loyal_customers"),  # R4 F5
        ("e", 2, "promising"),  # R4 F1
        ("f", 7, "potential_loyalists"),  # R4 F3
        ("g", 5, "about_to_sleep"),  # R3 F2
        ("h", 8, "need_attention"),  # R3 F3
        ("i", 10, "loyal_customers"),  # R3 F4
        ("j", 11, "at_risk"),  # R2 F4
        ("k", 15, "cannot_lose_them"),  # R2 F5
        ("l", 6, "hibernating"),  # R2 F2
        ("m", 3, "lost"),  # R1 F1
        ("n", 9, "at_risk"),  # R1 F3
        ("o", 12, "at_risk"),  # R1 F4
    ]
    rows = [(pid, r + 1, freq, 10 * freq, 1) for r, (pid, freq, _) in enumerate(cells)]
    rows.append(("z", None, 0, 0, 5))  # never purchased
    con = duckdb.connect()
    con.execute("create schema marts")
    con.register("t", _features_table(rows))
    con.execute(
        "create table marts.customer_features as select person_id, "
        "date '2026-06-30' as as_of, * exclude (person_id) from t"
    )
    metrics = score_customers(con, AS_OF, seed=0)
    got = dict(con.execute("select person_id, rfm_cell from marts.customer_scores").fetchall())
    assert got == {**{pid: cell for pid, _, cell in cells}, "z": "no_purchase"}
    scores = con.execute(
        "select rfm_recency_score, rfm_frequency_score, rfm_monetary_score "
        "from marts.customer_scores where person_id = 'a'"
    ).fetchall()
    assert scores == [(5, 5, 5)]
    assert metrics["rfm"]["cells"]["no_purchase"] == 1


def test_model_runs_of_an_older_warehouse_gain_status_and_reason():
    from ml import registry

    con = duckdb.connect()
    con.execute("create schema ml")
    con.execute(
        "create table ml.model_runs (model_name varchar, version varchar, as_of date, "
        "trained_at timestamp, params varchar, metrics varchar, features varchar)"
    )
    con.execute(
        "insert into ml.model_runs values "
        "('purchase_propensity', 'v1', null, now(), '{}', "
        '\'{"status": "untrainable", "reason": "10 rows"}\', \'[]\'), '
        "('behavioural_clusters', 'v1', null, now(), '{}', '{\"k\": 4}', '[]'), "
        # as the previous release wrote a cluster run it could not train: no reason
        "('behavioural_clusters', 'v0', null, now() - interval 1 day, '{}', "
        '\'{"status": "fallback_single_cluster", "k": 1, "rows": 7}\', \'[]\')'
    )
    registry.ensure_model_runs(con)
    rows = con.execute(
        "select model_name, version, status, reason from ml.model_runs order by all"
    ).fetchall()
    assert rows == [
        (
            "behavioural_clusters",
            "v0",
            "skipped",
            "recorded before reasons were kept (status fallback_single_cluster)",
        ),
        ("behavioural_clusters", "v1", "trained", None),
        ("purchase_propensity", "v1", "skipped", "10 rows"),
    ]
    # the gate that a run not trained says why holds on the migrated rows
    import expectations

    context = {"run_date": AS_OF, "as_of": AS_OF}
    assert expectations.validate(con, "ml.model_runs", context=context).failures("error") == []
    # new rows go in by column name, so the older column order keeps working
    row = registry.run_row("m", "v2", AS_OF, {}, {"status": "fallback", "reason": "r"}, [])
    assert registry.append_model_runs(con, [row]) == 1
    assert registry.append_model_runs(con, [row], skip_known_versions=True) == 0


def test_a_model_run_that_was_not_trained_must_say_why():
    from ml import registry

    with pytest.raises(ValueError, match="needs a reason"):
        registry.run_row("m", "v", AS_OF, {}, {"status": "skipped"}, [])
    with pytest.raises(ValueError, match="not one of"):
        registry.run_row("m", "v", AS_OF, {}, {"status": "untrainable", "reason": "x"}, [])


def test_lifetime_value_check_warns_when_untrained_and_blocks_impossible_values():
    from orchestration.defs.model_checks import lifetime_value_finding

    con = duckdb.connect()
    make_inputs(con, n_persons=300, as_of=AS_OF, seed=9)
    score_customers(con, AS_OF, seed=42)
    # these inputs have no ml.clv_inputs: skipped, which warns and does not block
    finding = lifetime_value_finding(con)
    assert not finding.passed and not finding.blocking
    assert "not trained" in finding.description
    con.execute(
        "update marts.customer_scores set expected_transactions_90d = 2, "
        "expected_transactions_365d = 1, probability_alive = 0.5, expected_spend_365d = 3 "
        "where person_id = (select min(person_id) from marts.customer_scores)"
    )
    finding = lifetime_value_finding(con)
    assert finding.blocking and finding.metadata["impossible_values"] == 1
