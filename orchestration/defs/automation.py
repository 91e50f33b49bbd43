"""The refresh job, its daily schedule, and a sensor on the landing zone."""

import hashlib
import json
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


def _read_cursor(text: str | None) -> dict:
    """{"done": fingerprint of the last landing zone a run succeeded on, "pending": run key of
    the requested run not known to have finished, "attempt": requests made for "pending"}."""
    try:
        cursor = json.loads(text) if text else {}
    except json.JSONDecodeError:
        cursor = {}
    return cursor if isinstance(cursor, dict) else {}


def landing_sensor_tick(
    fingerprint: str, cursor_text: str | None, instance: dg.DagsterInstance
) -> tuple[dg.RunRequest | dg.SkipReason, str]:
    """One evaluation of the landing-zone sensor: (what to do, the new cursor).

    The cursor moves to a fingerprint only once a run requested for it succeeded: a run that
    failed or was cancelled is requested again (under a new run key) on the next tick."""
    cursor = _read_cursor(cursor_text)
    pending = cursor.get("pending")
    if pending:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={_RUN_KEY_TAG: pending}), limit=1)
        status = runs[0].status if runs else None
        if status is not None and status not in _FINISHED:
            return dg.SkipReason(f"waiting for run {runs[0].run_id} ({status.value})"), json.dumps(
                cursor
            )
        cursor["pending"] = None
        if status == dg.DagsterRunStatus.SUCCESS:
            cursor["done"] = pending.split(":", 1)[0]
            cursor["attempt"] = 0
    if fingerprint == cursor.get("done"):
        return dg.SkipReason("no new or changed files in the landing zone"), json.dumps(cursor)
    retry = pending is not None and pending.split(":", 1)[0] == fingerprint
    attempt = cursor.get("attempt", 0) + 1 if retry else 1
    run_key = f"{fingerprint}:{attempt}"
    cursor.update(pending=run_key, attempt=attempt)
    tags = {"microseg/trigger": "landing_zone", "microseg/attempt": str(attempt)}
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
        result, cursor = landing_sensor_tick(fingerprint, context.cursor, context.instance)
        context.update_cursor(cursor)
        return result

    return [schedule], [landing_zone_sensor]
