"""Purchase propensity (next 30 days): gradient boosting cross-fitted over person folds, a
calibrator fitted on out-of-fold predictions at a later cutoff, and a back-test on a cutoff that
neither saw.

Training rows are ml.propensity_training_examples: the features replayed at earlier cutoffs,
labelled with a purchase in the 30 days after each. With cutoffs c0 (latest) > c1 > ...:

- production: base models on every cutoff (one per person fold, each trained without its fold),
  calibrator on their out-of-fold predictions at c0; a score is the calibrated mean of the fold
  models' probabilities.
- back-test: the same procedure one cutoff earlier (base models on the cutoffs before c0,
  calibrator on c1), measured on c0, whose labels neither saw. With a single cutoff, a quarter
  of the persons is held out instead (no later cutoff exists to test on).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ml._db import feature_select, numeric_features, read_matrix, table_columns

TRAINING_SCHEMA, TRAINING_TABLE = "ml", "propensity_training_examples"
MAX_TRAINING_ROWS = 500_000
MIN_ROWS, MIN_POSITIVES = 200, 20
FOLDS = 3
# One persons' hash gives the fold (value % FOLDS) and, with one cutoff, the held-out quarter.
_PERSON_BUCKETS = FOLDS * 4
IMPORTANCE_ROWS, IMPORTANCE_REPEATS, IMPORTANCE_TOP = 20_000, 3, 10
_HASH_BUCKETS = 1_000_003
_EPS = 1e-6


def _classifier(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.08,
        max_leaf_nodes=31,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=15,
        random_state=seed,
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


class _Calibrator:
    """Maps a raw probability to a calibrated one: `sigmoid` (Platt: logistic regression on the
    log-odds), `isotonic` or `none` (identity, when there is too little to fit one)."""

    def __init__(self, method: str):
        self.method = method
        self._model: LogisticRegression | IsotonicRegression | None = None

    def fit(self, p: np.ndarray, y: np.ndarray) -> _Calibrator:
        if self.method == "sigmoid":
            self._model = LogisticRegression(C=1e6).fit(_logit(p)[:, None], y)
        elif self.method == "isotonic":
            self._model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            self._model.fit(p, y)
        return self

    def predict(self, p: np.ndarray) -> np.ndarray:
        if isinstance(self._model, LogisticRegression):
            return self._model.predict_proba(_logit(p)[:, None])[:, 1]
        if isinstance(self._model, IsotonicRegression):
            return self._model.predict(p)
        return p


@dataclass
class _Ensemble:
    """Fold models (each with the columns it could learn from) and one calibrator."""

    models: list[tuple[HistGradientBoostingClassifier, np.ndarray]]
    calibrator: _Calibrator

    def raw(self, x: np.ndarray) -> np.ndarray:
        return np.mean([m.predict_proba(x[:, cols])[:, 1] for m, cols in self.models], axis=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.calibrator.predict(self.raw(x)).astype(np.float64)

    def fit(self, x, y):  # permutation_importance asks for an estimator; this one is fitted
        return self

    @property
    def iterations(self) -> list[int]:
        return [int(m.n_iter_) for m, _ in self.models]


@dataclass
class PropensityModel:
    model: _Ensemble | HistGradientBoostingClassifier | None
    features: list[str]
    metrics: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray | None:
        """Calibrated probability of a purchase in the next 30 days, per row of x."""
        if self.model is None:
            return None
        if isinstance(self.model, HistGradientBoostingClassifier):
            # a version saved before calibration: one uncalibrated classifier
            return self.model.predict_proba(x)[:, 1].astype(np.float64)
        return self.model.predict(x)


def _untrainable(features: list[str], reason: str, params: dict, **extra) -> PropensityModel:
    metrics = {"status": "skipped", "reason": reason, **extra}
    warning = f"propensity: not trained ({reason}); propensity_30d is NULL"
    return PropensityModel(None, features, metrics, [warning], params)


def _both_classes(y: np.ndarray, minimum: int = 1) -> bool:
    positives = int(y.sum())
    return positives >= minimum and len(y) - positives >= minimum


def _choose_calibrator(p: np.ndarray, y: np.ndarray, fold: np.ndarray) -> str:
    """sigmoid or isotonic, whichever has the lower Brier score across the person folds of the
    calibration rows (each fold scored by a calibrator fitted on the others)."""
    scores = {}
    for method in ("sigmoid", "isotonic"):
        losses = []
        for k in range(FOLDS):
            fit, test = fold != k, fold == k
            if not test.any() or not _both_classes(y[fit]):
                continue
            calibrated = _Calibrator(method).fit(p[fit], y[fit]).predict(p[test])
            losses.append(brier_score_loss(y[test], calibrated) * test.sum())
        scores[method] = sum(losses)
    return min(scores, key=lambda m: (scores[m], m != "sigmoid"))


def _fit_ensemble(
    x: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    fit_rows: np.ndarray,
    calibration_rows: np.ndarray,
    seed: int,
) -> tuple[_Ensemble | None, dict]:
    """Fold models on fit_rows (model k without fold k), a calibrator on the out-of-fold
    predictions of calibration_rows. None when a fold's training rows hold a single class."""
    models = []
    oof = np.full(len(y), np.nan)
    for k in range(FOLDS):
        train = fit_rows & (fold != k)
        cols = ~np.all(np.isnan(x[train]), axis=0)
        if not _both_classes(y[train]) or not cols.any():
            return None, {}
        model = _classifier(seed + k).fit(x[train][:, cols], y[train])
        models.append((model, cols))
        held = calibration_rows & (fold == k)
        if held.any():
            oof[held] = model.predict_proba(x[held][:, cols])[:, 1]
    cal = calibration_rows & ~np.isnan(oof)
    info = {"calibration_rows": int(cal.sum())}
    if _both_classes(y[cal], MIN_POSITIVES):
        method = _choose_calibrator(oof[cal], y[cal], fold[cal])
    else:
        method = "none"
        info["calibration_skipped"] = (
            f"{int(y[cal].sum())} positives of {int(cal.sum())} calibration rows "
            f"(need {MIN_POSITIVES} of each class)"
        )
    calibrator = _Calibrator(method).fit(oof[cal], y[cal])
    info["calibration_method"] = method
    if method != "none":
        info["calibration_brier_before"] = round(float(brier_score_loss(y[cal], oof[cal])), 5)
        info["calibration_brier_after"] = round(
            float(brier_score_loss(y[cal], calibrator.predict(oof[cal]))), 5
        )
    return _Ensemble(models, calibrator), info


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Per decile of predicted probability (lowest first): mean predicted, observed rate, rows."""
    order = np.argsort(p, kind="stable")
    table = []
    for i, part in enumerate(np.array_split(order, bins)):
        if len(part):
            table.append(
                {
                    "decile": i + 1,
                    "mean_predicted": round(float(p[part].mean()), 5),
                    "observed_rate": round(float(y[part].mean()), 5),
                    "n": int(len(part)),
                }
            )
    return table


def _importance(
    ensemble: _Ensemble, x: np.ndarray, y: np.ndarray, features: list[str], seed: int
) -> list[dict]:
    """Permutation importance (drop in ROC-AUC when a feature is shuffled), top features."""
    if len(y) > IMPORTANCE_ROWS:
        keep = np.random.default_rng(seed).choice(len(y), IMPORTANCE_ROWS, replace=False)
        keep.sort()
        x, y = x[keep], y[keep]
    result = permutation_importance(
        ensemble,
        x,
        y,
        scoring=lambda est, xs, ys: roc_auc_score(ys, est.predict(xs)),
        n_repeats=IMPORTANCE_REPEATS,
        random_state=seed,
    )
    ranked = np.argsort(-result.importances_mean, kind="stable")[:IMPORTANCE_TOP]
    return [
        {
            "feature": features[i],
            "auc_drop": round(float(result.importances_mean[i]), 5),
            "std": round(float(result.importances_std[i]), 5),
        }
        for i in ranked
    ]


def _slices(
    cutoff: np.ndarray, bucket: np.ndarray, cutoffs: list
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
    """Row masks (fit, calibration, test) of the back-test and (fit, calibration) of the
    production model, and what each slice is, in words."""
    if len(cutoffs) >= 2:
        c0, c1 = cutoffs[0], cutoffs[1]
        earlier = cutoff < np.datetime64(c0)
        backtest = {
            "fit": earlier,
            "calibration": cutoff == np.datetime64(c1),
            "test": cutoff == np.datetime64(c0),
        }
        production = {"fit": np.ones(len(cutoff), bool), "calibration": ~earlier}
        words = {
            "backtest_test": f"cutoff {c0} (the latest): unseen by base models and calibrator",
            "backtest_base_models": f"cutoffs {cutoffs[-1]} to {c1}",
            "backtest_calibrator": f"cutoff {c1}, out-of-fold predictions",
            "production_base_models": f"cutoffs {cutoffs[-1]} to {c0}",
            "production_calibrator": f"cutoff {c0}, out-of-fold predictions",
        }
    else:
        held = bucket // FOLDS == 0
        backtest = {"fit": ~held, "calibration": ~held, "test": held}
        production = {"fit": np.ones(len(cutoff), bool), "calibration": np.ones(len(cutoff), bool)}
        words = {
            "backtest_test": (
                f"a quarter of the persons at cutoff {cutoffs[0]}, held out (the only cutoff: "
                "no later one to test on)"
            ),
            "backtest_base_models": "the other persons",
            "backtest_calibrator": "the other persons, out-of-fold predictions",
            "production_base_models": f"every person at cutoff {cutoffs[0]}",
            "production_calibrator": "every person, out-of-fold predictions",
        }
    return backtest, production, words


def fit_propensity(
    con: duckdb.DuckDBPyConnection,
    score_features: list[str],
    seed: int = 42,
    max_rows: int = MAX_TRAINING_ROWS,
    where: str = "true",
) -> PropensityModel:
    """Back-test the procedure one cutoff earlier, then fit the production model on every cutoff
    (see the module docstring). Metrics are the back-test's."""
    params = {
        "estimator": "HistGradientBoostingClassifier",
        "seed": seed,
        "max_rows": max_rows,
        "person_folds": FOLDS,
        "calibration": "sigmoid or isotonic, the lower cross-validated Brier score",
    }
    params.update({k: v for k, v in _classifier(seed).get_params().items() if k != "loss"})
    columns = table_columns(con, TRAINING_SCHEMA, TRAINING_TABLE)
    if not columns:
        return _untrainable(score_features, "ml.propensity_training_examples is missing", params)
    training = set(numeric_features(columns))
    features = [f for f in score_features if f in training]
    warnings = []
    missing = [f for f in score_features if f not in training]
    if missing:
        warnings.append(f"propensity: features missing from training examples: {missing}")
    if not features or "purchased_next_30d" not in columns or "cutoff_date" not in columns:
        return _untrainable(features, "training examples lack features, label or cutoff", params)

    table = f"{TRAINING_SCHEMA}.{TRAINING_TABLE}"
    n, positives = con.execute(
        "select count(*), count(*) filter (where purchased_next_30d) "
        f"from {table} where purchased_next_30d is not null and {where}"
    ).fetchall()[0]
    cutoffs = [
        row[0]
        for row in con.execute(
            f"select distinct cutoff_date from {table} "
            f"where purchased_next_30d is not null and {where} order by 1 desc"
        ).fetchall()
    ]
    if not cutoffs:
        # the training model keeps only cutoffs on or after the first day of event data
        examples = con.execute(f"select count(*) from {table}").fetchall()[0][0]
        reason = (
            f"no analytics-consented person among {examples} training rows"
            if examples
            else "no event history on or before as_of minus 30 days (the latest training cutoff)"
        )
        model = _untrainable(features, reason, params, rows=0, positives=0)
        model.warnings = warnings + model.warnings
        return model
    if n < MIN_ROWS or positives < MIN_POSITIVES or n - positives < MIN_POSITIVES:
        model = _untrainable(
            features,
            f"{n} rows, {positives} positives (need {MIN_ROWS} rows and {MIN_POSITIVES} "
            "of each class)",
            params,
            rows=int(n),
            positives=int(positives),
        )
        model.warnings = warnings + model.warnings
        return model

    fraction = min(1.0, max_rows / n)
    query = (
        f"select {feature_select(features)}, "
        "cast(purchased_next_30d as integer) as label, cutoff_date, "
        "cast(hash(person_id, $seed) % $person_buckets as integer) as bucket "
        f"from {table} where purchased_next_30d is not null and {where} "
        "and hash(person_id, cutoff_date, $seed) % $buckets < $keep "
        # a fixed row order makes the fitted model, hence every score, reproducible
        "order by person_id, cutoff_date"
    )
    x, extra = read_matrix(
        con,
        query,
        {
            "seed": seed,
            "person_buckets": _PERSON_BUCKETS,
            "buckets": _HASH_BUCKETS,
            "keep": int(np.ceil(fraction * _HASH_BUCKETS)),
        },
        features,
        extra=("label", "cutoff_date", "bucket"),
    )
    y = extra["label"].astype(np.int8)
    cutoff = extra["cutoff_date"].astype("datetime64[D]")
    bucket = extra["bucket"].astype(np.int64)
    fold = bucket % FOLDS
    # A feature whose source is absent (no web data, say) is null in every row: nothing to learn
    # from, and the binning cannot take it. It is left out, and so it is when scoring.
    empty = np.all(np.isnan(x), axis=0)
    if empty.any():
        dropped = [f for f, e in zip(features, empty, strict=True) if e]
        warnings.append(f"propensity: features null in every training row, left out: {dropped}")
        features = [f for f, e in zip(features, empty, strict=True) if not e]
        x = x[:, ~empty]
        if not features:
            model = _untrainable(features, "every feature is null in the training rows", params)
            model.warnings = warnings + model.warnings
            return model

    backtest, production, words = _slices(cutoff, bucket, cutoffs)
    metrics: dict = {
        "status": "trained",
        "validation": "back-test: " + words["backtest_test"],
        "validation_cutoff": str(cutoffs[0]),
        "rows": int(n),
        "positives": int(positives),
        "training_rows_used": int(len(y)),
        "subsampled": fraction < 1.0,
        "n_cutoffs": len(cutoffs),
        "features_left_out": [f for f in score_features if f not in features],
        "training_base_rate": round(float(y.mean()), 5),
        "slices": words,
        "metrics_slice": "backtest_test",
    }
    checked, checked_info = _fit_ensemble(
        x, y, fold, backtest["fit"], backtest["calibration"], seed
    )
    test = backtest["test"]
    y_test = y[test]
    if checked is None or not _both_classes(y_test):
        warnings.append(
            "propensity: the back-test slices hold a single class or no data; no back-test metrics"
        )
        metrics.update({"roc_auc": None, "average_precision": None, "brier": None})
    else:
        p_raw = checked.raw(x[test])
        p_test = checked.calibrator.predict(p_raw)
        base_rate = float(y_test.mean())
        top = p_test >= np.quantile(p_test, 0.9)
        metrics.update(
            {
                "roc_auc": round(float(roc_auc_score(y_test, p_test)), 5),
                "average_precision": round(float(average_precision_score(y_test, p_test)), 5),
                "brier": round(float(brier_score_loss(y_test, p_test)), 5),
                "brier_uncalibrated": round(float(brier_score_loss(y_test, p_raw)), 5),
                "base_rate": round(base_rate, 5),
                "mean_predicted": round(float(p_test.mean()), 5),
                "top_decile_lift": round(float(y_test[top].mean() / base_rate), 4),
                "calibration": calibration_table(y_test, p_test),
                "permutation_importance": _importance(checked, x[test], y_test, features, seed),
                "backtest": {
                    "fit_rows": int(backtest["fit"].sum()),
                    "test_rows": int(test.sum()),
                    "test_positives": int(y_test.sum()),
                    "iterations": checked.iterations,
                    **checked_info,
                },
            }
        )
    final, final_info = _fit_ensemble(
        x, y, fold, production["fit"], production["calibration"], seed
    )
    if final is None:
        model = _untrainable(
            features, "a person fold of the training rows holds a single class", params
        )
        model.warnings = warnings + model.warnings
        return model
    metrics["production"] = {
        "fit_rows": int(production["fit"].sum()),
        "iterations": final.iterations,
        **final_info,
    }
    return PropensityModel(final, features, metrics, warnings, params)
