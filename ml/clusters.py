"""Persona clusters: behaviour features (ml.cluster_features), a model chosen over family and k,
personas described in words, and cluster ids kept stable from one run to the next."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.metrics import davies_bouldin_score, silhouette_score
from sklearn.mixture import GaussianMixture

from ml.features import FeatureTransform

# The axes clusters are fitted on: how often a person buys and browses, where and how much they
# buy, whether that is changing, and for how long they have been seen. Each is one behaviour;
# many correlated columns (eight category shares, four device shares) would outweigh them in a
# distance, so those only describe the clusters (DESCRIBE_FEATURES).
FIT_FEATURES = (
    "purchase_days_per_30d",
    "sessions_per_30d",
    "store_order_share",
    "lines_per_basket",
    "revenue_per_order",
    "recent_purchase_ratio",
    "exposure_days",
)
DESCRIBE_FEATURES = FIT_FEATURES + (
    "product_views_per_session",
    "cart_adds_per_session",
    "mobile_event_share",
    "desktop_event_share",
    "tablet_event_share",
    "app_event_share",
)
K_RANGE = range(3, 9)
FAMILIES = ("kmeans", "gaussian_mixture")
FIT_SAMPLE_ROWS = 20_000
SILHOUETTE_SAMPLE = 5_000
# A feature describes a cluster when its cluster mean is this many population standard
# deviations from the population mean (Cohen's "medium" effect).
DESCRIBE_MIN_EFFECT = 0.5

# Words for a cluster mean well above / below the population (None: not worth saying).
PHRASES: dict[str, tuple[str | None, str | None]] = {
    "purchase_days_per_30d": ("buys often", "rarely buys"),
    "sessions_per_30d": ("browses online often", "rarely online"),
    "store_order_share": ("mostly in store", "mostly online"),
    "lines_per_basket": ("large baskets", "small baskets"),
    "revenue_per_order": ("big-ticket orders", "low-value orders"),
    "recent_purchase_ratio": ("buying more lately", "lapsing"),
    "exposure_days": ("long-standing", "new"),
    "product_views_per_session": ("views many products", "views few products"),
    "cart_adds_per_session": ("fills carts", "rarely adds to cart"),
    "mobile_event_share": ("mobile web", None),
    "desktop_event_share": ("desktop", None),
    "tablet_event_share": ("tablet", None),
    "app_event_share": ("app users", None),
}


@dataclass
class ClusterModel:
    features: list[str]
    transform: FeatureTransform | None
    model: KMeans | MiniBatchKMeans | GaussianMixture | None
    family: str
    k: int
    relabel: np.ndarray  # model label -> published cluster_id
    centroids: np.ndarray | None = None  # per model label, original units of `features`
    personas: list[dict] = field(default_factory=list)  # per published cluster_id
    metrics: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.model is not None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Published cluster ids of the rows of `x` (columns in `features` order)."""
        if self.model is None or self.transform is None:
            return np.full(x.shape[0], -1, dtype=np.int32)
        z = self.transform.transform(x).astype(np.float64)
        return self.relabel[self.model.predict(z)].astype(np.int32)


def _fit(family: str, k: int, z: np.ndarray, seed: int):
    if family == "gaussian_mixture":
        return GaussianMixture(
            n_components=k, covariance_type="full", n_init=2, reg_covar=1e-4, random_state=seed
        ).fit(z)
    if len(z) > FULL_KMEANS_MAX_ROWS:
        return MiniBatchKMeans(
            n_clusters=k, n_init=3, batch_size=4096, max_no_improvement=20, random_state=seed
        ).fit(z)
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)


FULL_KMEANS_MAX_ROWS = 20_000


def _skipped(features: list[str], reason: str, params: dict, n: int) -> ClusterModel:
    return ClusterModel(
        features,
        None,
        None,
        "",
        0,
        np.zeros(0, dtype=np.int32),
        metrics={"status": "skipped", "reason": reason, "rows": int(n)},
        warnings=[f"clusters: {reason}; cluster_id is NULL for everyone"],
        params=params,
    )


def fit_clusters(
    x_sample: np.ndarray,
    features: list[str],
    seed: int = 42,
    previous: ClusterModel | None = None,
) -> ClusterModel:
    """Fit on a seeded sample of placeable persons (columns `features`, original units).

    Every family in FAMILIES and k in K_RANGE is fitted on the sample; silhouette and
    Davies-Bouldin (and BIC for the mixture) are recorded for each; the highest silhouette wins.
    With `previous` (the last registered model), clusters whose centroids match a previous
    centroid keep its id."""
    n = x_sample.shape[0]
    params = {
        "features": list(features),
        "families": list(FAMILIES),
        "k_range": [K_RANGE.start, K_RANGE.stop - 1],
        "selection": "max silhouette over family and k",
        "seed": seed,
        "fit_rows": int(n),
        "silhouette_sample": min(n, SILHOUETTE_SAMPLE),
    }
    candidates = [k for k in K_RANGE if n >= 10 * k]
    if not features:
        return _skipped(features, "no behaviour features (ml.cluster_features missing)", params, n)
    if not candidates:
        reason = f"only {n} placeable persons (need {10 * K_RANGE.start})"
        return _skipped(features, reason, params, n)

    transform = FeatureTransform(list(features)).fit(x_sample)
    z = transform.transform(x_sample).astype(np.float64)
    rng = np.random.default_rng(seed)
    eval_idx = np.sort(rng.choice(n, size=min(n, SILHOUETTE_SAMPLE), replace=False))
    z_eval = z[eval_idx]

    table: list[dict] = []
    best = None
    for family in FAMILIES:
        for k in candidates:
            model = _fit(family, k, z, seed)
            labels = model.predict(z_eval)
            row = {"family": family, "k": k, "silhouette": None, "davies_bouldin": None}
            if family == "gaussian_mixture":
                row["bic"] = round(float(model.bic(z)), 2)
            if len(np.unique(labels)) >= 2:
                row["silhouette"] = round(float(silhouette_score(z_eval, labels)), 5)
                row["davies_bouldin"] = round(float(davies_bouldin_score(z_eval, labels)), 5)
                if best is None or row["silhouette"] > best[0]["silhouette"]:
                    best = (row, model)
            table.append(row)
    if best is None:
        return _skipped(features, "no family or k separated the persons", params, n)
    chosen, model = best
    family, k = chosen["family"], int(chosen["k"])

    labels = model.predict(z)
    sizes = np.bincount(labels, minlength=k)
    centroids = np.vstack(
        [
            transform.inverse_profile(z[labels == j].mean(axis=0, keepdims=True))[0]
            if sizes[j]
            else np.full(len(features), np.nan)
            for j in range(k)
        ]
    )
    relabel, kept = _stable_ids(transform, centroids, sizes, previous)
    metrics = {
        "status": "trained",
        "family": family,
        "k": k,
        "silhouette": chosen["silhouette"],
        "davies_bouldin": chosen["davies_bouldin"],
        "bic": chosen.get("bic"),
        "candidates": table,
        "rows": int(n),
        "log_features": transform.log_columns,
        "ids_kept_from_previous": kept,
    }
    return ClusterModel(
        list(features), transform, model, family, k, relabel, centroids, [], metrics, [], params
    )


def _stable_ids(
    transform: FeatureTransform,
    centroids: np.ndarray,
    sizes: np.ndarray,
    previous: ClusterModel | None,
) -> tuple[np.ndarray, int]:
    """Published id per model label: a cluster matched (Hungarian, in today's standardised
    space) to a previous centroid nearer than half the spacing of the previous centroids keeps
    that id; the others take new ids above every previous one, largest cluster first."""
    k = len(sizes)
    relabel = np.full(k, -1, dtype=np.int32)
    kept = 0
    next_id = 0
    if (
        previous is not None
        and previous.centroids is not None
        and previous.features == transform.features
        and len(previous.relabel)
    ):
        old = transform.transform(previous.centroids).astype(np.float64)
        new = transform.transform(centroids).astype(np.float64)
        cost = np.linalg.norm(new[:, None, :] - old[None, :, :], axis=2)
        spacing = np.linalg.norm(old[:, None, :] - old[None, :, :], axis=2)
        off = spacing[~np.eye(len(old), dtype=bool)]
        limit = 0.5 * float(np.min(off)) if off.size else np.inf
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            if cost[r, c] <= limit:
                relabel[r] = previous.relabel[c]
                kept += 1
        next_id = int(previous.relabel.max()) + 1
    for label in np.argsort(-sizes, kind="stable"):
        if relabel[label] < 0:
            relabel[label] = next_id
            next_id += 1
    return relabel, kept


def describe_clusters(
    cluster_ids: np.ndarray,
    x: np.ndarray,
    features: list[str],
    categories: dict[int, tuple[str, float, float]] | None = None,
) -> list[dict]:
    """A persona per cluster from the features that set it apart: each feature's cluster mean
    (log scale for counts and money) against the population's, in population standard
    deviations; the largest effects above DESCRIBE_MIN_EFFECT become words, the first two the
    short name. `categories` gives per cluster its most common top category with its share in
    the cluster and overall; it is named when twice as common in the cluster as overall."""
    placed = cluster_ids >= 0
    ids, x = cluster_ids[placed], np.asarray(x[placed], dtype=np.float64)
    personas: list[dict] = []
    if not len(ids):
        return personas
    with np.errstate(all="ignore"):
        high = np.nanmax(np.where(np.isnan(x), -np.inf, x), axis=0)
    xs = x.copy()
    logged = np.flatnonzero(high > 1.0)
    xs[:, logged] = np.log1p(np.clip(xs[:, logged], 0, None))
    with np.errstate(all="ignore"):
        mean, std = np.nanmean(xs, axis=0), np.nanstd(xs, axis=0)
    names_seen: set[str] = set()
    for cid in np.unique(ids):
        members = ids == cid
        with np.errstate(all="ignore"):
            effect = (np.nanmean(xs[members], axis=0) - mean) / np.where(std > 0, std, np.nan)
            means = np.nanmean(x[members], axis=0)
        order = np.argsort(-np.abs(np.nan_to_num(effect)))
        words, traits = [], []
        for j in order:
            e = effect[j]
            if not np.isfinite(e) or abs(e) < DESCRIBE_MIN_EFFECT:
                break
            phrase = PHRASES.get(features[j], (None, None))[0 if e > 0 else 1]
            traits.append({"feature": features[j], "effect_sd": round(float(e), 3)})
            if phrase and phrase not in words:
                words.append(phrase)
        category = None
        top = (categories or {}).get(int(cid))
        if top and top[2] > 0 and top[1] >= 2 * top[2]:
            category = top[0]
            words.append(f"mostly {category}")
        name = " · ".join(words[:2]).capitalize() if words else "Average behaviour"
        if name in names_seen:
            name = f"{name} ({int(cid)})"
        names_seen.add(name)
        personas.append(
            {
                "cluster_id": int(cid),
                "persona_name": name,
                "description": ", ".join(words) if words else "close to the average throughout",
                "persons": int(members.sum()),
                "share": round(float(members.mean()), 5),
                "traits": traits[:6],
                "top_category": category,
                "means": {
                    f: (round(float(v), 4) if np.isfinite(v) else None)
                    for f, v in zip(features, means, strict=True)
                },
            }
        )
    return personas


def projection(
    model: ClusterModel, x: np.ndarray, seed: int = 42, max_points: int = 2000
) -> dict | None:
    """2-D principal-component projection of (a sample of) the fitted rows, with their cluster
    ids, for the cluster map in the asset's metadata."""
    if not model.trained or x.shape[0] < 3:
        return None
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(x.shape[0], size=min(max_points, x.shape[0]), replace=False))
    z = model.transform.transform(x[idx]).astype(np.float64)
    pca = PCA(n_components=2, random_state=seed).fit(z)
    xy = pca.transform(z)
    return {
        "x": xy[:, 0],
        "y": xy[:, 1],
        "cluster_id": model.predict(x[idx]),
        "explained_variance": [round(float(v), 4) for v in pca.explained_variance_ratio_],
    }


_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def projection_svg(points: dict, names: dict[int, str], size: int = 480) -> str:
    """The projection as a small SVG scatter (one colour per cluster, legend with persona names).
    Written here rather than with a plotting library: one scatter does not justify the
    dependency."""
    x, y, c = points["x"], points["y"], points["cluster_id"]
    pad = 20
    lo_x, hi_x = float(np.min(x)), float(np.max(x))
    lo_y, hi_y = float(np.min(y)), float(np.max(y))
    sx = (size - 2 * pad) / ((hi_x - lo_x) or 1.0)
    sy = (size - 2 * pad) / ((hi_y - lo_y) or 1.0)
    ids = sorted(int(v) for v in np.unique(c))
    colour = {cid: _PALETTE[i % len(_PALETTE)] for i, cid in enumerate(ids)}
    legend_h = 16 * len(ids) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + legend_h}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{size}" height="{size}" fill="white" stroke="#ccc"/>',
    ]
    for xi, yi, ci in zip(x, y, c, strict=True):
        px = pad + (float(xi) - lo_x) * sx
        py = size - pad - (float(yi) - lo_y) * sy
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2" fill="{colour[int(ci)]}" '
            'fill-opacity="0.6"/>'
        )
    for i, cid in enumerate(ids):
        top = size + 6 + 16 * i
        label = names.get(cid, str(cid)).replace("&", "&amp;").replace("<", "&lt;")
        parts.append(f'<rect x="8" y="{top}" width="10" height="10" fill="{colour[cid]}"/>')
        parts.append(f'<text x="24" y="{top + 9}">{cid}: {label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
