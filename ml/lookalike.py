"""Lookalikes: how much each person resembles a seed set of persons, into marts.lookalike_scores.

The seed is a segment's published members (the latest run of marts.segment_membership_history)
or, by default, the top 5% of analytics-consented persons by expected_spend_365d. A seed-vs-rest
classifier (positive-unlabelled: the rest holds lookalikes, so the model must stay simple enough
not to memorise them) is fitted on a seeded sample of the behavioural features of
marts.customer_features and scores every other consented person, prospects without purchases
included. Model outputs of marts.customer_scores are not inputs: the default seed is defined by
expected_spend_365d, and its inputs are the model's (a seed learnt from its own definition ranks
by that definition's threshold, not by resemblance).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import date

import duckdb
import numpy as np
import pyarrow as pa
from sklearn.feature_selection import VarianceThreshold
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from ml import registry
from ml._db import (
    analytics_consented,
    feature_select,
    ident,
    numeric_features,
    read_matrix,
    read_matrix_batches,
    replace_table_from_arrow,
    table_columns,
)
from ml.scoring import data_fingerprint, to_json

MODEL_NAME = "lookalike"
TABLE = "marts.lookalike_scores"
SEED_TABLE = "_lookalike_seed"  # a temporary table of the seed's person ids
DEFAULT_SEED_COLUMN = "expected_spend_365d"
DEFAULT_SEED_SHARE = 0.05
MIN_SEED, MIN_REST = 20, 20
# Fitting sample: every seed member and the rest up to these counts (hash order, seeded).
MAX_SEED_ROWS, MAX_REST_ROWS = 100_000, 200_000
HOLDOUT_BUCKETS, HOLDOUT_KEEP = 5, 1  # one in five sampled persons validates
TIERS = (0.01, 0.02, 0.05, 0.10)
SCORE_BATCH_ROWS = 131_072
SINGLE_THREAD_BELOW = 50_000
TOP_IMPORTANCES = 10


def default_seed_name(share: float = DEFAULT_SEED_SHARE) -> str:
    return f"top_{round(share * 100):g}pct_{DEFAULT_SEED_COLUMN}"


@dataclass
class Seed:
    name: str  # the segment id, or default_seed_name()
    source: str  # segment | default
    size: int
    as_of: date | None = None  # the segment run the members come from
    warnings: list[str] = field(default_factory=list)
    reason: str | None = None  # why there is no seed at all


def _signed_log(x: np.ndarray) -> np.ndarray:
    """Counts and amounts are heavy-tailed: compare them on a log scale; a null becomes 0 plus a
    missing-value indicator column (a prospect has no recency, a store-only buyer no web data)."""
    missing = np.isnan(x)
    filled = np.where(missing, 0.0, x)
    return np.hstack([np.sign(filled) * np.log1p(np.abs(filled)), missing.astype(np.float64)])


def _classifier(seed: int) -> Pipeline:
    # The default, fixed regularisation of scikit-learn: a linear model on standardised inputs
    # cannot memorise the lookalikes among the unlabelled rows it is fitted on.
    return Pipeline(
        [
            ("log", FunctionTransformer(_signed_log)),
            ("constant", VarianceThreshold(0.0)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=1.0, max_iter=2000, random_state=seed)),
        ]
    )


def _balanced_weights(y: np.ndarray) -> np.ndarray:
    """Seed and rest weigh the same in total, however small the seed."""
    share = float(y.mean())
    return np.where(y == 1, 0.5 / share, 0.5 / (1.0 - share))


def _importances(model: Pipeline, features: list[str]) -> dict[str, float]:
    """Share of |standardised coefficient| per feature (its value and its missing indicator),
    largest first, the top TOP_IMPORTANCES; the sign says whether more of it looks like the seed."""
    names = [*features, *(f"{f} (missing)" for f in features)]
    kept = np.asarray(names)[model.named_steps["constant"].get_support()]
    coefs = model.named_steps["model"].coef_[0]
    total = float(np.abs(coefs).sum()) or 1.0
    out: dict[str, float] = {}
    for name, c in zip(kept, coefs, strict=True):
        out[str(name)] = round(float(c) / total, 4)
    top = sorted(out.items(), key=lambda kv: -abs(kv[1]))[:TOP_IMPORTANCES]
    return dict(top)


def choose_seed(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    segment_id: str | None = None,
    share: float = DEFAULT_SEED_SHARE,
) -> Seed:
    """Write the seed's person ids (analytics-consented persons of customer_features only) into
    the temporary table SEED_TABLE and say where they came from."""
    consented = analytics_consented(con, "f.person_id")
    warnings: list[str] = []
    if segment_id:
        seed = _segment_seed(con, as_of, segment_id, consented)
        if seed.reason is None:
            return seed
        warnings.append(
            f"lookalike: seed segment {segment_id!r} not used ({seed.reason}); "
            f"the default seed ({default_seed_name(share)}) is used instead"
        )
    name = default_seed_name(share)
    if DEFAULT_SEED_COLUMN not in table_columns(con, "marts", "customer_scores"):
        _empty_seed(con)
        return Seed(
            name,
            "default",
            0,
            None,
            warnings,
            f"marts.customer_scores has no {DEFAULT_SEED_COLUMN}",
        )
    con.execute(
        f"""
        create or replace temp table {SEED_TABLE} as
        with valued as (
            select s.person_id, s.{ident(DEFAULT_SEED_COLUMN)} as value
            from marts.customer_scores as s
            join marts.customer_features as f on f.person_id = s.person_id
            where s.{ident(DEFAULT_SEED_COLUMN)} is not null and {consented}
        )
        select person_id from valued
        order by value desc, person_id
        limit (select cast(ceil(count(*) * $share) as bigint) from valued)
        """,
        {"share": share},
    )
    size = con.execute(f"select count(*) from {SEED_TABLE}").fetchall()[0][0]
    reason = None if size else f"no analytics-consented person has a value of {DEFAULT_SEED_COLUMN}"
    return Seed(name, "default", int(size), None, warnings, reason)


def _empty_seed(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"create or replace temp table {SEED_TABLE} (person_id varchar)")


def _segment_seed(
    con: duckdb.DuckDBPyConnection, as_of: date, segment_id: str, consented: str
) -> Seed:
    """The segment's published members (holdout included: they meet its condition) of the latest
    run on or before as_of; the previous run's, as this run builds its segments afterwards."""
    _empty_seed(con)
    if not table_columns(con, "marts", "segment_membership_history"):
        return Seed(segment_id, "segment", 0, reason="there is no segment history yet")
    runs = (
        "marts.segment_runs"
        if table_columns(con, "marts", "segment_runs")
        else "marts.segment_membership_history"
    )
    latest = con.execute(f"select max(as_of) from {runs} where as_of <= $as_of", {"as_of": as_of})
    latest = latest.fetchall()[0][0]
    if latest is None:
        return Seed(segment_id, "segment", 0, reason=f"no segment run on or before {as_of}")
    con.execute(
        f"""
        create or replace temp table {SEED_TABLE} as
        select distinct h.person_id
        from marts.segment_membership_history as h
        join marts.customer_features as f on f.person_id = h.person_id
        where h.segment_id = $segment and h.as_of = $latest and {consented}
        """,
        {"segment": segment_id, "latest": latest},
    )
    size = con.execute(f"select count(*) from {SEED_TABLE}").fetchall()[0][0]
    if not size:
        reason = (
            f"it had no published, analytics-consented member on the latest segment run ({latest})"
        )
        return Seed(segment_id, "segment", 0, latest, reason=reason)
    return Seed(segment_id, "segment", int(size), latest)


@dataclass
class _Fit:
    model: Pipeline | None
    features: list[str]
    metrics: dict
    warnings: list[str]


def _fit(con: duckdb.DuckDBPyConnection, features: list[str], seed: int) -> _Fit:
    consented = analytics_consented(con, "f.person_id")
    query = f"""
        select
            {feature_select(features, "f")},
            cast(sd.person_id is not null as integer) as label,
            cast(hash(f.person_id, $seed + 1) % $buckets < $keep as integer) as is_holdout
        from marts.customer_features as f
        left join {SEED_TABLE} as sd on sd.person_id = f.person_id
        where {consented}
        qualify row_number() over (
            partition by sd.person_id is not null order by hash(f.person_id, $seed), f.person_id
        ) <= case when sd.person_id is null then $max_rest else $max_seed end
        order by f.person_id
    """
    x, extra = read_matrix(
        con,
        query,
        {
            "seed": seed,
            "buckets": HOLDOUT_BUCKETS,
            "keep": HOLDOUT_KEEP,
            "max_rest": MAX_REST_ROWS,
            "max_seed": MAX_SEED_ROWS,
        },
        features,
        extra=("label", "is_holdout"),
    )
    y = extra["label"].astype(np.int8)
    holdout = extra["is_holdout"].astype(bool)
    warnings: list[str] = []
    empty = np.all(np.isnan(x), axis=0) if len(x) else np.ones(len(features), bool)
    dropped = [f for f, e in zip(features, empty, strict=True) if e]
    if dropped:
        warnings.append(f"lookalike: features null for every sampled person, left out: {dropped}")
        features = [f for f, e in zip(features, empty, strict=True) if not e]
        x = x[:, ~empty]
    metrics: dict = {
        "sample_seed_rows": int(y.sum()),
        "sample_rest_rows": int(len(y) - y.sum()),
        "features_left_out_as_null": dropped,
    }
    if not features:
        return _Fit(None, features, {**metrics, "reason": "every feature is null"}, warnings)

    train = ~holdout
    if len(np.unique(y[train])) == 2 and len(np.unique(y[holdout])) == 2:
        check = _classifier(seed).fit(
            x[train], y[train], model__sample_weight=_balanced_weights(y[train])
        )
        p = check.predict_proba(x[holdout])[:, 1]
        metrics.update(
            {
                "holdout_auc": round(float(roc_auc_score(y[holdout], p)), 5),
                "holdout_seed_rows": int(y[holdout].sum()),
                "holdout_rows": int(holdout.sum()),
            }
        )
    else:
        metrics["holdout_auc"] = None
        warnings.append("lookalike: the held-out part lacks seed or rest persons; no AUC")
    model = _classifier(seed).fit(x, y, model__sample_weight=_balanced_weights(y))
    metrics["feature_weights"] = _importances(model, features)
    return _Fit(model, features, metrics, warnings)


def _write(con: duckdb.DuckDBPyConnection, scores: pa.Table, seed_name: str, as_of: date) -> None:
    select_sql = f"""
        with ranked as (
            select
                person_id,
                lookalike_score,
                cast(row_number() over (order by lookalike_score desc, person_id) - 1 as double)
                    / count(*) over () as lookalike_rank_pct
            from _ml_arrow_input
        )
        select
            f.person_id,
            cast($seed_segment as varchar) as seed_segment,
            r.lookalike_score,
            r.lookalike_rank_pct,
            sd.person_id is not null as is_lookalike_seed,
            cast($as_of as date) as as_of
        from marts.customer_features as f
        left join ranked as r on r.person_id = f.person_id
        left join {SEED_TABLE} as sd on sd.person_id = f.person_id
        order by f.person_id
    """
    replace_table_from_arrow(
        con, TABLE, scores, select_sql, {"seed_segment": seed_name, "as_of": as_of}
    )


def _fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    seed_rows = con.execute(
        f"select count(*), bit_xor(hash(person_id)) from {SEED_TABLE}"
    ).fetchall()[0]
    return f"{data_fingerprint(con)}:{seed_rows}"


def score_lookalikes(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    seed_segment: str | None = None,
    seed: int = 42,
    seed_share: float = DEFAULT_SEED_SHARE,
    version: str | None = None,
    skip_known_versions: bool = False,
    model_dir: str | None = None,
) -> dict:
    """Write marts.lookalike_scores (one row per person of customer_features, replaced) and one
    ml.model_runs row (with `model_dir`, the fitted model saved there as its artifact). A seed
    too small, or no one else to score, leaves every score NULL and
    records the run as skipped with its reason. Returns the metrics, with `warnings`."""
    columns = table_columns(con, "marts", "customer_features")
    if "person_id" not in columns:
        raise ValueError("marts.customer_features is missing or has no person_id column")
    con.execute("create schema if not exists marts")
    con.execute("create schema if not exists ml")
    features = numeric_features(columns)
    chosen = choose_seed(con, as_of, seed_segment, seed_share)
    warnings = list(chosen.warnings)
    consented = analytics_consented(con, "f.person_id")
    rest = con.execute(
        f"select count(*) from marts.customer_features as f where {consented} "
        f"and f.person_id not in (select person_id from {SEED_TABLE})"
    ).fetchall()[0][0]
    params = {
        "estimator": "LogisticRegression (C=1, balanced seed vs rest) on log counts",
        "seed": seed,
        "seed_segment": chosen.name,
        "seed_source": chosen.source,
        "seed_run": chosen.as_of,
        "seed_share": seed_share if chosen.source == "default" else None,
        "max_seed_rows": MAX_SEED_ROWS,
        "max_rest_rows": MAX_REST_ROWS,
        "inputs_left_out": "marts.customer_scores (model outputs; the default seed's column)",
    }
    metrics: dict = {"seed_size": chosen.size, "scored_persons": 0, "rest_persons": int(rest)}
    reason = chosen.reason
    if reason is None and chosen.size < MIN_SEED:
        reason = f"the seed has {chosen.size} persons (need {MIN_SEED})"
    if reason is None and rest < MIN_REST:
        reason = f"{rest} analytics-consented persons outside the seed (need {MIN_REST})"
    if reason is None and not features:
        reason = "customer_features has no numeric feature"

    ids: list[pa.Array] = []
    scores: list[np.ndarray] = []
    used = features
    fitted = None
    threads = 1 if rest + chosen.size < SINGLE_THREAD_BELOW else None
    if reason is None:
        with threadpool_limits(limits=threads):
            fit = _fit(con, features, seed)
        warnings += fit.warnings
        metrics.update(fit.metrics)
        used = fit.features
        if fit.model is None:
            reason = fit.metrics.get("reason") or "the model could not be fitted"
        else:
            fitted = fit.model
            query = (
                f"select f.person_id, {feature_select(used, 'f')} "
                f"from marts.customer_features as f where {consented} "
                f"and f.person_id not in (select person_id from {SEED_TABLE}) order by f.person_id"
            )
            with threadpool_limits(limits=threads):
                for batch, x in read_matrix_batches(con, query, None, used, SCORE_BATCH_ROWS):
                    ids.append(batch.column("person_id"))
                    scores.append(fit.model.predict_proba(x)[:, 1].astype(np.float64))
    if reason is not None:
        metrics.update({"status": registry.SKIPPED, "reason": reason})
        warnings.append(f"lookalike: not scored ({reason}); lookalike_score is NULL")
    else:
        metrics["status"] = registry.TRAINED
    table = pa.table(
        {
            "person_id": pa.chunked_array(ids, type=pa.string()),
            "lookalike_score": pa.array(
                np.concatenate(scores) if scores else np.empty(0), type=pa.float64()
            ),
        }
    )
    metrics["scored_persons"] = table.num_rows
    metrics["tier_sizes"] = {f"{round(t * 100)}pct": math.ceil(t * table.num_rows) for t in TIERS}
    _write(con, table, chosen.name, as_of)
    del table, ids, scores

    params_json, features_json = to_json(params), to_json(used)
    run_version = version or (
        f"{as_of.isoformat()}-s{seed}-"
        + hashlib.sha1((params_json + features_json + _fingerprint(con)).encode()).hexdigest()[:8]
    )
    artifact = None
    if model_dir and fitted is not None:
        artifact = registry.save_artifact(model_dir, MODEL_NAME, run_version, fitted)
    row = registry.run_row(
        MODEL_NAME, run_version, as_of, params_json, to_json(metrics), features_json, None, artifact
    )
    metrics["model_runs_appended"] = registry.append_model_runs(con, [row], skip_known_versions)
    con.execute(f"drop table if exists {SEED_TABLE}")
    return {
        **metrics,
        "seed_segment": chosen.name,
        "seed_source": chosen.source,
        "warnings": warnings,
    }
