"""Getting a model for a run: unsupervised training (prior, u by random sampling, m by EM under
the EM floor), why data cannot train, Splink's training failures, the fallback model when it
cannot, and the trained models stored in `ml.model_runs` (thin wrappers over `ml.registry`)."""

from __future__ import annotations

import json
import time
from datetime import date
from typing import Any

import duckdb

from ml import registry
from ml.matching.em_floor import _em_probability_floor
from ml.matching.inputs import SCRATCH_SCHEMA, _check_identifier
from ml.matching.model import (
    PRIOR_RULES,
    PRIOR_RULES_RECALL,
    TRAINING_BLOCKING_KEYS,
    TRAINING_BLOCKING_RULES,
    _level_labels,
    _linker,
    rule_comparisons,
    settings_dict,
)

MODEL_NAME = "identity_matching"

# Too little data to train: an EM session needs pairs that look like matches and pairs that do
# not. A session whose blocking rule yields fewer pairs than this is not run on this data.
MIN_PAIRS_PER_EM_SESSION = 10
STATUS_TRAINED, STATUS_FALLBACK, STATUS_SKIPPED = (
    registry.TRAINED,
    registry.FALLBACK,
    registry.SKIPPED,
)


def train_model(
    con: duckdb.DuckDBPyConnection,
    *,
    seed: int = 42,
    max_pairs_u: float = 5e6,
    em_max_pairs: float | None = 2e6,
    scratch_schema: str = SCRATCH_SCHEMA,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Unsupervised training on `<scratch>.match_input`: prior from certain-match rules, u by
    random sampling, m by EM. Returns (model JSON, training metrics)."""
    linker = _linker(con, settings_dict(), scratch_schema)
    training = linker.training
    metrics: dict[str, Any] = {"em_sessions": []}
    started = time.perf_counter()
    training.estimate_probability_two_random_records_match(
        list(PRIOR_RULES), recall=PRIOR_RULES_RECALL
    )
    training.estimate_u_using_random_sampling(max_pairs=max_pairs_u, seed=seed)
    metrics["u_seconds"] = round(time.perf_counter() - started, 2)
    labels = _level_labels()
    for rule in TRAINING_BLOCKING_RULES:
        t0 = time.perf_counter()
        with _em_probability_floor() as raised:
            session = training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True, max_pairs=em_max_pairs
            )
        history = getattr(session, "_lambda_history_records", None) or []
        metrics["em_sessions"].append(
            {
                "blocking_rule": rule,
                "iterations": len(history),
                # m shares at the floor after the last iteration: no pair at that level looked
                # like a match (u is fixed from random sampling, its floor is moot)
                "levels_at_floor": [
                    f"{c}: {labels.get((c, v), v)}" for c, v, kind in raised if kind == "m"
                ],
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    # A level no session could estimate keeps its starting m (Splink keeps the value it was given)
    model = linker.misc.save_model_to_json()
    metrics["probability_two_random_records_match"] = model.get(
        "probability_two_random_records_match"
    )
    _drop_splink_tables(con, scratch_schema)
    return model, metrics


def _drop_splink_tables(con: duckdb.DuckDBPyConnection, scratch_schema: str) -> None:
    """Drop Splink's own cache tables from the scratch schema, keeping our inputs."""
    rows = con.execute(
        "select table_name, table_type from information_schema.tables "
        "where table_schema = ? and table_name like '\\_\\_splink%' escape '\\'",
        [scratch_schema],
    ).fetchall()
    for name, kind in rows:
        _check_identifier(name)
        keyword = "view" if kind == "VIEW" else "table"
        con.execute(f'drop {keyword} if exists {scratch_schema}."{name}"')


def _without_timings(value: Any) -> Any:
    """A copy of nested metrics without wall-clock fields, which differ from run to run."""
    if isinstance(value, dict):
        return {
            k: _without_timings(v)
            for k, v in value.items()
            if k not in ("seconds", "train_seconds") and not k.endswith("_seconds")
        }
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def append_model_run(
    con: duckdb.DuckDBPyConnection,
    model_name: str,
    version: str,
    as_of: date | None,
    params: dict[str, Any],
    metrics: dict[str, Any],
    features: list[str],
    skip_known_version: bool = False,
) -> None:
    """One ml.model_runs row (status and reason from `metrics`); with skip_known_version the
    same model on the same data records nothing new."""
    row = registry.run_row(model_name, version, as_of, params, metrics, features)
    registry.append_model_runs(con, [row], skip_known_versions=skip_known_version)


def load_stored_model(
    con: duckdb.DuckDBPyConnection, wanted_hash: str
) -> tuple[str, dict[str, Any]] | None:
    """The latest stored model trained with these settings: (version, model JSON), or None."""
    stored = registry.latest_trained(con, MODEL_NAME, "settings_hash", wanted_hash)
    return None if stored is None else (stored[0], json.loads(stored[1]))


def untrainable_reason(
    con: duckdb.DuckDBPyConnection,
    scratch_schema: str,
    records: int,
    min_records_to_train: int,
) -> str | None:
    """Why this data cannot train the model (too few records, or an EM session's blocking rule
    yields too few pairs), or None when it can."""
    if records < min_records_to_train:
        return f"{records} CRM records, fewer than the {min_records_to_train} needed to train"
    table = f"{scratch_schema}.match_input"
    for rule, keys in zip(TRAINING_BLOCKING_RULES, TRAINING_BLOCKING_KEYS, strict=True):
        pairs = rule_comparisons(con, table, keys)
        if pairs < MIN_PAIRS_PER_EM_SESSION:
            return (
                f"EM session blocked on {rule!r} has {pairs} record pairs, fewer than the "
                f"{MIN_PAIRS_PER_EM_SESSION} needed to train"
            )
    return None


def _fallback_model(con: duckdb.DuckDBPyConnection, wanted: str) -> tuple[dict[str, Any], str, str]:
    """The model to score with when this run cannot train: the latest trained model of these
    settings in ml.model_runs, else the documented starting parameters (`settings_dict`).
    Returns (model, version scored with, what it is)."""
    stored = load_stored_model(con, wanted)
    if stored is not None:
        version, model = stored
        return model, version, f"the last trained model ({version})"
    return settings_dict(), f"{wanted[:12]}.untrained", "the documented starting parameters"


def _training_failure(exc: Exception) -> str:
    """The reason to record when Splink's training fails on this data; re-raises anything else."""
    from splink.internals.exceptions import EMTrainingException

    if isinstance(exc, EMTrainingException):
        return f"Splink's EM training failed on this data: {str(exc).strip()[:300]}"
    if isinstance(exc, ValueError) and "below the minimum allowed" in str(exc):
        # Splink 5.0 rejects an m/u estimate below 1e-300; the EM floor prevents the one way we
        # know EM gets there, but should another, this run still completes
        return "Splink's EM training failed (an m/u estimate underflowed below 1e-300)"
    raise exc
