"""Synthetic ml inputs with planted structure, for tests and benchmarks (not the data generator of
`synthetic/`): marts.customer_profiles, marts.customer_features, ml.cluster_features,
ml.propensity_training_examples."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import numpy as np
import pyarrow as pa

COUNT_FEATURES = (
    "recency_days",
    "frequency_365d",
    "monetary_365d",
    "avg_order_value_365d",
    "purchases_30d",
    "purchases_90d",
    "tenure_days",
    "days_since_last_visit",
    "web_events_7d",
    "web_events_30d",
    "web_events_90d",
    "sessions_7d",
    "sessions_30d",
    "sessions_90d",
    "email_opens_30d",
    "email_clicks_30d",
    "searches_30d",
    "product_views_30d",
    "cart_adds_30d",
    "checkout_starts_30d",
    "product_views_without_purchase_30d",
    "cart_adds_without_purchase_30d",
    "n_categories_365d",
)
SHARE_FEATURES = ("share_mobile", "share_desktop", "share_tablet", "share_app")
PURCHASE_FEATURES = (
    "recency_days",
    "frequency_365d",
    "monetary_365d",
    "avg_order_value_365d",
    "purchases_30d",
    "purchases_90d",
    "return_rate_365d",
)
GROUP_SHARES = (0.3, 0.3, 0.2, 0.2)
# Probability of never having purchased, per planted group.
NEVER_PURCHASED = (0.02, 0.5, 0.05, 0.15)
CONSENT_RATES = {
    "consent_analytics": 0.8,
    "consent_personalization": 0.6,
    "consent_ad_targeting": 0.5,
    "consent_third_party_sharing": 0.2,
}


@dataclass
class SyntheticTruth:
    person_id: np.ndarray
    group: np.ndarray


def _person_ids(n: int) -> np.ndarray:
    return np.char.add("p", np.char.zfill(np.arange(n).astype(str), 7))


def _group_means(n_groups: int) -> dict[str, np.ndarray]:
    # Fixed structure seed: groups differ by the same amounts whatever the data seed.
    rng = np.random.default_rng(12345)
    means = {f: rng.uniform(0.2, 4.5, size=n_groups) for f in COUNT_FEATURES}
    means["share_logits"] = rng.normal(0, 1.5, size=(n_groups, len(SHARE_FEATURES)))
    means["online_share"] = rng.uniform(0.05, 0.95, size=n_groups)
    means["return_rate"] = rng.uniform(0.0, 0.2, size=n_groups)
    return means


def _features(group: np.ndarray, rng: np.random.Generator, n_groups: int) -> dict[str, np.ndarray]:
    n = len(group)
    means = _group_means(n_groups)
    out: dict[str, np.ndarray] = {}
    for f in COUNT_FEATURES:
        mu = means[f][group]
        out[f] = np.round(np.expm1(np.clip(mu + 0.35 * rng.standard_normal(n), 0, None)))
    logits = means["share_logits"][group] + 0.4 * rng.standard_normal((n, len(SHARE_FEATURES)))
    shares = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for j, f in enumerate(SHARE_FEATURES):
        out[f] = shares[:, j]
    out["online_share_365d"] = np.clip(
        means["online_share"][group] + 0.08 * rng.standard_normal(n), 0, 1
    )
    out["return_rate_365d"] = np.clip(
        means["return_rate"][group] + 0.03 * rng.standard_normal(n), 0, 1
    )
    out["frequency_365d"] = np.maximum(out["frequency_365d"], 1)
    never = rng.random(n) < np.asarray(NEVER_PURCHASED)[group % len(NEVER_PURCHASED)]
    for f in PURCHASE_FEATURES:
        out[f] = np.where(never, np.nan, out[f])
    for f in ("frequency_365d", "monetary_365d", "purchases_30d", "purchases_90d"):
        out[f] = np.where(never, 0.0, out[f])
    return out


# ml.cluster_features: rates and amounts (log-normal around a group mean) and shares (logistic).
CLUSTER_RATE_FEATURES = (
    "purchase_days_per_30d",
    "sessions_per_30d",
    "lines_per_basket",
    "revenue_per_order",
    "recent_purchase_ratio",
    "exposure_days",
    "product_views_per_session",
    "cart_adds_per_session",
)
CLUSTER_SHARE_FEATURES = ("store_order_share",)
DEVICE_SHARES = (
    "mobile_event_share",
    "desktop_event_share",
    "tablet_event_share",
    "app_event_share",
)
# Share of persons with too little activity (under 5 events) to be placed in a cluster.
LOW_ACTIVITY_SHARE = 0.1


def _cluster_features(
    group: np.ndarray, rng: np.random.Generator, n_groups: int
) -> dict[str, np.ndarray]:
    structure = np.random.default_rng(54321)  # groups differ by the same amounts whatever the seed
    n = len(group)
    out: dict[str, np.ndarray] = {}
    for f in CLUSTER_RATE_FEATURES:
        mu = structure.uniform(-1.0, 3.0, size=n_groups)
        out[f] = np.exp(mu[group] + 0.25 * rng.standard_normal(n))
    out["exposure_days"] = np.minimum(np.round(out["exposure_days"] * 20), 365)
    for f in CLUSTER_SHARE_FEATURES:
        logit = structure.normal(0, 2.0, size=n_groups)
        out[f] = 1 / (1 + np.exp(-(logit[group] + 0.3 * rng.standard_normal(n))))
    logits = structure.normal(0, 1.5, size=(n_groups, len(DEVICE_SHARES)))[group]
    logits = logits + 0.4 * rng.standard_normal((n, len(DEVICE_SHARES)))
    shares = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for j, f in enumerate(DEVICE_SHARES):
        out[f] = shares[:, j]
    low = rng.random(n) < LOW_ACTIVITY_SHARE
    out["activity_events_365d"] = np.where(low, rng.integers(0, 5, n), rng.integers(5, 400, n))
    return out


def _label(feats: dict[str, np.ndarray], rng: np.random.Generator, kind: str) -> np.ndarray:
    n = len(feats["frequency_365d"])
    if kind == "noise":
        return rng.random(n) < 0.2

    def z(v: np.ndarray) -> np.ndarray:
        v = np.log1p(np.nan_to_num(v, nan=0.0))
        return (v - v.mean()) / (v.std() + 1e-9)

    logit = (
        -1.4
        + 1.6 * z(feats["frequency_365d"])
        - 1.0 * z(feats["days_since_last_visit"])
        + 0.8 * z(feats["cart_adds_30d"])
    )
    return rng.random(n) < 1 / (1 + np.exp(-logit))


def _write(
    con: duckdb.DuckDBPyConnection,
    target: str,
    table: pa.Table,
    prefix_sql: str,
    params: dict | None = None,
) -> None:
    con.register("_ml_synthetic", table)
    try:
        con.execute(
            f"create or replace table {target} as select {prefix_sql} from _ml_synthetic",
            params or {},
        )
    finally:
        con.unregister("_ml_synthetic")


def make_inputs(
    con: duckdb.DuckDBPyConnection,
    n_persons: int = 5000,
    as_of: date = date(2026, 6, 30),
    seed: int = 0,
    label: str = "features",
    n_groups: int = 4,
    training: bool = True,
) -> SyntheticTruth:
    """Write the three ml input tables; `label` is `features` (driven by frequency, visit recency
    and cart adds) or `noise` (independent of every feature)."""
    rng = np.random.default_rng(seed)
    shares = np.asarray(GROUP_SHARES[:n_groups]) if n_groups <= 4 else np.ones(n_groups)
    group = rng.choice(n_groups, size=n_persons, p=shares / shares.sum())
    ids = _person_ids(n_persons)
    con.execute("create schema if not exists marts")
    con.execute("create schema if not exists ml")

    profiles = {"person_id": ids, "is_known": rng.random(n_persons) < 0.7}
    for col, rate in CONSENT_RATES.items():
        profiles[col] = rng.random(n_persons) < rate
    profiles["home_city"] = np.array(["Springfield", "Shelbyville", "Ogdenville"])[
        rng.integers(0, 3, n_persons)
    ]
    profiles["home_country"] = np.full(n_persons, "US")
    _write(con, "marts.customer_profiles", pa.table(profiles), "*")

    feats = _features(group, rng, n_groups)
    table = pa.table({"person_id": ids, **feats})
    table = table.append_column(
        "top_category_365d",
        pa.array(np.array(["shoes", "toys", "food"])[rng.integers(0, 3, n_persons)]),
    )
    table = table.append_column("home_city", pa.array(profiles["home_city"]))
    _write(
        con,
        "marts.customer_features",
        _nan_to_null(table),
        "person_id, cast($as_of as date) as as_of, * exclude (person_id)",
        {"as_of": as_of},
    )

    cluster = pa.table({"person_id": ids, **_cluster_features(group, rng, n_groups)})
    _write(con, "ml.cluster_features", cluster, "*")

    if training:
        parts = []
        for days in (90, 60, 30):
            f = _features(group, rng, n_groups)
            y = _label(f, rng, label)
            t = pa.table({"person_id": ids, **f, "purchased_next_30d": y})
            t = _nan_to_null(t).append_column(
                "cutoff_date", pa.array(np.full(n_persons, as_of - timedelta(days=days)))
            )
            parts.append(t)
        _write(
            con,
            "ml.propensity_training_examples",
            pa.concat_tables(parts),
            "person_id, cutoff_date, * exclude (person_id, cutoff_date)",
        )
    return SyntheticTruth(ids, group)


def _nan_to_null(table: pa.Table) -> pa.Table:
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_floating(col.type):
            arr = col.to_numpy()
            col = pa.array(arr, mask=np.isnan(arr))
        cols.append(col)
    return pa.table(dict(zip(table.column_names, cols, strict=True)))
