"""The refresh job, its daily schedule, and a sensor on the landing zone."""

import hashlib
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


def build_automation(settings: Settings) -> tuple[list, list]:
    schedule = dg.ScheduleDefinition(
        name="daily_refresh",
        job=refresh_job,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )

    # Looks at the file system only: a sensor must never take the warehouse's lock.
    @dg.sensor(job=refresh_job, minimum_interval_seconds=60)
    def landing_zone_sensor(context: dg.SensorEvaluationContext):
        fingerprint = landing_fingerprint(settings.landing_dir)
        if fingerprint == context.cursor:
            return dg.SkipReason("no new or changed files in the landing zone")
        context.update_cursor(fingerprint)
        return dg.RunRequest(run_key=fingerprint)

    return [schedule], [landing_zone_sensor]
