"""`score_customers`: RFM (SQL), persona clusters, purchase propensity and lifetime value into
marts.customer_scores and ml.cluster_personas; one ml.model_runs row per model, each trained
model saved as an artifact, and each score naming the model version it came from."""

from __future__ import annotations

import hashlib
import json
import math
import time
from datetime import UTC, date, datetime

import duckdb
import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from ml import registry
from ml._db import (
    analytics_consented,
    feature_select,
    numeric_features,
    read_matrix,
    read_matrix_batches,
    replace_table_from_arrow,
    table_columns,
)
from ml.clusters import (
    DESCRIBE_FEATURES,
    FIT_FEATURES,
    ClusterModel,
    describe_clusters,
    fit_clusters,
    projection,
    projection_svg,
)
from ml.clv import BGNBDParams, clv_scores, expected_transactions_new
from ml.propensity import fit_propensity

CLUSTER_FIT_ROWS = 20_000
CLUSTER_DESCRIBE_ROWS = 100_000
CLUSTER_MODEL, PROPENSITY_MODEL, CLV_MODEL = (
    "behavioural_clusters",
    "purchase_propensity",
    "customer_lifetime_value",
)
CLV_TIME_UNITS = {"days": 1.0, "weeks": 7.0}
CLV_HORIZONS_DAYS = (90, 365)
# Below this many persons one thread is faster: OpenMP start-up and spin-waits dominate.
SINGLE_THREAD_BELOW = 50_000
SCORE_BATCH_ROWS = 131_072
RFM_COLUMNS = ("recency_days", "frequency_365d", "monetary_365d")

# The usual R/F segment map (R and F scores 1..5; M only ranks within a cell).
RFM_CELL_SQL = """
    case
        when r is null then 'no_purchase'
        when r = 1 and f = 1 then 'lost'
        when r <= 2 and f <= 2 then 'hibernating'
        when r <= 2 and f <= 4 then 'at_risk'
        when r <= 2 then 'cannot_lose_them'
        when r = 3 and f <= 2 then 'about_to_sleep'
        when r = 3 and f = 3 then 'need_attention'
        when f >= 4 and r <= 4 then 'loyal_customers'
        when r = 4 and f = 1 then 'promising'
        when r = 5 and f = 1 then 'new_customers'
        when f <= 3 then 'potential_loyalists'
        else 'champions'
    end
"""
RFM_CELLS = (
    "champions",
    "loyal_customers",
    "potential_loyalists",
    "new_customers",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cannot_lose_them",
    "hibernating",
    "lost",
    "no_purchase",
)

# ntile over purchasers only; ties take one score (the highest bucket the tie reaches).
_RFM_SQL = """
    purchasers as (
        select
            person_id,
            recency_days,
            coalesce(frequency_365d, 0) as frequency,
            coalesce(monetary_365d, 0) as monetary
        from marts.customer_features
        where recency_days is not null and {consented}
    ),
    tiles as (
        select
            *,
            ntile(5) over (order by recency_days desc, person_id) as r_tile,
            ntile(5) over (order by frequency, person_id) as f_tile,
            ntile(5) over (order by monetary, person_id) as m_tile
        from purchasers
    ),
    rfm as (
        select
            person_id,
            cast(max(r_tile) over (partition by recency_days) as integer) as r,
            cast(max(f_tile) over (partition by frequency) as integer) as f,
            cast(max(m_tile) over (partition by monetary) as integer) as m
        from tiles
    )
"""
_NO_RFM_SQL = """
    rfm as (
        select null::varchar as person_id, null::integer as r, null::integer as f,
            null::integer as m
        where false
    )
"""


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, date):
        return value.isoformat()
    return value


def to_json(value) -> str:
    return json.dumps(_jsonable(value), sort_keys=True, allow_nan=False)


def _ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists marts")
    con.execute("create schema if not exists ml")


def data_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """Order-free hash of the model inputs (features and training examples): equal inputs give
    the same model version, so a re-run on unchanged data can reuse it."""
    parts = []
    for table in (
        "marts.customer_features",
        "ml.propensity_training_examples",
        "ml.clv_inputs",
        "ml.cluster_features",
    ):
        schema, name = table.split(".")
        if table_columns(con, schema, name):
            row = con.execute(f"select count(*), bit_xor(hash(t)) from {table} t").fetchall()[0]
            parts.append(f"{table}:{row[0]}:{row[1]}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]


def lifetime_value(
    con: duckdb.DuckDBPyConnection, consented: str, time_unit: str = "weeks"
) -> tuple[pa.Table, dict, dict, list[str]]:
    """BG/NBD and Gamma-Gamma (ml/clv.py) on ml.clv_inputs: per consented person, expected
    transactions over 90 and 365 days, expected spend over 365 days and the probability of
    being alive.

    A person without a purchase in the calibration window (a prospect) is not a customer the
    BG/NBD knows; their prior for a horizon h is the observed first-purchase rate times what a
    first purchase brings: c_h * (1 + E[X(h / 2)]), where c_h = persons whose first purchase
    fell in the last h days / (those + persons without any), and E[X(t)] is a new customer's
    expected repeat purchases (the first purchase lands, on average, halfway through h). Their
    spend is that times the population mean spend per purchase, and their probability alive 1
    (the BG/NBD's value before any repeat purchase)."""
    if time_unit not in CLV_TIME_UNITS:
        raise ValueError(f"time_unit must be one of {sorted(CLV_TIME_UNITS)}, got {time_unit!r}")
    unit = CLV_TIME_UNITS[time_unit]
    params = {
        "models": "BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma, ml/clv.py on scipy",
        "time_unit": time_unit,
        "horizons_days": list(CLV_HORIZONS_DAYS),
        "transaction": "a purchase day (POS or web)",
    }
    names = ("expected_transactions_90d", "expected_transactions_365d", "expected_spend_365d")
    if not table_columns(con, "ml", "clv_inputs"):
        reason = "ml.clv_inputs is missing"
        empty = pa.table({"person_id": pa.array([], pa.string())})
        return empty, {"status": "skipped", "reason": reason}, params, [f"clv: {reason}"]
    data = con.sql(
        "select person_id, frequency, recency_days, age_days, monetary_value "
        f"from ml.clv_inputs where {consented} order by person_id"
    ).to_arrow_table()

    def column(name: str) -> np.ndarray:
        return data.column(name).to_numpy(zero_copy_only=False).astype(np.float64)

    purchased = ~np.isnan(column("age_days"))
    result = clv_scores(
        column("frequency"),
        column("recency_days") / unit,
        column("age_days") / unit,
        column("monetary_value"),
        horizon_short=CLV_HORIZONS_DAYS[0] / unit,
        horizon_long=CLV_HORIZONS_DAYS[1] / unit,
        time_unit=time_unit,
    )
    scores = result.scores
    age = column("age_days")
    bg = result.metrics.get("bgnbd") or {}
    if bg.get("status") == "trained" and (~purchased).any():
        params_bg = BGNBDParams(bg["r"], bg["alpha"], bg["a"], bg["b"])
        prospects = int((~purchased).sum())
        spend = scores["expected_spend_per_transaction"]
        mean_spend = float(np.nanmean(spend[~purchased])) if prospects else math.nan
        for key, days in zip(
            ("expected_transactions_short", "expected_transactions_long"),
            CLV_HORIZONS_DAYS,
            strict=True,
        ):
            first_buyers = int(np.sum(purchased & (age <= days)))
            rate = first_buyers / (first_buyers + prospects)
            prior = rate * (1.0 + float(expected_transactions_new(params_bg, days / unit / 2)))
            scores[key] = np.where(purchased, scores[key], prior)
            params[f"prospect_first_purchase_rate_{days}d"] = round(rate, 6)
        scores["expected_spend_long"] = np.where(
            purchased,
            scores["expected_spend_long"],
            scores["expected_transactions_long"] * mean_spend,
        )
    alive = np.where(purchased, scores["probability_alive"], 1.0)
    alive = np.where(np.isnan(scores["expected_transactions_short"]), np.nan, alive)
    columns = {
        "person_id": data.column("person_id"),
        names[0]: scores["expected_transactions_short"],
        names[1]: scores["expected_transactions_long"],
        names[2]: scores["expected_spend_long"],
        "probability_alive": alive,
    }
    table = pa.table(
        {
            k: v if k == "person_id" else pa.array(v, type=pa.float64(), mask=np.isnan(v))
            for k, v in columns.items()
        }
    )
    metrics = {
        **result.metrics,
        "persons": int(len(purchased)),
        "purchasers_in_window": int(purchased.sum()),
        "cold_start_persons": int((~purchased).sum()),
    }
    warnings = []
    if metrics.get("status") != "trained":
        warnings.append(f"clv: {metrics.get('reason') or 'not trained'}; values left NULL")
    return table, metrics, params, warnings


class PinError(ValueError):
    """A pinned model version that cannot be used."""


def _version(as_of: date, seed: int, params_json: str, features_json: str, fp: str) -> str:
    digest = hashlib.sha1((params_json + features_json + fp).encode()).hexdigest()[:8]
    return f"{as_of.isoformat()}-s{seed}-{digest}"


def _cluster_categories(
    ids: np.ndarray, categories: pa.Array
) -> dict[int, tuple[str, float, float]]:
    """Per cluster: its most common top category, that category's share in the cluster and its
    share among all placed persons of the sample (Arrow group-bys, no row loop)."""
    t = pa.table({"cluster_id": pa.array(ids, pa.int32()), "category": categories})
    t = t.filter(
        pa.compute.and_(
            pa.compute.is_valid(t["category"]), pa.compute.greater_equal(t["cluster_id"], 0)
        )
    )
    if not t.num_rows:
        return {}
    counts = t.group_by(["cluster_id", "category"]).aggregate([("category", "count")]).to_pylist()
    overall: dict[str, int] = {}
    totals: dict[int, int] = {}
    best: dict[int, tuple[str, int]] = {}
    for row in counts:  # one row per (cluster, category): a few dozen
        cid, cat, n = int(row["cluster_id"]), row["category"], int(row["category_count"])
        overall[cat] = overall.get(cat, 0) + n
        totals[cid] = totals.get(cid, 0) + n
        if cid not in best or (n, cat) > (best[cid][1], best[cid][0]):
            best[cid] = (cat, n)
    placed = sum(totals.values())
    return {cid: (cat, n / totals[cid], overall[cat] / placed) for cid, (cat, n) in best.items()}


def persona_clusters(
    con: duckdb.DuckDBPyConnection,
    consented: str,
    seed: int,
    min_events: int,
    previous: ClusterModel | None = None,
    pinned: ClusterModel | None = None,
) -> tuple[ClusterModel, pa.Table, list[dict], dict | None]:
    """Fit (or take the pinned model), place every consented person with at least `min_events`
    store baskets and web events in the 365 days to as_of, and describe the clusters.
    Returns the model, (person_id, cluster_id) for placed persons, the personas and a 2-D
    projection of a sample."""
    empty = pa.table(
        {"person_id": pa.array([], pa.string()), "cluster_id": pa.array([], pa.int32())}
    )
    columns = table_columns(con, "ml", "cluster_features")
    features = [f for f in FIT_FEATURES if f in columns]
    describe = [f for f in DESCRIBE_FEATURES if f in columns]
    if not columns or "activity_events_365d" not in columns:
        model = fit_clusters(np.empty((0, 0)), [], seed=seed)
        return model, empty, [], None
    eligible = f"{consented} and activity_events_365d >= $min_events"
    params = {"seed": seed, "n": CLUSTER_DESCRIBE_ROWS, "min_events": min_events}
    sample_sql = (
        f"select person_id, {feature_select(describe, 'f')}, p.top_category_365d "
        f"from (select * from ml.cluster_features where {eligible}) as f "
        "join marts.customer_features as p using (person_id) "
        "order by hash(person_id, $seed), person_id limit $n"
    )
    x_desc, extra = read_matrix(con, sample_sql, params, describe, extra=("top_category_365d",))
    fit_idx = [describe.index(f) for f in features]
    if pinned is not None:
        model = pinned
    else:
        x_fit = x_desc[:CLUSTER_FIT_ROWS][:, fit_idx]
        model = fit_clusters(x_fit, features, seed=seed, previous=previous)
        model.params["min_events"] = min_events
    if not model.trained:
        return model, empty, [], None
    model_idx = [describe.index(f) for f in model.features]
    sample_ids = model.predict(x_desc[:, model_idx])
    categories = _cluster_categories(
        sample_ids, pa.array(extra["top_category_365d"], type=pa.string())
    )
    personas = describe_clusters(sample_ids, x_desc, describe, categories)
    points = projection(model, x_desc[:, model_idx], seed=seed)
    del x_desc

    ids: list[pa.Array] = []
    labels: list[np.ndarray] = []
    query = (
        f"select person_id, {feature_select(model.features)} from ml.cluster_features "
        f"where {eligible} order by person_id"
    )
    for batch, x in read_matrix_batches(
        con, query, {"min_events": min_events}, model.features, SCORE_BATCH_ROWS
    ):
        ids.append(batch.column("person_id"))
        labels.append(model.predict(x))
    if not ids:
        return model, empty, personas, points
    placed = pa.table(
        {
            "person_id": pa.chunked_array(ids, type=pa.string()),
            "cluster_id": pa.array(np.concatenate(labels), type=pa.int32()),
        }
    )
    return model, placed, personas, points


def score_customers(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    seed: int = 42,
    version: str | None = None,
    skip_known_versions: bool = False,
    clv_time_unit: str = "weeks",
    cluster_min_events: int = 5,
    model_dir: str | None = None,
    pinned_versions: dict[str, str] | None = None,
) -> dict:
    """Score every person in marts.customer_features; write marts.customer_scores and
    ml.cluster_personas (replace) and append ml.model_runs. The default version carries a
    fingerprint of the input data; with skip_known_versions a model whose (model_name, version)
    is stored is not appended again, so a re-run on unchanged inputs changes no table.

    With `model_dir` each trained model is saved there (ml.registry artifacts); the clusters
    then keep the ids of the previous saved model's matching centroids. `pinned_versions`
    (model name -> version) scores with a registered version instead of training one (clusters
    and propensity; lifetime value refits its few parameters every run). Returns metrics per
    model and `warnings`."""
    columns = table_columns(con, "marts", "customer_features")
    if not columns or "person_id" not in columns:
        raise ValueError("marts.customer_features is missing or has no person_id column")
    _ensure_schemas(con)
    pinned_versions = dict(pinned_versions or {})
    unknown = sorted(set(pinned_versions) - {CLUSTER_MODEL, PROPENSITY_MODEL})
    if unknown:
        raise PinError(
            f"model versions can be pinned for {CLUSTER_MODEL} and {PROPENSITY_MODEL}, "
            f"not {unknown}"
        )
    pinned = {name: registry.load_artifact(con, name, v) for name, v in pinned_versions.items()}
    started = time.perf_counter()
    timings: dict[str, float] = {}
    features = numeric_features(columns)
    warnings: list[str] = []
    n_persons = con.execute("select count(*) from marts.customer_features").fetchall()[0][0]
    if n_persons == 0:
        warnings.append("scores: marts.customer_features is empty")

    # Persons without analytics consent get a row without scores, and models never see them.
    consented = analytics_consented(con)
    previous = None
    if model_dir and CLUSTER_MODEL not in pinned:
        found = registry.latest_artifact(con, CLUSTER_MODEL)
        previous = found[1] if found and isinstance(found[1], ClusterModel) else None
    threads = 1 if n_persons < SINGLE_THREAD_BELOW else None
    with threadpool_limits(limits=threads):
        clusters, placed, personas, points = persona_clusters(
            con, consented, seed, cluster_min_events, previous, pinned.get(CLUSTER_MODEL)
        )
        timings["clusters"] = time.perf_counter() - started
        propensity = pinned.get(PROPENSITY_MODEL) or fit_propensity(
            con, features, seed=seed, where=consented
        )
        timings["fit_propensity"] = time.perf_counter() - started - timings["clusters"]
    warnings += clusters.warnings
    warnings += propensity.warnings
    missing = [f for f in propensity.features if f not in features]
    if missing:
        raise PinError(f"{PROPENSITY_MODEL}: customer_features lacks {missing}")
    prop_idx = np.array([features.index(f) for f in propensity.features], dtype=np.intp)

    # Score all persons chunk by chunk; only ids and the score stay in memory.
    ids: list[pa.Array] = []
    scores: list[np.ndarray] = []
    query = (
        f"select person_id, {feature_select(features)} from marts.customer_features "
        f"where {consented} order by person_id"
    )
    with threadpool_limits(limits=threads):
        for batch, x in read_matrix_batches(con, query, None, features, SCORE_BATCH_ROWS):
            ids.append(batch.column("person_id"))
            p = propensity.predict(x[:, prop_idx]) if propensity.model is not None else None
            scores.append(p if p is not None else np.full(batch.num_rows, np.nan))
    if ids:
        person_ids = pa.chunked_array(ids, type=pa.string())
        prop_all = np.concatenate(scores)
        prop_col = pa.array(prop_all, type=pa.float64(), mask=np.isnan(prop_all))
    else:
        person_ids = pa.chunked_array([], type=pa.string())
        prop_col = pa.array([], type=pa.float64())
    results = pa.table({"person_id": person_ids, "propensity_30d": prop_col})
    del ids, scores

    timings["predict"] = time.perf_counter() - started - sum(timings.values())
    clv_table, clv_metrics, clv_params, clv_warnings = lifetime_value(con, consented, clv_time_unit)
    warnings += clv_warnings
    timings["lifetime_value"] = time.perf_counter() - started - sum(timings.values())

    # Versions first, so every score names the model version it came from.
    trained_at = datetime.now(UTC).replace(tzinfo=None)
    fingerprint = data_fingerprint(con)
    clusters.metrics["placed_persons"] = int(placed.num_rows)
    clusters.metrics["min_events"] = cluster_min_events
    clusters.metrics["personas"] = personas
    if points is not None:
        clusters.metrics["projection_explained_variance"] = points["explained_variance"]
    clv_features = ["frequency", "recency_days", "age_days", "monetary_value"]
    models = (
        (CLUSTER_MODEL, clusters, clusters.params, clusters.metrics, clusters.features),
        (PROPENSITY_MODEL, propensity, propensity.params, propensity.metrics, propensity.features),
        (CLV_MODEL, None, clv_params, clv_metrics, clv_features),
    )
    versions: dict[str, str] = {}
    runs = []
    for name, obj, params, metrics, feats in models:
        params_json, features_json = to_json(params), to_json(feats)
        if name in pinned_versions:
            versions[name] = pinned_versions[name]
            continue  # scored with a registered version: nothing new to register
        run_version = version or _version(as_of, seed, params_json, features_json, fingerprint)
        versions[name] = run_version
        status = (metrics or {}).get("status", registry.TRAINED)
        artifact = None
        if model_dir and obj is not None and status == registry.TRAINED:
            artifact = registry.save_artifact(model_dir, name, run_version, obj)
        runs.append(
            registry.run_row(
                name,
                run_version,
                as_of,
                params_json,
                to_json(metrics),
                features_json,
                trained_at,
                artifact,
            )
        )

    has_rfm = all(c in columns for c in RFM_COLUMNS)
    if not has_rfm:
        warnings.append(f"rfm: customer_features lacks one of {RFM_COLUMNS}; RFM left NULL")
    persona_table = pa.table(
        {
            "cluster_id": pa.array([p["cluster_id"] for p in personas], pa.int32()),
            "persona_name": pa.array([p["persona_name"] for p in personas], pa.string()),
        }
    )
    select_sql = f"""
        with {_RFM_SQL.format(consented=consented) if has_rfm else _NO_RFM_SQL}
        select
            p.person_id,
            cast($as_of as date) as as_of,
            a.propensity_30d,
            cast(case when a.propensity_30d is not null then ntile(10) over (
                partition by a.propensity_30d is null
                order by a.propensity_30d desc, p.person_id
            ) end as integer) as propensity_decile,
            c.cluster_id,
            personas.persona_name,
            rfm.r as rfm_recency_score,
            rfm.f as rfm_frequency_score,
            rfm.m as rfm_monetary_score,
            case when a.person_id is not null then {RFM_CELL_SQL} end as rfm_cell,
            clv.expected_transactions_90d,
            clv.expected_transactions_365d,
            clv.expected_spend_365d,
            clv.probability_alive,
            case when a.propensity_30d is not null then $propensity_version end
                as propensity_model_version,
            case when c.cluster_id is not null then $cluster_version end
                as cluster_model_version,
            case when clv.expected_transactions_90d is not null then $clv_version end
                as clv_model_version
        from marts.customer_features as p
        left join _ml_arrow_input as a on a.person_id = p.person_id
        left join _ml_cluster_input as c on c.person_id = p.person_id
        left join _ml_persona_input as personas on personas.cluster_id = c.cluster_id
        left join rfm on rfm.person_id = p.person_id
        left join _ml_clv_input as clv on clv.person_id = p.person_id
        order by p.person_id
    """
    if "expected_transactions_90d" not in clv_table.column_names:
        clv_table = pa.table(
            {
                "person_id": pa.array([], pa.string()),
                **{
                    c: pa.array([], pa.float64())
                    for c in (
                        "expected_transactions_90d",
                        "expected_transactions_365d",
                        "expected_spend_365d",
                        "probability_alive",
                    )
                },
            }
        )
    # r and f inside the CASE resolve to rfm's columns (the Arrow inputs have neither).
    con.register("_ml_clv_input", clv_table)
    con.register("_ml_cluster_input", placed)
    con.register("_ml_persona_input", persona_table)
    try:
        replace_table_from_arrow(
            con,
            "marts.customer_scores",
            results,
            select_sql,
            {
                "as_of": as_of,
                "propensity_version": versions[PROPENSITY_MODEL],
                "cluster_version": versions[CLUSTER_MODEL],
                "clv_version": versions[CLV_MODEL],
            },
        )
    finally:
        for name in ("_ml_clv_input", "_ml_cluster_input", "_ml_persona_input"):
            con.unregister(name)
    write_personas(con, as_of, versions[CLUSTER_MODEL], personas)
    del results, clv_table, placed
    timings["write_scores"] = time.perf_counter() - started - sum(timings.values())

    rfm_counts = dict(
        con.execute(
            "select rfm_cell, count(*) from marts.customer_scores group by 1 order by 1"
        ).fetchall()
    )
    cluster_sizes = {
        str(k): v
        for k, v in con.execute(
            "select cluster_id, count(*) from marts.customer_scores group by 1 order by 1"
        ).fetchall()
    }
    clusters.metrics["sizes"] = cluster_sizes
    appended = registry.append_model_runs(con, runs, skip_known_versions)

    projection_svg_text = None
    if points is not None:
        projection_svg_text = projection_svg(
            points, {p["cluster_id"]: p["persona_name"] for p in personas}
        )
    return _jsonable(
        {
            "persons": int(n_persons),
            "features": features,
            "clusters": clusters.metrics,
            "propensity": propensity.metrics,
            "clv": clv_metrics,
            "rfm": {"cells": rfm_counts},
            "versions": versions,
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "model_runs_appended": appended,
            "data_fingerprint": fingerprint,
            "projection_svg": projection_svg_text,
            "warnings": warnings,
        }
    )


def write_personas(
    con: duckdb.DuckDBPyConnection, as_of: date, model_version: str, personas: list[dict]
) -> None:
    """ml.cluster_personas: one row per cluster of this run (replaced each run)."""
    table = pa.table(
        {
            "cluster_id": pa.array([p["cluster_id"] for p in personas], pa.int32()),
            "persona_name": pa.array([p["persona_name"] for p in personas], pa.string()),
            "description": pa.array([p["description"] for p in personas], pa.string()),
            "sample_share": pa.array([p["share"] for p in personas], pa.float64()),
            "top_category": pa.array([p["top_category"] for p in personas], pa.string()),
            "traits": pa.array([to_json(p["traits"]) for p in personas], pa.string()),
            "feature_means": pa.array([to_json(p["means"]) for p in personas], pa.string()),
        }
    )
    replace_table_from_arrow(
        con,
        "ml.cluster_personas",
        table,
        """
        select
            cast($as_of as date) as as_of,
            cast($version as varchar) as model_version,
            t.cluster_id,
            t.persona_name,
            t.description,
            coalesce(s.persons, 0) as persons,
            t.sample_share,
            t.top_category,
            t.traits,
            t.feature_means
        from _ml_arrow_input as t
        left join (
            select cluster_id, count(*) as persons from marts.customer_scores
            where cluster_id is not null group by cluster_id
        ) as s on s.cluster_id = t.cluster_id
        order by t.cluster_id
        """,
        {"as_of": as_of, "version": model_version},
    )
