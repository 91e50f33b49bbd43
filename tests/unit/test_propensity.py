"""Purchase propensity on planted training examples (calibration, back-test isolation, metrics,
short histories) and the back-test AUC check on a real ml.model_runs table."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from ml import registry
from ml.propensity import fit_propensity
from orchestration.defs.ml.assets import SCORES_KEY
from orchestration.defs.model_checks import propensity_auc_finding, score_model_checks

CUTOFFS = (date(2026, 4, 1), date(2026, 5, 1), date(2026, 5, 31))  # oldest first
FEATURES = ["signal", "weak_signal", "noise", "never_known"]


def _examples(
    n_persons: int,
    shifts: tuple[float, ...],
    seed: int,
    cutoffs: tuple[date, ...] = CUTOFFS,
    latest_label_from_noise: bool = False,
) -> duckdb.DuckDBPyConnection:
    """ml.propensity_training_examples: per person and cutoff a label drawn from
    logistic(1.5 * signal + 0.7 * weak_signal + shift of the cutoff); `noise` carries nothing,
    `never_known` is null everywhere (a source that is absent)."""
    rng = np.random.default_rng(seed)
    n = n_persons * len(cutoffs)
    person = np.tile(np.char.add("p", np.arange(n_persons).astype(str)), len(cutoffs))
    cutoff = np.repeat(np.array(cutoffs, dtype="datetime64[D]"), n_persons)
    signal, weak, noise = rng.normal(size=(3, n))
    logit = 1.5 * signal + 0.7 * weak + np.repeat(np.asarray(shifts), n_persons)
    label = rng.random(n) < 1 / (1 + np.exp(-logit))
    if latest_label_from_noise:
        latest = cutoff == np.datetime64(max(cutoffs))
        label = np.where(latest, noise > 0, label)
    con = duckdb.connect()
    con.execute("create schema ml")
    data = pa.table(
        {
            "person_id": person,
            "cutoff_date": pa.array(cutoff),
            "signal": signal,
            "weak_signal": weak,
            "noise": noise,
            "never_known": pa.nulls(n, pa.float64()),
            "purchased_next_30d": label,
        }
    )
    con.register("planted", data)
    con.execute("create table ml.propensity_training_examples as select * from planted")
    con.unregister("planted")
    return con


def test_calibration_fixes_a_base_rate_that_moved():
    # the oldest cutoff bought far more often than the two later ones: base models trained on
    # it over-predict at the back-test cutoff, and the calibrator (fitted on the cutoff before)
    # brings the probabilities back to the observed rate
    con = _examples(3000, shifts=(2.0, -1.0, -1.0), seed=1)
    model = fit_propensity(con, FEATURES, seed=42)
    m = model.metrics
    assert m["status"] == "trained"
    assert m["backtest"]["calibration_method"] in ("sigmoid", "isotonic")
    assert m["brier"] < m["brier_uncalibrated"] - 0.01
    assert abs(m["mean_predicted"] - m["base_rate"]) < 0.03
    # the production model is calibrated at the latest cutoff the same way
    x = con.execute(
        "select signal, weak_signal, noise from ml.propensity_training_examples "
        "where cutoff_date = ?",
        [CUTOFFS[-1]],
    ).fetchnumpy()
    y = con.execute(
        "select purchased_next_30d from ml.propensity_training_examples where cutoff_date = ?",
        [CUTOFFS[-1]],
    ).fetchnumpy()["purchased_next_30d"]
    p = model.predict(np.column_stack([x["signal"], x["weak_signal"], x["noise"]]))
    assert abs(p.mean() - y.mean()) < 0.03


def test_backtest_cutoff_is_unseen_by_base_models_and_calibrator():
    # the latest cutoff's labels follow `noise` alone: had the back-test trained or calibrated
    # on that cutoff, it would rank them well
    con = _examples(3000, shifts=(0.0, 0.0, 0.0), seed=2, latest_label_from_noise=True)
    m = fit_propensity(con, FEATURES, seed=42).metrics
    assert m["validation_cutoff"] == str(CUTOFFS[-1])
    assert str(CUTOFFS[-1]) in m["slices"]["backtest_test"]
    assert str(CUTOFFS[1]) in m["slices"]["backtest_calibrator"]
    assert m["backtest"]["test_rows"] == 3000
    assert m["backtest"]["calibration_rows"] == 3000  # the middle cutoff, every fold
    assert m["backtest"]["fit_rows"] == 6000
    assert 0.4 < m["roc_auc"] < 0.6
    assert m["permutation_importance"][0]["feature"] != "noise"


def test_metrics_hold_ranking_calibration_and_importance():
    con = _examples(2000, shifts=(-0.5, -0.5, -0.5), seed=3)
    model = fit_propensity(con, FEATURES, seed=42)
    m = model.metrics
    assert m["roc_auc"] > 0.75 and m["average_precision"] > m["base_rate"] > 0
    assert 0 < m["brier"] < 0.25
    table = m["calibration"]
    assert [row["decile"] for row in table] == list(range(1, 11))
    assert sum(row["n"] for row in table) == m["backtest"]["test_rows"]
    predicted = [row["mean_predicted"] for row in table]
    assert predicted == sorted(predicted)
    assert table[-1]["observed_rate"] > table[0]["observed_rate"] + 0.5
    ranked = [row["feature"] for row in m["permutation_importance"]]
    assert ranked[0] == "signal" and "weak_signal" in ranked[:2]
    assert m["metrics_slice"] == "backtest_test"
    assert m["features_left_out"] == ["never_known"]
    assert model.features == ["signal", "weak_signal", "noise"]
    json.dumps(m)  # stored as JSON in ml.model_runs


def test_one_cutoff_and_null_features_back_test_on_held_out_persons():
    # a short history: a single training cutoff, a feature known only for some persons
    con = _examples(1200, shifts=(-0.5,), seed=4, cutoffs=(CUTOFFS[-1],))
    con.execute(
        "update ml.propensity_training_examples set weak_signal = null "
        "where hash(person_id) % 2 = 0"
    )
    model = fit_propensity(con, FEATURES, seed=42)
    m = model.metrics
    assert m["status"] == "trained" and m["n_cutoffs"] == 1
    assert "held out" in m["slices"]["backtest_test"]
    assert 150 < m["backtest"]["test_rows"] < 450  # about a quarter of the persons
    assert m["backtest"]["fit_rows"] + m["backtest"]["test_rows"] == 1200
    assert m["roc_auc"] > 0.7
    x = np.array([[0.0, np.nan, 0.0], [2.0, 1.0, -1.0], [np.nan, np.nan, np.nan]])
    p = model.predict(x)
    assert np.all((p >= 0) & (p <= 1)) and p[1] > p[0]


def test_too_few_rows_skip_with_reason():
    con = _examples(60, shifts=(0.0, 0.0, 0.0), seed=5)
    model = fit_propensity(con, FEATURES, seed=42)
    assert model.model is None and model.predict(np.zeros((2, 3))) is None
    assert model.metrics["status"] == "skipped"
    assert "180 rows" in model.metrics["reason"]


# -- the back-test AUC check --------------------------------------------------------------------


def _runs(*runs: tuple[str, str, float | None, str | None]) -> duckdb.DuckDBPyConnection:
    """ml.model_runs with purchase_propensity rows (version, status, roc_auc, reason), oldest
    first."""
    con = duckdb.connect()
    registry.ensure_model_runs(con)
    start = datetime(2026, 6, 1, 3, 0)
    for i, (version, status, auc, reason) in enumerate(runs):
        metrics = {"status": status}
        if status == "trained":
            metrics.update({"roc_auc": auc, "backtest": {"test_rows": 3000, "test_positives": 800}})
        else:
            metrics["reason"] = reason
        con.execute(
            "insert into ml.model_runs (model_name, version, as_of, trained_at, params, "
            "metrics, features, status, reason) "
            "values ('purchase_propensity', ?, ?, ?, '{}', ?, '[]', ?, ?)",
            [version, date(2026, 6, 1), start + timedelta(days=i), json.dumps(metrics), status,
             reason],
        )  # fmt: skip
    # another model's row never counts
    con.execute(
        "insert into ml.model_runs (model_name, version, trained_at, metrics, status) values "
        "('behavioural_clusters', 'c1', ?, '{\"roc_auc\": 0.1}', 'trained')",
        [start + timedelta(days=30)],
    )
    return con


def test_check_fails_below_the_floor():
    finding = propensity_auc_finding(_runs(("v1", "trained", 0.55, None)), min_auc=0.6)
    assert not finding.passed and finding.blocking
    assert "0.550 is below MICROSEG_PROPENSITY_MIN_AUC 0.600" in finding.description
    assert finding.metadata["backtest_roc_auc"] == 0.55


def test_check_warns_on_a_drop_from_the_previous_version():
    con = _runs(("v1", "trained", 0.82, None), ("v2", "trained", 0.74, None))
    finding = propensity_auc_finding(con, min_auc=0.6)
    assert not finding.passed and not finding.blocking
    assert "more than 0.05 below the previous version v1 (0.820)" in finding.description
    # within 0.05 of the previous one: passes
    con = _runs(("v1", "trained", 0.82, None), ("v2", "trained", 0.78, None))
    finding = propensity_auc_finding(con, min_auc=0.6)
    assert finding.passed and finding.metadata["previous_roc_auc"] == 0.82


def test_check_warns_when_the_model_was_not_trained():
    con = _runs(("v1", "trained", 0.8, None), ("v2", "skipped", None, "150 rows, 3 positives"))
    finding = propensity_auc_finding(con, min_auc=0.6)
    assert not finding.passed and not finding.blocking
    assert "not trained (skipped): 150 rows, 3 positives" in finding.description
    assert not propensity_auc_finding(_runs(), min_auc=0.6).blocking
    assert not propensity_auc_finding(duckdb.connect(), min_auc=0.6).blocking


def test_check_does_not_block_on_a_back_test_with_few_buyers():
    con = _runs(("v1", "trained", 0.5, None))
    con.execute(
        "update ml.model_runs set metrics = json_object('status', 'trained', 'roc_auc', 0.5, "
        "'backtest', json_object('test_rows', 90, 'test_positives', 6)) where version = 'v1'"
    )
    finding = propensity_auc_finding(con, min_auc=0.6)
    assert not finding.passed and not finding.blocking
    assert "only 6 of 90 rows bought" in finding.description


def test_check_is_blocking_on_the_scores_asset():
    spec = next(s for s in score_model_checks.check_specs if s.name == "propensity_backtest_auc")
    assert spec.asset_key == SCORES_KEY and spec.blocking


@pytest.mark.parametrize("auc, passed", [(0.61, True), (0.59, False)])
def test_check_uses_the_floor_it_is_given(auc, passed):
    assert propensity_auc_finding(_runs(("v1", "trained", auc, None)), 0.6).passed is passed


def test_check_blocks_a_small_back_test_only_when_its_whole_interval_is_below_the_floor():
    con = _runs(("v1", "trained", 0.55, None))
    con.execute(
        "update ml.model_runs set metrics = json_object('status', 'trained', 'roc_auc', 0.55, "
        "'backtest', json_object('test_rows', 200, 'test_positives', 60)) where version = 'v1'"
    )
    finding = propensity_auc_finding(con, min_auc=0.6)
    assert not finding.passed and not finding.blocking
    assert "within its measurement error" in finding.description
    assert finding.metadata["backtest_roc_auc_upper_95"] > 0.6
    # the same AUC far below the floor on the same rows blocks
    con.execute(
        "update ml.model_runs set metrics = json_object('status', 'trained', 'roc_auc', 0.45, "
        "'backtest', json_object('test_rows', 200, 'test_positives', 60)) where version = 'v1'"
    )
    assert propensity_auc_finding(con, min_auc=0.6).blocking


def test_check_does_not_block_a_back_test_of_a_short_history():
    con = _runs(("v1", "trained", 0.45, None))
    con.execute(
        "update ml.model_runs set metrics = json_object('status', 'trained', 'roc_auc', 0.45, "
        "'validation_cutoff', '2026-05-31', 'n_cutoffs', 2, "
        "'backtest', json_object('test_rows', 3000, 'test_positives', 800)) where version = 'v1'"
    )
    con.execute("create schema intermediate")
    # events from 2026-04-16: the back-test's models trained on the 2026-05-01 cutoff, 15 days in
    con.execute(
        "create table intermediate.int_customer_days_aggregated as "
        "select date '2026-04-16' as activity_date"
    )
    finding = propensity_auc_finding(con, min_auc=0.6)
    assert not finding.passed and not finding.blocking
    assert "saw 15 days of history" in finding.description
    # a year of history: the same AUC blocks
    con.execute("update intermediate.int_customer_days_aggregated set activity_date = '2025-05-01'")
    assert propensity_auc_finding(con, min_auc=0.6).blocking
