"""`ml.model_runs`: one row per model run, shared by every model (matching, clusters, propensity,
identity evaluation).

Each trained run's model object is saved as an artifact (joblib) under the model folder,
`<model_dir>/<model_name>/<version>.joblib`, and its path is stored with the run: a later run can
score with a pinned version (`load_artifact`) and the clusters keep their ids by matching the
previous run's centroids (`latest_artifact`).

A run is `trained`, `fallback` (earlier or starting parameters used, the data could not train)
or `skipped` (nothing computed); anything but `trained` carries its `reason`. Rows are append-only;
a (model_name, version) already stored is not appended again when asked, so a re-run on the same
data records nothing new.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import joblib

TABLE = "ml.model_runs"
TRAINED, FALLBACK, SKIPPED = "trained", "fallback", "skipped"
STATUSES = (TRAINED, FALLBACK, SKIPPED)
COLUMNS = (
    "model_name",
    "version",
    "as_of",
    "trained_at",
    "params",
    "metrics",
    "features",
    "status",
    "reason",
    "artifact",
)
_DDL = (
    "create table if not exists ml.model_runs (model_name varchar, version varchar, "
    "as_of date, trained_at timestamp, params varchar, metrics varchar, features varchar, "
    "status varchar, reason varchar, artifact varchar)"
)


def ensure_model_runs(con: duckdb.DuckDBPyConnection) -> None:
    """Create the table, or add `status` and `reason` to one written before they existed (filled
    from the metrics JSON, where earlier runs kept them)."""
    con.execute("create schema if not exists ml")
    con.execute(_DDL)
    present = {
        name
        for (name,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'ml' and table_name = 'model_runs'"
        ).fetchall()
    }
    if "artifact" not in present:
        con.execute("alter table ml.model_runs add column if not exists artifact varchar")
    if {"status", "reason"} <= present:
        return
    con.execute("alter table ml.model_runs add column if not exists status varchar")
    con.execute("alter table ml.model_runs add column if not exists reason varchar")
    con.execute(
        """
        update ml.model_runs set
            status = case coalesce(json_extract_string(metrics, '$.status'), 'trained')
                when 'trained' then 'trained'
                when 'fallback' then 'fallback'
                else 'skipped' end,
            reason = case
                when coalesce(json_extract_string(metrics, '$.status'), 'trained') <> 'trained'
                    then coalesce(
                        json_extract_string(metrics, '$.reason'),
                        'recorded before reasons were kept (status '
                        || json_extract_string(metrics, '$.status') || ')'
                    )
            end
        """
    )


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def run_row(
    model_name: str,
    version: str,
    as_of: date | None,
    params: dict[str, Any] | str,
    metrics: dict[str, Any] | str,
    features: Sequence[str] | str,
    trained_at: datetime | None = None,
    artifact: str | Path | None = None,
) -> tuple:
    """One row in column order; status and reason come from `metrics` (default `trained`)."""
    parsed = json.loads(metrics) if isinstance(metrics, str) else metrics
    status = parsed.get("status", TRAINED)
    if status not in STATUSES:
        raise ValueError(f"{model_name}: status {status!r} is not one of {STATUSES}")
    reason = parsed.get("reason")
    if status != TRAINED and not reason:
        raise ValueError(f"{model_name}: a {status} run needs a reason")
    return (
        model_name,
        version,
        as_of,
        trained_at or datetime.now(UTC).replace(tzinfo=None),
        params if isinstance(params, str) else _json(params),
        metrics if isinstance(metrics, str) else _json(metrics),
        features if isinstance(features, str) else json.dumps(list(features)),
        status,
        reason,
        str(artifact) if artifact else None,
    )


def append_model_runs(
    con: duckdb.DuckDBPyConnection, rows: Sequence[tuple], skip_known_versions: bool = False
) -> int:
    """Insert rows made by `run_row` in one transaction; with skip_known_versions a row whose
    (model_name, version) is already stored is left out. Returns rows inserted."""
    ensure_model_runs(con)
    if skip_known_versions and rows:
        known = set(
            con.execute(
                "select model_name, version from ml.model_runs "
                "where model_name in (select unnest($names))",
                {"names": sorted({r[0] for r in rows})},
            ).fetchall()
        )
        rows = [r for r in rows if (r[0], r[1]) not in known]
    if not rows:
        return 0
    placeholders = ", ".join("?" for _ in COLUMNS)
    con.execute("begin transaction")
    try:
        con.executemany(
            f"insert into ml.model_runs ({', '.join(COLUMNS)}) values ({placeholders})", rows
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return len(rows)


def latest_trained(
    con: duckdb.DuckDBPyConnection, model_name: str, metric_key: str, metric_value: str
) -> tuple[str, str] | None:
    """(version, params) of the latest trained run of `model_name` whose metrics hold
    `metric_key` = `metric_value` (e.g. the settings hash it was trained with), or None."""
    ensure_model_runs(con)
    row = con.execute(
        "select version, params from ml.model_runs where model_name = ? and status = 'trained' "
        "and json_extract_string(metrics, '$.' || ?) = ? order by trained_at desc limit 1",
        [model_name, metric_key, metric_value],
    ).fetchall()
    return (row[0][0], row[0][1]) if row else None


class ArtifactError(RuntimeError):
    """A pinned or previous model version whose artifact cannot be loaded."""


def artifact_path(model_dir: str | Path, model_name: str, version: str) -> Path:
    return Path(model_dir) / model_name / f"{version}.joblib"


def save_artifact(model_dir: str | Path, model_name: str, version: str, model: Any) -> Path:
    """Write the model object (kept if that version is already saved: versions are immutable)."""
    path = artifact_path(model_dir, model_name, version)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        joblib.dump(model, tmp, compress=3)
        tmp.replace(path)
    return path


def load_artifact(con: duckdb.DuckDBPyConnection, model_name: str, version: str) -> Any:
    """The model object of a registered trained version; ArtifactError naming the version and
    what is missing otherwise."""
    ensure_model_runs(con)
    row = con.execute(
        "select artifact, status from ml.model_runs where model_name = ? and version = ? "
        "order by trained_at desc limit 1",
        [model_name, version],
    ).fetchall()
    if not row:
        known = [
            v
            for (v,) in con.execute(
                "select version from ml.model_runs where model_name = ? and status = 'trained' "
                "and artifact is not null order by trained_at desc limit 5",
                [model_name],
            ).fetchall()
        ]
        raise ArtifactError(
            f"{model_name} version {version!r} is not registered in ml.model_runs "
            f"(latest trained versions: {known or 'none'})"
        )
    path, status = row[0]
    if status != TRAINED or not path:
        raise ArtifactError(f"{model_name} version {version!r} was {status}: no model to load")
    if not Path(path).exists():
        raise ArtifactError(f"{model_name} version {version!r}: artifact {path} is missing")
    return joblib.load(path)


def latest_artifact(
    con: duckdb.DuckDBPyConnection, model_name: str, before: str | None = None
) -> tuple[str, Any] | None:
    """(version, model) of the latest trained run of `model_name` with a loadable artifact
    (other than version `before`), or None."""
    ensure_model_runs(con)
    rows = con.execute(
        "select version, artifact from ml.model_runs where model_name = ? and status = 'trained' "
        "and artifact is not null and version is distinct from ? order by trained_at desc limit 1",
        [model_name, before],
    ).fetchall()
    if not rows or not Path(rows[0][1]).exists():
        return None
    try:
        return rows[0][0], joblib.load(rows[0][1])
    except Exception:  # noqa: BLE001 (an unreadable old artifact means no previous model)
        return None
