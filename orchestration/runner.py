"""Runs the refresh job in-process on the shared Dagster instance and prints what happened.

The run is created as the UI's code location would create it (the location named in
pyproject.toml's [tool.dagster], the job as defined, not an in-process copy), so it is listed under
the `refresh` job, on the timeline and in each asset's history, and the UI can re-execute it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import dagster as dg
import duckdb
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import create_execution_plan, execute_run
from dagster._core.execution.execution_result import ExecutionResult
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from orchestration.defs.publish.assets import SNAPSHOT_KEY
from orchestration.settings import REPO_ROOT, Settings
from warehouse.sources import SOURCES

EXIT_OK, EXIT_GATE_FAILED, EXIT_CANNOT_RUN = 0, 1, 2
PID_TAG = "microseg/pid"
HOST_TAG = "microseg/host"
# An empty dagster.yaml means "everything under DAGSTER_HOME"; telemetry off on a closed network,
# and no first-visit community pop-up over the UI's pages (Dagster's `nux` instance setting).
INSTANCE_DEFAULTS = {
    "telemetry": "telemetry:\n  enabled: false\n",
    "nux": "nux:\n  enabled: false\n",
}
BUSY_MARKER = "holds the warehouse lock"


JOB_NAME = "refresh"
# A Definitions object is served as this one repository of its code location.
REPOSITORY_NAME = "__repository__"


@cache
def code_location() -> tuple[str, str]:
    """(location name, definitions module) the UI loads: pyproject.toml's [tool.dagster]."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        block = tomllib.load(f)["tool"]["dagster"]
    return block["code_location_name"], block["module_name"]


def _remote_job_origin() -> RemoteJobOrigin:
    location, module = code_location()
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=module, working_directory=str(REPO_ROOT)
    )
    origin = ManagedGrpcPythonEnvCodeLocationOrigin(target, location_name=location)
    return RemoteJobOrigin(RemoteRepositoryOrigin(origin, REPOSITORY_NAME), JOB_NAME)


def ensure_instance_config(dagster_home: str | os.PathLike | None = None) -> Path:
    """dagster.yaml with our defaults for the settings it does not set (an existing file keeps
    everything it says, e.g. storage or an explicit telemetry choice)."""
    import yaml

    home = Path(dagster_home or os.environ.get("DAGSTER_HOME") or "data/dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    text = config.read_text() if config.exists() else ""
    present = (yaml.safe_load(text) or {}) if text.strip() else {}
    missing = [block for key, block in INSTANCE_DEFAULTS.items() if key not in present]
    if missing:
        config.write_text((text.rstrip("\n") + "\n" if text.strip() else "") + "".join(missing))
    return config


def _check_failures(
    result: ExecutionResult, severity: dg.AssetCheckSeverity
) -> list[tuple[str, str, str]]:
    """(asset, check, failing values) of every check that failed with `severity`."""
    failed = []
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        if evaluation.passed or evaluation.severity != severity:
            continue
        key = "/".join(evaluation.asset_key.path)
        meta = evaluation.metadata or {}
        failures = meta.get("failures")
        detail = evaluation.description or ""
        if failures is not None and not detail:
            detail = str(failures.value)[:500]
        failed.append((key, evaluation.check_name, detail))
    return failed


def _failed_checks(result: ExecutionResult) -> list[tuple[str, str, str]]:
    """Blocking failures only: error-severity checks (dbt tests with error severity included)."""
    return _check_failures(result, dg.AssetCheckSeverity.ERROR)


def _run_errors(result: ExecutionResult) -> list[str]:
    """Errors outside any step (resources that could not start, e.g. the warehouse lock)."""
    errors = []
    for event in result.all_events:
        if event.event_type_value == "RESOURCE_INIT_FAILURE":
            error = getattr(event.event_specific_data, "error", None)
            message = error.message.strip() if error is not None else (event.message or "")
            errors.append(message.splitlines()[-1] if message else "resource failed to start")
    return errors


def _mark_dead_runs_failed(instance: dg.DagsterInstance) -> list[str]:
    """Runs this host's CLI started whose process is gone (killed) stay STARTED in the UI for
    ever; report them failed. Called while holding the warehouse lock, so none is alive."""
    marked = []
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
            tags={HOST_TAG: socket.gethostname()},
        )
    )
    for record in records:
        run = record.dagster_run
        try:
            pid = int(run.tags.get(PID_TAG, "0"))
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        instance.report_run_failed(
            run, f"process {pid} running it ended without finishing (killed?); recovered"
        )
        marked.append(run.run_id)
    return marked


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _checks_count(result: ExecutionResult) -> tuple[int, int]:
    passed = failed = 0
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            if event.event_specific_data.passed:
                passed += 1
            else:
                failed += 1
    return passed, failed


def _summary(settings: Settings) -> list[str]:
    lines: list[str] = []
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        lines.append("sources (files loaded / rejected, rows loaded / quarantined):")
        rows = con.execute(
            """
            with current as (
                select * from raw.load_ledger
                qualify row_number() over (partition by path order by loaded_at desc) = 1
            )
            select source,
                   count(*) filter (where status = 'loaded'),
                   count(*) filter (where status = 'rejected'),
                   coalesce(sum(rows_loaded), 0),
                   coalesce(sum(rows_quarantined), 0)
            from current group by source order by source
            """
        ).fetchall()
        for source, loaded, rejected, rows_loaded, rows_q in rows:
            lines.append(
                f"  {source:<10} files {loaded} loaded, {rejected} rejected; "
                f"rows {rows_loaded:,} loaded, {rows_q:,} quarantined"
            )
        landed = {row[0] for row in rows}
        for source in SOURCES:
            if source not in landed:
                lines.append(
                    f"  {source:<10} no files landed: "
                    f"{ABSENT_SOURCE_EFFECT.get(source, 'its tables are empty')}"
                )
        for path, message in con.execute(
            """
            select path, message from raw.load_ledger
            where status = 'rejected'
            qualify row_number() over (partition by path order by loaded_at desc) = 1
            order by path
            """
        ).fetchall():
            message = message or ""
            lines.append(
                f"  rejected {message if message.startswith(path) else f'{path}: {message}'}"
            )
        persons, known = con.execute(
            "select count(*), count(*) filter (where is_known) from marts.customer_profiles"
        ).fetchone()
        lines.append(f"persons: {persons:,} ({known:,} known)")
        lines += _model_lines(con)
        segs = con.execute(
            "select segment_id, purpose, members, excluded_no_consent "
            "from marts.segment_summary order by segment_id"
        ).fetchall()
        lines.append(f"segments: {len(segs)}")
        for segment_id, purpose, members, excluded in segs:
            lines.append(
                f"  {segment_id:<28} {members:>8,} members  ({purpose}; "
                f"{excluded:,} left out without consent)"
            )
    except duckdb.Error as exc:
        lines.append(f"(summary incomplete: {exc})")
    finally:
        con.close()
    return lines


# What a run without that source cannot say (the contract: an absent source is fine).
ABSENT_SOURCE_EFFECT = {
    "crm": "no CRM profiles; persons come from POS and web identifiers only",
    "pos": "no in-store purchases; purchase features count web orders only",
    "web": "no clickstream; visit, session and device features are empty",
    "consent": "no consent events, so nobody has consent for any purpose (opt-in): "
    "no scores, segment members or exports",
    "privacy": "no data-subject requests",
    "campaigns": "no campaign results; campaign_performance is empty",
    "enrichment": "no geo-demographics; stg_enrichment__postcodes is empty",
}


def _model_lines(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The latest run of each model: trained, or skipped/fallback with the reason."""
    rows = con.execute(
        """
        select model_name, status, reason
        from ml.model_runs
        qualify row_number() over (partition by model_name order by trained_at desc) = 1
        order by model_name
        """
    ).fetchall()
    lines = ["models:"] if rows else []
    for name, status, reason in rows:
        lines.append(f"  {name:<28} {status}" + (f": {reason}" if reason else ""))
    return lines


@dataclass
class RefreshOutcome:
    result: ExecutionResult
    elapsed_s: float
    failed_checks: list[tuple[str, str, str]]
    step_failures: list[tuple[str, str]]
    checks_passed: int
    published: bool
    warned_checks: list[tuple[str, str, str]] = field(default_factory=list)
    run_errors: list[str] = field(default_factory=list)
    recovered_runs: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return any(BUSY_MARKER in e for e in self.run_errors)

    @property
    def exit_code(self) -> int:
        if self.busy:
            return EXIT_CANNOT_RUN
        if self.failed_checks or self.step_failures or self.run_errors or not self.published:
            return EXIT_GATE_FAILED
        return EXIT_OK


def execute_refresh(settings: Settings, log_level: str = "WARNING") -> RefreshOutcome:
    """Materialise the refresh job on the instance in DAGSTER_HOME, so runs show in the UI."""
    from orchestration.definitions import build_definitions

    started = time.monotonic()
    settings.export_to_process()
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    ensure_instance_config(settings.dagster_home)
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.get()
    recovered = _mark_dead_runs_failed(instance)
    job = defs.resolve_job_def(JOB_NAME)
    # The console gets warnings and errors; every event is still in the instance (UI).
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    run = instance.create_run_for_job(
        job_def=job,
        execution_plan=create_execution_plan(job, run_config=run_config),
        run_config=run_config,
        tags={**job.run_tags, PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()},
        remote_job_origin=_remote_job_origin(),
    )
    result = execute_run(InMemoryJob(job), run, instance, raise_on_error=False)
    step_failures = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            # Dagster wraps user errors: the cause says what went wrong.
            while error.cause is not None and "Error occurred while executing" in error.message:
                error = error.cause
            if error.cls_name == "DagsterAssetCheckFailedError":
                continue  # a blocking check that failed: listed with its values already
            lines = error.message.strip().splitlines()
            step_failures.append((event.step_key, lines[0] if lines else ""))
    passed, _ = _checks_count(result)
    return RefreshOutcome(
        result=result,
        elapsed_s=time.monotonic() - started,
        failed_checks=_failed_checks(result),
        step_failures=step_failures,
        checks_passed=passed,
        warned_checks=_check_failures(result, dg.AssetCheckSeverity.WARN),
        run_errors=_run_errors(result),
        recovered_runs=recovered,
        published=any(
            e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key == SNAPSHOT_KEY
            for e in result.all_events
        ),
    )


def run_refresh(settings: Settings) -> int:
    log_dir = settings.warehouse.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "microseg-run.log"
    from warehouse.audiences import AudienceError, load_audiences

    # Invalid audience files stop the run before anything runs (the asset checks them too).
    try:
        load_audiences(settings.segments_dir, root=settings.segments_dir.parent)
    except AudienceError as exc:
        print(f"microseg run: invalid audience files in {settings.segments_dir}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(f"running the refresh job; dbt output goes to {log_path}", flush=True)
    try:
        # dbt's own progress lines are written to stdout; keep them out of the summary.
        with open(log_path, "w") as log, contextlib.redirect_stdout(log):
            outcome = execute_refresh(settings)
    except Exception as exc:  # a broken project or instance: say so in one line
        print(f"microseg run: could not run the pipeline: {exc}")
        return EXIT_CANNOT_RUN
    if outcome.busy:
        for message in outcome.run_errors:
            print(f"microseg run: {message}")
        return EXIT_CANNOT_RUN
    for run_id in outcome.recovered_runs:
        print(f"marked run {run_id} failed: its process died before finishing")
    for line in _summary(settings):
        print(line)
    print(
        f"checks: {outcome.checks_passed} passed, {len(outcome.failed_checks)} failed, "
        f"{len(outcome.warned_checks)} with warnings"
    )
    for key, check, detail in outcome.failed_checks:
        print(f"  FAILED {key} {check}: {detail}")
    for step, message in outcome.step_failures:
        print(f"  FAILED step {step}: {message}")
    for message in outcome.run_errors:
        print(f"  FAILED run: {message}")
    for key, check, detail in outcome.warned_checks:
        print(f"  WARN {key} {check}: {detail.splitlines()[0] if detail else ''}"[:300])
    print(f"run {outcome.result.run_id} took {outcome.elapsed_s:.0f}s")
    if outcome.exit_code != EXIT_OK:
        print("nothing was published; the previous serving snapshot is unchanged")
        return outcome.exit_code
    print(f"serving snapshot: {settings.serving}")
    print("query it (read-only; the next run swaps it atomically):")
    print(
        '  .venv/bin/python -c "import duckdb; duckdb.connect('
        f"'{settings.serving}', read_only=True).sql('select segment_id, members, "
        "share_of_persons from marts.segment_summary order by members desc').show()\""
    )
    return EXIT_OK
