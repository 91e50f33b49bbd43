"""Resources built in one place from the settings."""

import fcntl
import functools
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO

import dagster as dg
import duckdb
from dagster_dbt import DbtCliResource
from packaging import version
from pydantic import PrivateAttr

from orchestration.settings import DBT_PROJECT_DIR, Settings, load_settings
from warehouse import audit
from warehouse.connection import configure_connection
from warehouse.sources import LandingGates

LOCK_WAIT_S = 60.0  # default wait for another writer (MICROSEG_LOCK_WAIT_S)


class WarehouseBusyError(RuntimeError):
    """Another run holds the warehouse: never two writers."""


class WarehouseLock:
    """An exclusive flock on `<warehouse>.lock`, held for a whole run.

    Re-entrant within one process (the CLI takes it, then the run's resource takes it again);
    the kernel drops it when the holder dies, so a killed run never leaves a stale lock.
    """

    _held: dict[str, tuple[IO[str], int]] = {}
    _guard = threading.Lock()

    def __init__(self, warehouse: str | Path, wait_s: float = 0.0):
        warehouse = Path(warehouse)
        self.path = warehouse.with_name(warehouse.name + ".lock")
        self.wait_s = wait_s

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown holder"
        except OSError:
            return "unknown holder"

    def acquire(self) -> None:
        key = str(self.path)
        with self._guard:
            if key in self._held:
                handle, count = self._held[key]
                self._held[key] = (handle, count + 1)
                return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held until release()
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    waited = f" after waiting {self.wait_s:.0f}s" if self.wait_s else ""
                    raise WarehouseBusyError(
                        f"another run holds the warehouse lock {self.path} "
                        f"({self.holder()}){waited}; wait for it to finish"
                    ) from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}\n")
        handle.flush()
        with self._guard:
            self._held[key] = (handle, 1)

    def release(self) -> None:
        key = str(self.path)
        with self._guard:
            handle, count = self._held[key]
            if count > 1:
                self._held[key] = (handle, count - 1)
                return
            del self._held[key]
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

    def __enter__(self) -> "WarehouseLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse: one file, one writer; connections are short-lived and configured."""

    path: str
    landing_dir: str
    hmac_key: str
    phone_region: str = "US"
    as_of: str | None = None
    holdout_share: float = 0.1
    min_segment_size: int = 50
    segments_dir: str = "segments"
    segment_size_tolerance: float = 0.5
    clv_time_unit: str = "weeks"
    propensity_min_auc: float = 0.6
    cluster_min_events: int = 5
    lookalike_seed: str = ""
    model_dir: str = "data/models"
    model_versions: dict[str, str] = {}
    platform_min_audience: dict[str, int] = {}
    volume_tolerance: float = 0.5
    freshness_days: int = 3
    gx_sample_rows: int = 200_000
    seed: int = 42
    retention_days: int = 730
    identity_match_threshold: float = 0.95
    identity_max_cluster_size: int = 50
    identity_max_values_per_type: int = 5
    identity_retrain: bool = False
    identity_blocklist: list[str] = []
    identity_overrides: str | None = None
    run_lock_wait_s: float = LOCK_WAIT_S
    max_segment_share: float = 0.95
    # landing gates per source (LandingGates fields); a source not listed keeps the default
    rejected_file_policy: dict[str, str] = {}
    schema_drift_policy: dict[str, str] = {}
    quarantine_warn_share: dict[str, float] = {}
    quarantine_error_share: dict[str, float] = {}
    gate_min_rows: dict[str, int] = {}
    _lock_wait_s: float = PrivateAttr(default=30.0)
    _run_lock: WarehouseLock | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every run that writes the warehouse (CLI, UI, schedule) holds the lock for its whole
        # life: a second writer waits run_lock_wait_s, then fails naming the lock.
        self._run_lock = WarehouseLock(self.path, self.run_lock_wait_s)
        self._run_lock.acquire()
        self._audit_run(context, "started")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._run_lock is not None:
            self._audit_run(context, "finished")
            self._run_lock.release()
            self._run_lock = None

    def _audit_run(self, context: dg.InitResourceContext, event: str) -> None:
        # Every run that touches the warehouse is in the audit log, whatever its outcome.
        with self.connect() as con:
            audit.record(con, "run", subject=event, detail={"event": event}, run_id=context.run_id)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + self._lock_wait_s
        while True:
            try:
                con = duckdb.connect(self.path)
                break
            except duckdb.IOException:
                # Another process (a dbt step finishing) may still hold the file lock.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            configure_connection(con, self.hmac_key.encode("utf-8"), self.phone_region)
            yield con
        finally:
            con.close()

    def landing_gates(self, source: str) -> LandingGates:
        """How the landing gates judge `source`'s files (settings, defaults where unset)."""
        d = LandingGates()
        return LandingGates(
            rejected_file=self.rejected_file_policy.get(source, d.rejected_file),
            schema_drift=self.schema_drift_policy.get(source, d.schema_drift),
            quarantine_warn_share=self.quarantine_warn_share.get(source, d.quarantine_warn_share),
            quarantine_error_share=self.quarantine_error_share.get(
                source, d.quarantine_error_share
            ),
            min_rows=self.gate_min_rows.get(source, d.min_rows),
        )

    def run_date(self) -> date:
        return datetime.now(UTC).date()

    def resolve_as_of(self, con: duckdb.DuckDBPyConnection) -> date:
        """The configured as-of date, else the latest POS or web event date loaded."""
        if self.as_of:
            return date.fromisoformat(self.as_of)
        row = con.execute(
            """
            select max(d) from (
                select max(transacted_at)::date as d from raw.pos
                union all
                select max(event_at)::date from raw.web
            )
            """
        ).fetchone()
        return row[0] if row and row[0] else self.run_date()


@functools.cache
def _dbt_version(dbt_executable: str) -> version.Version:
    output = subprocess.check_output([dbt_executable, "--version"], text=True)
    match = re.search(r"(\d+\.\d+\.\d+)", output)
    if not match:
        raise RuntimeError(f"could not read the version of {dbt_executable}: {output.strip()}")
    return version.parse(match.group(1))


class DbtCli(DbtCliResource):
    """dagster-dbt's dbt CLI resource without two costs it pays for features we do not use.

    Upstream starts `dbt --version` once per resource (every run builds its resources) and, on
    every invocation, loads the dbt project and macros into an in-process adapter that only
    serves `fetch_row_counts` / `fetch_column_metadata`; the layers stream events only.
    """

    @property
    def _cli_version(self) -> version.Version:
        return _dbt_version(self.dbt_executable)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None


def _gate_config(settings: Settings) -> dict[str, dict]:
    gates = settings.landing_gates
    return {
        "rejected_file_policy": {s: g.rejected_file for s, g in gates.items()},
        "schema_drift_policy": {s: g.schema_drift for s, g in gates.items()},
        "quarantine_warn_share": {s: g.quarantine_warn_share for s, g in gates.items()},
        "quarantine_error_share": {s: g.quarantine_error_share for s, g in gates.items()},
        "gate_min_rows": {s: g.min_rows for s, g in gates.items()},
    }


def build_resources(settings: Settings | None = None) -> dict:
    settings = settings or load_settings()
    settings.export_to_process()
    return {
        "warehouse": WarehouseResource(
            path=str(settings.warehouse),
            landing_dir=str(settings.landing_dir),
            # An EnvVar is masked in the UI; export_to_process put the resolved key there.
            hmac_key=dg.EnvVar("MICROSEG_HMAC_KEY"),
            phone_region=settings.phone_region,
            as_of=settings.as_of.isoformat() if settings.as_of else None,
            holdout_share=settings.holdout_share,
            min_segment_size=settings.min_segment_size,
            segments_dir=str(settings.segments_dir),
            segment_size_tolerance=settings.segment_size_tolerance,
            clv_time_unit=settings.clv_time_unit,
            propensity_min_auc=settings.propensity_min_auc,
            cluster_min_events=settings.cluster_min_events,
            lookalike_seed=settings.lookalike_seed,
            model_dir=str(settings.model_dir),
            model_versions=dict(settings.model_versions),
            platform_min_audience=dict(settings.platform_min_audience),
            volume_tolerance=settings.volume_tolerance,
            freshness_days=settings.freshness_days,
            gx_sample_rows=settings.gx_sample_rows,
            seed=settings.seed,
            retention_days=settings.retention_days,
            run_lock_wait_s=settings.lock_wait_s,
            max_segment_share=settings.max_segment_share,
            identity_match_threshold=settings.identity_match_threshold,
            identity_max_cluster_size=settings.identity_max_cluster_size,
            identity_max_values_per_type=settings.identity_max_values_per_type,
            identity_retrain=settings.identity_retrain,
            identity_blocklist=list(settings.identity_blocklist),
            identity_overrides=str(settings.identity_overrides)
            if settings.identity_overrides
            else None,
            **_gate_config(settings),
        ),
        "dbt": DbtCli(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            dbt_executable=settings.dbt_executable,
        ),
    }
