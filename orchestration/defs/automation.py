"""The refresh job, its daily schedule, and a sensor on the landing zone."""

import hashlib
import json
import time
from pathlib import Path

import dagster as dg

from orchestration.settings import Settings

refresh_job = dg.define_asset_job(
    "refresh",
    selection=dg.AssetSelection.all(),
    description="Load what has landed, rebuild every layer behind its gates, publish the snapshot",
    executor_def=dg.in_process_executor,
)

_SKIP_PREFIXES = (".", "_")
_SKIP_SUFFIXES = (".tmp", ".part")


def landing_fingerprint(landing_dir: Path) -> str:
    """Hash of (path, size, mtime) of every data file: changes when a file lands or is replaced."""
    digest = hashlib.sha256()
    if landing_dir.exists():
        for path in sorted(landing_dir.rglob("*")):
            rel = path.relative_to(landing_dir)
            if not path.is_file() or any(p.startswith(_SKIP_PREFIXES) for p in rel.parts):
                continue
            if path.name.endswith(_SKIP_SUFFIXES):
                continue
            stat = path.stat()
            digest.update(f"{rel.as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


_RUN_KEY_TAG = "dagster/run_key"
_FINISHED = {
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
}


# A failed run is requested again at most this many times per landing-zone state, each after a
# longer wait (a file that breaks a gate fails every run until it is fixed or removed).
MAX_ATTEMPTS = 3
RETRY_WAIT_S = (0, 300, 1800)
# A requested run not yet visible in the instance is still being launched for this long.
LAUNCH_GRACE_S = 600


def _read_cursor(text: str | None) -> dict:
    """{"done": fingerprint of the last landing zone a run succeeded on, "pending": run key of
    the requested run not known to have finished, "requested_at": when, "attempt": requests
    made for the current fingerprint, "failed_at": when its last run ended without success}."""
    try:
        cursor = json.loads(text) if text else {}
    except json.JSONDecodeError:
        cursor = {}
    return cursor if isinstance(cursor, dict) else {}


def landing_sensor_tick(
    fingerprint: str, cursor_text: str | None, instance: dg.DagsterInstance, now: float
) -> tuple[dg.RunRequest | dg.SkipReason, str]:
    """One evaluation of the landing-zone sensor: (what to do, the new cursor).

    The cursor moves to a fingerprint only once a run requested for it succeeded. A run that
    failed or was cancelled is requested again (under a new run key) after a growing wait, at
    most MAX_ATTEMPTS times; then the sensor waits for the landing zone to change."""
    cursor = _read_cursor(cursor_text)
    pending = cursor.get("pending")
    if pending:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={_RUN_KEY_TAG: pending}), limit=1)
        status = runs[0].status if runs else None
        if status is None and now - cursor.get("requested_at", now) < LAUNCH_GRACE_S:
            return dg.SkipReason(f"waiting for the run of {pending} to start"), json.dumps(cursor)
        if status is not None and status not in _FINISHED:
            message = f"waiting for run {runs[0].run_id} ({status.value})"
            return dg.SkipReason(message), json.dumps(cursor)
        cursor["pending"] = None
        if status == dg.DagsterRunStatus.SUCCESS:
            cursor.update(done=pending.split(":", 1)[0], attempt=0, failed_at=None)
        else:
            cursor["failed_at"] = now
    if fingerprint == cursor.get("done"):
        return dg.SkipReason("no new or changed files in the landing zone"), json.dumps(cursor)
    same_files = cursor.get("fingerprint") == fingerprint
    attempt = cursor.get("attempt", 0) if same_files else 0
    if attempt >= MAX_ATTEMPTS:
        message = (
            f"the last {attempt} runs on these files failed: fix or replace the file the "
            "failed gate names (the next change in the landing zone is tried at once)"
        )
        return dg.SkipReason(message), json.dumps(cursor)
    wait_s = RETRY_WAIT_S[min(attempt, len(RETRY_WAIT_S) - 1)]
    if same_files and attempt and now - cursor.get("failed_at", 0) < wait_s:
        message = f"run {attempt} on these files failed; trying again {wait_s}s after it"
        return dg.SkipReason(message), json.dumps(cursor)
    run_key = f"{fingerprint}:{attempt + 1}"
    cursor.update(fingerprint=fingerprint, pending=run_key, requested_at=now, attempt=attempt + 1)
    tags = {"microseg/trigger": "landing_zone", "microseg/attempt": str(attempt + 1)}
    return dg.RunRequest(run_key=run_key, tags=tags), json.dumps(cursor)


def build_automation(settings: Settings) -> tuple[list, list]:
    # On by default: `make ui` starts the daemon, which then refreshes daily and on new files.
    schedule = dg.ScheduleDefinition(
        name="daily_refresh",
        job=refresh_job,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )

    # Looks at the file system and the run history only: never takes the warehouse's lock.
    @dg.sensor(
        job=refresh_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def landing_zone_sensor(context: dg.SensorEvaluationContext):
        fingerprint = landing_fingerprint(settings.landing_dir)
        result, cursor = landing_sensor_tick(
            fingerprint, context.cursor, context.instance, time.time()
        )
        context.update_cursor(cursor)
        return result

    return [schedule], [landing_zone_sensor]
