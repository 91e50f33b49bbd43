"""Identity resolution judged against ground truth: pairwise and cluster metrics in SQL.

Pairwise: every pair of records in one true person is a true pair; every pair in one predicted
person a predicted pair; pairs in both are true positives. Counted per cluster with n*(n-1)/2 and
per (true, predicted) group, so no pair is ever materialised. Pure Python: never imports dagster.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

TRUTH_COLUMNS = ("source_system", "source_key", "true_person_id")
# Scopes the metrics are computed over: which records of the identity map count.
SCOPES = {
    "crm": "truth.source_system not in ('pos', 'web')",
    "all_identified": "predicted.person_id is not null",
}


def load_truth(con: duckdb.DuckDBPyConnection, path: str | Path, table: str) -> int:
    """Load `_truth/identity.csv` into `table` (a code-chosen temp table name); row count."""
    _check_table(table)
    path = Path(path)
    with open(path, newline="") as handle:
        header = next(csv.reader(handle), [])
    missing = [c for c in TRUTH_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    con.execute(
        f"create or replace temp table {table} as "
        "select source_system::varchar as source_system, source_key::varchar as source_key, "
        "true_person_id::varchar as true_person_id "
        "from read_csv(?, header = true, all_varchar = true)",
        [str(path)],
    )
    return int(con.execute(f"select count(*) from {table}").fetchall()[0][0])


def _check_table(name: str) -> None:
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(p.isidentifier() for p in parts):
        raise ValueError(f"not a plain (schema.)table identifier: {name!r}")


def evaluate(
    con: duckdb.DuckDBPyConnection,
    predicted: str,
    truth: str,
    scope: str = "crm",
) -> dict[str, Any]:
    """Metrics of `predicted` (source_system, source_key, person_id) against `truth`
    (source_system, source_key, true_person_id) over the records of `scope` (see SCOPES).

    A record whose predicted person_id is null counts as its own singleton person."""
    _check_table(predicted)
    _check_table(truth)
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; one of {sorted(SCOPES)}")
    row = con.execute(
        f"""
        with
        records as (
            select
                truth.true_person_id,
                coalesce(
                    predicted.person_id, 'single:' || truth.source_system || ':' || truth.source_key
                ) as predicted_person_id
            from {truth} as truth
            inner join {predicted} as predicted
                on truth.source_system = predicted.source_system
                and truth.source_key = predicted.source_key
            where {SCOPES[scope]}
        ),
        true_sizes as (
            select true_person_id, count(*) as n from records group by all
        ),
        predicted_sizes as (
            select predicted_person_id, count(*) as n from records group by all
        ),
        pair_groups as (
            select true_person_id, predicted_person_id, count(*) as n from records group by all
        ),
        true_spread as (
            select true_person_id, count(*) as n_predicted, max(n) as largest
            from pair_groups group by all
        ),
        predicted_spread as (
            select predicted_person_id, count(*) as n_true from pair_groups group by all
        ),
        exact as (
            -- a true person recovered exactly: all its records in one predicted person, alone
            select count(*) as n
            from pair_groups
            inner join true_sizes using (true_person_id)
            inner join predicted_sizes using (predicted_person_id)
            where pair_groups.n = true_sizes.n and pair_groups.n = predicted_sizes.n
        )
        select
            (select count(*) from records),
            (select count(*) from true_sizes),
            (select count(*) from predicted_sizes),
            (select coalesce(sum(n * (n - 1) / 2), 0) from true_sizes),
            (select coalesce(sum(n * (n - 1) / 2), 0) from predicted_sizes),
            (select coalesce(sum(n * (n - 1) / 2), 0) from pair_groups),
            (select n from exact),
            (select count(*) from true_spread where n_predicted > 1),
            (select count(*) from predicted_spread where n_true > 1)
        """
    ).fetchall()[0]
    records, n_true, n_pred, true_pairs, pred_pairs, tp, exact, split, merged = (
        int(v or 0) for v in row
    )
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "scope": scope,
        "records": records,
        "true_persons": n_true,
        "predicted_persons": n_pred,
        "true_pairs": true_pairs,
        "predicted_pairs": pred_pairs,
        "true_positive_pairs": tp,
        "pairwise_precision": round(precision, 6),
        "pairwise_recall": round(recall, 6),
        "pairwise_f1": round(f1, 6),
        "persons_exactly_recovered": exact,
        "share_exactly_recovered": round(exact / n_true, 6) if n_true else 1.0,
        "true_persons_split": split,
        "predicted_persons_merged": merged,
    }


EVALUATION_TABLE = "ml.identity_evaluation"
RUN_MODEL_NAME = "identity_resolution"


def evaluate_identity_map(
    con: duckdb.DuckDBPyConnection,
    truth_path: str | Path,
    as_of: date | None,
    predicted: str = "marts.identity_map",
) -> dict[str, Any]:
    """Evaluate `predicted` against the truth file when it exists: replace
    `ml.identity_evaluation` (one row per scope) and append an `ml.model_runs` row. Without a
    truth file the table is emptied and nothing is recorded."""
    from ml.matching import append_model_run

    con.execute("create schema if not exists ml")
    con.execute(
        f"create or replace table {EVALUATION_TABLE} (as_of date, scope varchar, "
        "pairwise_precision double, pairwise_recall double, pairwise_f1 double, metrics varchar)"
    )
    truth_path = Path(truth_path)
    if not truth_path.is_file():
        return {"truth_present": False, "note": "no ground truth", "scopes": {}}
    load_truth(con, truth_path, "identity_truth")
    scopes = {scope: evaluate(con, predicted, "identity_truth", scope) for scope in SCOPES}
    con.execute("drop table if exists identity_truth")
    con.executemany(
        f"insert into {EVALUATION_TABLE} values (?, ?, ?, ?, ?, ?)",
        [
            (as_of, scope, m["pairwise_precision"], m["pairwise_recall"], m["pairwise_f1"],
             json.dumps(m))
            for scope, m in scopes.items()
        ],
    )  # fmt: skip
    versions = (
        con.execute(
            "select distinct model_version from intermediate.identity_match_edges "
            "where model_version is not null"
        ).fetchall()
        if _exists(con, "intermediate", "identity_match_edges")
        else []
    )
    parameters = (
        dict(con.execute("select name, value from intermediate.identity_parameters").fetchall())
        if _exists(con, "intermediate", "identity_parameters")
        else {}
    )
    # The version names the matching models and what was measured, so an unchanged re-run
    # finds its row and appends nothing.
    measured = hashlib.sha1(json.dumps([str(as_of), scopes], sort_keys=True, default=str).encode())
    append_model_run(
        con,
        RUN_MODEL_NAME,
        (",".join(sorted(v[0] for v in versions)) or "exact-only") + "-" + measured.hexdigest()[:8],
        as_of,
        {"matching_model_versions": [v[0] for v in versions], "parameters": parameters},
        scopes,
        list(SCOPES),
        skip_known_version=True,
    )
    return {"truth_present": True, "note": f"evaluated against {truth_path.name}",
            "scopes": scopes}  # fmt: skip


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select 1 from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    )


def latest_evaluation(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]] | None:
    """Metrics per scope from the last evaluation, or None when it had no ground truth."""
    if not _exists(con, "ml", "identity_evaluation"):
        return None
    rows = con.execute(f"select scope, metrics from {EVALUATION_TABLE}").fetchall()
    return {scope: json.loads(metrics) for scope, metrics in rows} or None
