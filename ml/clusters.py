"""Behavioural clusters: K-Means on standardised features, k chosen by silhouette."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import davies_bouldin_score, silhouette_score

from ml.features import FeatureTransform

K_RANGE = range(3, 9)
FULL_KMEANS_MAX_ROWS = 20_000
SILHOUETTE_SAMPLE = 10_000


@dataclass
class ClusterModel:
    transform: FeatureTransform | None
    model: KMeans | MiniBatchKMeans | None
    k: int
    relabel: np.ndarray  # model label -> published cluster_id (0 = largest cluster)
    metrics: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.model is None or self.transform is None:
            return np.zeros(x.shape[0], dtype=np.int32)
        labels = self.model.predict(self.transform.transform(x))
        return self.relabel[labels].astype(np.int32)


def _make_kmeans(k: int, n_rows: int, seed: int) -> KMeans | MiniBatchKMeans:
    if n_rows <= FULL_KMEANS_MAX_ROWS:
        return KMeans(n_clusters=k, n_init=4, random_state=seed)
    return MiniBatchKMeans(
        n_clusters=k, n_init=3, batch_size=4096, max_no_improvement=20, random_state=seed
    )


def fit_clusters(x_sample: np.ndarray, features: list[str], seed: int = 42) -> ClusterModel:
    """Fit on a (seeded) sample matrix in original units; choose k in 3..8 by silhouette."""
    n = x_sample.shape[0]
    params = {
        "k_range": [K_RANGE.start, K_RANGE.stop - 1],
        "selection": "max silhouette",
        "seed": seed,
        "fit_rows": int(n),
        "algorithm": "KMeans" if n <= FULL_KMEANS_MAX_ROWS else "MiniBatchKMeans",
        "silhouette_sample": min(n, SILHOUETTE_SAMPLE),
    }
    candidates = [k for k in K_RANGE if n >= 3 * k]
    if not candidates or not features:
        reason = (
            "no numeric features"
            if not features
            else f"only {n} analytics-consented persons (need {3 * K_RANGE.start})"
        )
        msg = f"clusters: {reason}; every person is put in cluster 0"
        return ClusterModel(
            None,
            None,
            1,
            np.zeros(1, dtype=np.int32),
            {"status": "skipped", "reason": reason, "k": 1, "rows": int(n)},
            [msg],
            params,
        )

    transform = FeatureTransform(list(features)).fit(x_sample)
    z = transform.transform(x_sample)
    rng = np.random.default_rng(seed)
    eval_idx = rng.choice(n, size=min(n, SILHOUETTE_SAMPLE), replace=False)
    z_eval = z[eval_idx]

    per_k: dict[str, dict] = {}
    best: tuple[float, int, KMeans | MiniBatchKMeans] | None = None
    for k in candidates:
        model = _make_kmeans(k, n, seed).fit(z)
        labels = model.predict(z_eval)
        if len(np.unique(labels)) < 2:
            per_k[str(k)] = {"silhouette": None, "davies_bouldin": None}
            continue
        sil = float(silhouette_score(z_eval, labels, random_state=seed))
        dbi = float(davies_bouldin_score(z_eval, labels))
        per_k[str(k)] = {
            "silhouette": round(sil, 5),
            "davies_bouldin": round(dbi, 5),
            "inertia": float(model.inertia_),
        }
        if best is None or sil > best[0]:
            best = (sil, k, model)

    warnings: list[str] = []
    if best is None:
        model = _make_kmeans(candidates[0], n, seed).fit(z)
        best = (float("nan"), candidates[0], model)
        warnings.append("clusters: no k separated the data; kept the smallest k")
    sil, k, model = best

    sample_labels = model.predict(z)
    sizes = np.bincount(sample_labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    relabel = np.empty(k, dtype=np.int32)
    relabel[order] = np.arange(k, dtype=np.int32)

    centroids = transform.inverse_profile(model.cluster_centers_[order])
    profiles = []
    for new_id in range(k):
        profiles.append(
            {
                "cluster_id": new_id,
                "share_of_sample": round(float(sizes[order[new_id]] / n), 5),
                "centroid": {
                    f: round(float(v), 4) for f, v in zip(features, centroids[new_id], strict=True)
                },
            }
        )
    metrics = {
        "status": "trained",
        "k": int(k),
        "silhouette": None if np.isnan(sil) else round(float(sil), 5),
        "davies_bouldin": per_k.get(str(k), {}).get("davies_bouldin"),
        "per_k": per_k,
        "rows": int(n),
        "log_features": transform.log_columns,
        "centroids": profiles,
    }
    return ClusterModel(transform, model, int(k), relabel, metrics, warnings, params)
