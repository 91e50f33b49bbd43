"""Purchase propensity (next 30 days): gradient boosting with a time-based validation."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ml._db import feature_select, numeric_features, read_matrix, table_columns

TRAINING_SCHEMA, TRAINING_TABLE = "ml", "propensity_training_examples"
MAX_TRAINING_ROWS = 500_000
MIN_ROWS, MIN_POSITIVES = 200, 20
_HASH_BUCKETS = 1_000_003


@dataclass
class PropensityModel:
    model: HistGradientBoostingClassifier | None
    features: list[str]
    metrics: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray | None:
        if self.model is None:
            return None
        return self.model.predict_proba(x)[:, 1].astype(np.float64)


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


def _untrainable(features: list[str], reason: str, params: dict, **extra) -> PropensityModel:
    metrics = {"status": "skipped", "reason": reason, **extra}
    warning = f"propensity: not trained ({reason}); propensity_30d is NULL"
    return PropensityModel(None, features, metrics, [warning], params)


def fit_propensity(
    con: duckdb.DuckDBPyConnection,
    score_features: list[str],
    seed: int = 42,
    max_rows: int = MAX_TRAINING_ROWS,
    where: str = "true",
) -> PropensityModel:
    """Validate on the latest cutoff after training on the earlier ones, then refit on all."""
    params = {"estimator": "HistGradientBoostingClassifier", "seed": seed, "max_rows": max_rows}
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
    n, positives, n_cutoffs, latest = con.execute(
        "select count(*), count(*) filter (where purchased_next_30d), "
        f"count(distinct cutoff_date), max(cutoff_date) from {table} "
        f"where purchased_next_30d is not null and {where}"
    ).fetchall()[0]
    if n_cutoffs == 0:
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
        "cast(purchased_next_30d as integer) as label, "
        "cast(cutoff_date = $latest as integer) as is_latest "
        f"from {table} where purchased_next_30d is not null and {where} "
        "and hash(person_id, cutoff_date, $seed) % $buckets < $keep "
        # a fixed row order makes the fitted model, hence every score, reproducible
        "order by person_id, cutoff_date"
    )
    x, extra = read_matrix(
        con,
        query,
        {
            "latest": latest,
            "seed": seed,
            "buckets": _HASH_BUCKETS,
            "keep": int(np.ceil(fraction * _HASH_BUCKETS)),
        },
        features,
        extra=("label", "is_latest"),
    )
    y = extra["label"].astype(np.int8)
    is_latest = extra["is_latest"].astype(bool)
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

    if n_cutoffs >= 2:
        validation = "time: train on earlier cutoffs, validate on the latest"
        train_mask = ~is_latest
    else:
        validation = "random 20% (only one cutoff)"
        train_mask = np.random.default_rng(seed).random(len(y)) >= 0.2
    val_mask = ~train_mask

    metrics: dict = {
        "status": "trained",
        "validation": validation,
        "validation_cutoff": str(latest),
        "rows": int(n),
        "positives": int(positives),
        "training_rows_used": int(len(y)),
        "subsampled": fraction < 1.0,
        "n_cutoffs": int(n_cutoffs),
        "features_left_out": [f for f in score_features if f not in features],
    }
    y_tr, y_val = y[train_mask], y[val_mask]
    # a feature can be null in every earlier cutoff's row (a source that started later)
    seen = ~np.all(np.isnan(x[train_mask]), axis=0)
    if len(np.unique(y_tr)) < 2 or len(np.unique(y_val)) < 2 or not seen.any():
        warnings.append(
            "propensity: validation split has a single class or no data; no validation metrics"
        )
        metrics.update({"roc_auc": None, "average_precision": None, "brier": None})
    else:
        holdout_model = _classifier(seed).fit(x[train_mask][:, seen], y_tr)
        p_val = holdout_model.predict_proba(x[val_mask][:, seen])[:, 1]
        base_rate = float(y_val.mean())
        top = p_val >= np.quantile(p_val, 0.9)
        metrics.update(
            {
                "roc_auc": round(float(roc_auc_score(y_val, p_val)), 5),
                "average_precision": round(float(average_precision_score(y_val, p_val)), 5),
                "brier": round(float(brier_score_loss(y_val, p_val)), 5),
                "base_rate": round(base_rate, 5),
                "top_decile_lift": round(float(y_val[top].mean() / base_rate), 4),
                "train_rows": int(train_mask.sum()),
                "validation_rows": int(val_mask.sum()),
                "validation_iterations": int(holdout_model.n_iter_),
            }
        )
    final = _classifier(seed).fit(x, y)
    metrics["iterations"] = int(final.n_iter_)
    metrics["training_base_rate"] = round(float(y.mean()), 5)
    return PropensityModel(final, features, metrics, warnings, params)
