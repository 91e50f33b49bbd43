"""One matching run (`match_records`): prepare the input, reuse, train or fall back to a model,
choose the prediction blocking rules, predict, write the edges, and record in `ml.model_runs`
what happened (trained, fallback or skipped, and why)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb

from ml.matching.edges import _write_edges, create_edges_table
from ml.matching.inputs import SCRATCH_SCHEMA, SOURCE_TABLE, _source_exists, prepare_input
from ml.matching.model import COMPARISON_COLUMNS, _linker, choose_blocking_rules, settings_hash
from ml.matching.training import (
    MODEL_NAME,
    STATUS_FALLBACK,
    STATUS_SKIPPED,
    STATUS_TRAINED,
    _drop_splink_tables,
    _fallback_model,
    _training_failure,
    _without_timings,
    append_model_run,
    load_stored_model,
    train_model,
    untrainable_reason,
)


@dataclass
class MatchResult:
    """What one matching run did, for asset metadata and ml.model_runs."""

    records: int = 0
    edges: int = 0
    trained: bool = False
    model_version: str | None = None
    threshold: float = 0.95
    timings: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    comparisons_scored: int = 0
    blocking: list[dict[str, Any]] = field(default_factory=list)
    status: str = ""  # trained, reused, fallback or skipped
    reason: str = ""

    def as_metadata(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "edges": self.edges,
            "trained": self.trained,
            "model_version": self.model_version,
            "status": self.status,
            "reason": self.reason,
            "threshold": self.threshold,
            "comparisons_scored": self.comparisons_scored,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "training": self.training,
            "blocking": self.blocking,
            "warnings": self.warnings,
        }


def _record_status(
    con: duckdb.DuckDBPyConnection,
    result: MatchResult,
    status: str,
    reason: str,
    as_of: date | None,
    wanted: str,
    model: dict[str, Any] | None,
) -> None:
    """A row in ml.model_runs saying this run did not train, and why; named by what happened, so
    a re-run on the same data records nothing new."""
    metrics = {
        "status": status,
        "reason": reason,
        "settings_hash": wanted,
        "records": result.records,
        "model_used": result.model_version,
    }
    digest = hashlib.sha1(json.dumps(metrics, sort_keys=True).encode()).hexdigest()[:8]
    append_model_run(
        con,
        MODEL_NAME,
        f"{wanted[:12]}.{status}.{digest}",
        as_of,
        model or {},
        metrics,
        list(COMPARISON_COLUMNS),
        skip_known_version=True,
    )
    result.status, result.reason = status, reason


def match_records(
    con: duckdb.DuckDBPyConnection,
    *,
    threshold: float = 0.95,
    retrain: bool = False,
    seed: int = 42,
    as_of: date | None = None,
    source_table: str = SOURCE_TABLE,
    scratch_schema: str = SCRATCH_SCHEMA,
    max_pairs_u: float = 5e6,
    min_records_to_train: int = 50,
) -> MatchResult:
    """Score CRM record pairs and write `intermediate.identity_match_edges` (pairs with
    match_probability >= threshold, with per-comparison levels and evidence).

    The model is the stored one of these settings unless `retrain`; else trained on this data.
    When the data cannot train it (too few records or pairs, or Splink's EM fails), the run
    falls back to the last trained model of these settings, else to the starting parameters,
    warns, and records a `fallback` row in ml.model_runs (`metrics`: status and reason). Fewer
    than two records: nothing to match, a `skipped` row."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold}")
    result = MatchResult(threshold=threshold)
    t0 = time.perf_counter()
    wanted = settings_hash()
    if not _source_exists(con, source_table):
        create_edges_table(con)
        reason = f"no CRM records ({source_table} does not exist)"
        result.warnings.append(f"matching skipped: {reason}")
        _record_status(con, result, STATUS_SKIPPED, reason, as_of, wanted, None)
        return result
    result.records = prepare_input(con, source_table, scratch_schema)
    result.timings["prepare"] = time.perf_counter() - t0
    try:
        if result.records < 2:
            create_edges_table(con)
            reason = f"{result.records} CRM record(s): fewer than two, nothing to match"
            result.warnings.append(f"matching skipped: {reason}")
            _record_status(con, result, STATUS_SKIPPED, reason, as_of, wanted, None)
            return result
        stored = None if retrain else load_stored_model(con, wanted)
        model: dict[str, Any] | None = None
        if stored is not None:
            result.model_version, model = stored
            result.status = "reused"
        else:
            reason = untrainable_reason(con, scratch_schema, result.records, min_records_to_train)
            if reason is None:
                t1 = time.perf_counter()
                try:
                    model, training = train_model(
                        con, seed=seed, max_pairs_u=max_pairs_u, scratch_schema=scratch_schema
                    )
                except Exception as exc:  # noqa: BLE001 - only Splink's training failures
                    reason = _training_failure(exc)
                    _drop_splink_tables(con, scratch_schema)
            if reason is None:
                result.timings["train"] = time.perf_counter() - t1
                # Stored without Splink's random linker id and without timings (those go to the
                # asset's metadata), and named by settings and trained parameters, not the
                # clock: the same data trains the same model, and a resumed run records the same
                # row.
                model.pop("linker_uid", None)
                fitted = hashlib.sha1(json.dumps(model, sort_keys=True, default=str).encode())
                result.model_version = f"{wanted[:12]}.{fitted.hexdigest()[:8]}"
                result.trained = True
                result.status = STATUS_TRAINED
                result.training = {
                    **training,
                    "status": STATUS_TRAINED,
                    "settings_hash": wanted,
                    "records": result.records,
                }
                append_model_run(
                    con,
                    MODEL_NAME,
                    result.model_version,
                    as_of,
                    model,
                    _without_timings(result.training),
                    list(COMPARISON_COLUMNS),
                    skip_known_version=True,
                )
            else:
                model, result.model_version, used = _fallback_model(con, wanted)
                result.warnings.append(f"matching not trained: {reason}; scored with {used}")
                _record_status(con, result, STATUS_FALLBACK, reason, as_of, wanted, None)
        t2 = time.perf_counter()
        rules, result.blocking = choose_blocking_rules(
            con, f"{scratch_schema}.match_input", result.records
        )
        model = {
            **model,
            "blocking_rules_to_generate_predictions": [
                {"blocking_rule": rule, "sql_dialect": "duckdb"} for rule in rules
            ],
        }
        linker = _linker(con, model, scratch_schema)
        predictions = linker.inference.predict(
            threshold_match_probability=threshold, warning_mode="never"
        )
        result.timings["predict"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        result.edges = _write_edges(
            con, f"{scratch_schema}.{predictions.physical_name}", model, result.model_version
        )
        result.timings["write"] = time.perf_counter() - t3
        return result
    finally:
        # Splink's DuckDBAPI set the connection's default schema to the scratch one
        con.execute("set schema 'main'")
        con.execute(f"drop schema if exists {scratch_schema} cascade")
        result.timings["total"] = time.perf_counter() - t0
