"""Persona clusters against the generator's ground truth, beside what the features can tell.

    .venv/bin/python -m bench.clusters WAREHOUSE LANDING

WAREHOUSE is a warehouse after `microseg run` over LANDING, a folder written by `microseg
generate` (its `_truth/persons.csv` holds each person's true persona). Maps each person to a true
person as the identity tests do (the most frequent true person among their records) and prints,
among persons the run placed in a cluster (analytics consent, at least
MICROSEG_CLUSTER_MIN_EVENTS store baskets and web events), the adjusted Rand index (ARI) of the
clusters against the personas, and the ceiling: the ARI of a supervised classifier
(histogram gradient boosting, 5-fold cross-validated predictions) trained on the truth with the
same features. The ratio of the two is the issue's target (at least 0.8).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import duckdb
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from bench.truth import TRUTH_CTES, truth_params
from ml._db import feature_select
from ml.clusters import DESCRIBE_FEATURES, FIT_FEATURES

_SQL = f"""
with {TRUTH_CTES}
select s.cluster_id, p.persona, __FEATURES__
from marts.customer_scores as s
join ml.cluster_features as f using (person_id)
join mapped using (person_id)
join persons as p using (true_person_id)
where s.cluster_id is not null
order by s.person_id
"""


def _ceiling(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float]:
    """ARI and accuracy of cross-validated supervised predictions; a persona with fewer placed
    persons than folds is predicted by none (its persons count as misses)."""
    labels, counts = np.unique(y, return_counts=True)
    folds = int(max(2, min(5, counts[counts >= 2].min(initial=5))))
    kept = np.isin(y, labels[counts >= folds])
    predicted = np.full(len(y), "", dtype=object)
    predicted[kept] = cross_val_predict(
        HistGradientBoostingClassifier(random_state=seed),
        x[kept],
        y[kept],
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
    )
    predicted = predicted.astype(str)
    return adjusted_rand_score(y, predicted), float(np.mean(predicted == y))


def evaluate(con: duckdb.DuckDBPyConnection, landing: Path, seed: int = 42) -> dict:
    features = list(DESCRIBE_FEATURES)
    rows = con.execute(
        _SQL.replace("__FEATURES__", feature_select(features, "f")), truth_params(landing)
    ).fetchnumpy()
    clusters = np.asarray(rows["cluster_id"])
    personas = np.asarray(rows["persona"]).astype(str)
    x = np.column_stack([np.asarray(rows[f], dtype=np.float64) for f in features])
    fit = [features.index(f) for f in FIT_FEATURES]
    ari = adjusted_rand_score(personas, clusters)
    ceiling, accuracy = _ceiling(x[:, fit], personas, seed)
    ceiling_all, _ = _ceiling(x, personas, seed)
    return {
        "placed_persons_with_truth": int(len(clusters)),
        "clusters": int(len(np.unique(clusters))),
        "ari": round(ari, 4),
        "nmi": round(normalized_mutual_info_score(personas, clusters), 4),
        "ceiling_ari_fit_features": round(ceiling, 4),
        "ceiling_accuracy": round(accuracy, 4),
        "ceiling_ari_all_cluster_features": round(ceiling_all, 4),
        "ratio": round(ari / ceiling, 3) if ceiling > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("landing", type=Path)
    args = parser.parse_args()
    with duckdb.connect(str(args.warehouse), read_only=True) as con:
        print(json.dumps(evaluate(con, args.landing), indent=2))


if __name__ == "__main__":
    main()
