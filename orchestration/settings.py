"""The one place that reads the environment: every setting, its default, and absolute paths."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from warehouse.sources import GATE_POLICIES, SOURCES, LandingGates

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
PURPOSES = ("analytics", "personalization", "ad_targeting", "third_party_sharing")


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot run with."""


def _path(env: dict[str, str], name: str, default: str) -> Path:
    return Path(env.get(name) or default).expanduser().resolve()


def _float(env: dict[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number") from exc
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={raw!r} must lie between {lo} and {hi}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (true/false)")


def _choice(env: dict[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _int(env: dict[str, str], name: str, default: int, lo: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from exc
    if value < lo:
        raise SettingsError(f"{name}={raw!r} must be at least {lo}")
    return value


# Landing gates: setting -> LandingGates field. Each applies to every source, and
# `<SETTING>_<SOURCE>` (e.g. MICROSEG_REJECTED_FILE_POLICY_WEB=warn) overrides it for one source.
GATE_SETTINGS = {
    "MICROSEG_REJECTED_FILE_POLICY": "rejected_file",
    "MICROSEG_SCHEMA_DRIFT_POLICY": "schema_drift",
    "MICROSEG_QUARANTINE_WARN_SHARE": "quarantine_warn_share",
    "MICROSEG_QUARANTINE_ERROR_SHARE": "quarantine_error_share",
    "MICROSEG_GATE_MIN_ROWS": "min_rows",
}


def _gate_value(env: dict[str, str], name: str, field_name: str, default):
    if field_name in ("rejected_file", "schema_drift"):
        raw = (env.get(name) or "").strip().lower()
        if not raw:
            return default
        if raw not in GATE_POLICIES:
            raise SettingsError(f"{name}={raw!r} must be one of {', '.join(GATE_POLICIES)}")
        return raw
    if field_name == "min_rows":
        return _int(env, name, default, 1)
    return _float(env, name, default, 0.0, 1.0)


def _landing_gates(env: dict[str, str]) -> dict[str, LandingGates]:
    """Each source's landing gates: the general setting, then the source's own override."""
    for key in env:
        for base in GATE_SETTINGS:
            suffix = key[len(base) + 1 :]
            if key.startswith(base + "_") and suffix.lower() not in SOURCES:
                raise SettingsError(
                    f"{key}: {suffix!r} is not a landing source; per-source settings end in "
                    + ", ".join(s.upper() for s in SOURCES)
                )
    defaults = LandingGates()
    gates = {}
    for source in SOURCES:
        values = {}
        for base, field_name in GATE_SETTINGS.items():
            value = _gate_value(env, base, field_name, getattr(defaults, field_name))
            values[field_name] = _gate_value(env, f"{base}_{source.upper()}", field_name, value)
        if values["quarantine_warn_share"] > values["quarantine_error_share"]:
            raise SettingsError(
                f"{source}: the quarantine warn share {values['quarantine_warn_share']} is above "
                f"its error share {values['quarantine_error_share']} "
                "(MICROSEG_QUARANTINE_WARN_SHARE / MICROSEG_QUARANTINE_ERROR_SHARE)"
            )
        gates[source] = LandingGates(**values)
    return gates


@dataclass(frozen=True)
class Settings:
    landing_dir: Path
    warehouse: Path
    serving: Path
    export_dir: Path
    dagster_home: Path
    privacy_dir: Path
    as_of: date | None
    hmac_key: str = field(repr=False)
    phone_region: str = "US"
    timezone: str = "UTC"
    schedule_cron: str = "0 6 * * *"
    holdout_share: float = 0.1
    min_segment_size: int = 50
    segments_dir: Path = REPO_ROOT / "segments"
    segment_size_tolerance: float = 0.5
    clv_time_unit: str = "weeks"
    propensity_min_auc: float = 0.6
    cluster_min_events: int = 5
    lookalike_seed: str = ""
    model_dir: Path = Path("data/models")
    # model name -> registered version to score with instead of training
    model_versions: dict[str, str] = field(default_factory=dict)
    # activation: smallest audience a platform takes (per platform; default 100)
    platform_min_audience: dict[str, int] = field(default_factory=dict)
    api_token: str = field(default="", repr=False)
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    volume_tolerance: float = 0.5
    freshness_days: int = 3
    gx_sample_rows: int = 200_000
    seed: int = 42
    retention_days: int = 730
    lock_wait_s: float = 60.0
    max_segment_share: float = 0.95
    identity_match_threshold: float = 0.95
    identity_max_cluster_size: int = 50
    identity_max_values_per_type: int = 5
    identity_retrain: bool = False
    identity_blocklist: tuple[str, ...] = ()
    identity_overrides: Path | None = None
    # per landing source: how its files' gates judge them (rejected files, quarantine, drift)
    landing_gates: dict[str, LandingGates] = field(
        default_factory=lambda: {s: LandingGates() for s in SOURCES}
    )

    @property
    def dbt_executable(self) -> str:
        # The project environment's own dbt, so runs work without an activated venv.
        candidate = Path(sys.executable).parent / "dbt"
        return str(candidate) if candidate.exists() else "dbt"

    def dbt_env(self) -> dict[str, str]:
        """Variables the dbt profile reads (profiles.yml `env_var`)."""
        return {
            "MICROSEG_WAREHOUSE": str(self.warehouse),
            "MICROSEG_HMAC_KEY": self.hmac_key,
            "MICROSEG_PHONE_REGION": self.phone_region,
            "MICROSEG_REPO_ROOT": str(REPO_ROOT),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "GX_ANALYTICS_ENABLED": "false",
        }

    def export_to_process(self) -> None:
        """Hand the resolved values to child processes (dbt) through this process's environment."""
        os.environ.update(self.dbt_env())
        os.environ.setdefault("DAGSTER_HOME", str(self.dagster_home))


def _hmac_key(env: dict[str, str], warehouse: Path) -> str:
    key = env.get("MICROSEG_HMAC_KEY")
    if key:
        return key
    # Generated once beside the warehouse and reused, so pseudonymous ids stay stable.
    key_file = warehouse.parent / ".hmac_key"
    if key_file.exists():
        return key_file.read_text().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _model_versions(env: dict[str, str]) -> dict[str, str]:
    """MICROSEG_MODEL_VERSIONS=name=version,name=version: score with these registered versions."""
    raw = env.get("MICROSEG_MODEL_VERSIONS") or ""
    pins: dict[str, str] = {}
    for item in (v.strip() for v in raw.split(",")):
        if not item:
            continue
        name, sep, version = item.partition("=")
        if not sep or not name.strip() or not version.strip():
            raise SettingsError(f"MICROSEG_MODEL_VERSIONS: {item!r} is not model_name=version")
        pins[name.strip()] = version.strip()
    return pins


PLATFORMS = ("google", "meta", "parquet")
DEFAULT_PLATFORM_MIN_AUDIENCE = 100


def _platform_min_audience(env: dict[str, str]) -> dict[str, int]:
    """MICROSEG_PLATFORM_MIN_AUDIENCE=google=1000,meta=100: the smallest audience exported to each
    platform (default 100 for each)."""
    out = dict.fromkeys(PLATFORMS, DEFAULT_PLATFORM_MIN_AUDIENCE)
    raw = env.get("MICROSEG_PLATFORM_MIN_AUDIENCE") or ""
    for item in (v.strip() for v in raw.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in PLATFORMS or not value.strip().isdigit():
            raise SettingsError(
                f"MICROSEG_PLATFORM_MIN_AUDIENCE: {item!r} is not platform=count "
                f"(platforms: {', '.join(PLATFORMS)})"
            )
        out[name] = int(value)
    return out


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Settings from `env`, or from the process environment over a `.env` file in the cwd."""
    if env is None:
        env = {**_dotenv(Path.cwd() / ".env"), **os.environ}
    env = dict(env)
    warehouse = _path(env, "MICROSEG_WAREHOUSE", "data/warehouse.duckdb")
    as_of_raw = env.get("MICROSEG_AS_OF")
    try:
        as_of = date.fromisoformat(as_of_raw) if as_of_raw else None
    except ValueError as exc:
        raise SettingsError(f"MICROSEG_AS_OF={as_of_raw!r} is not a date (YYYY-MM-DD)") from exc
    region = (env.get("MICROSEG_PHONE_REGION") or "US").upper()
    if len(region) != 2 or not region.isalpha():
        raise SettingsError(f"MICROSEG_PHONE_REGION={region!r} is not an ISO-3166 alpha-2 code")
    return Settings(
        landing_dir=_path(env, "MICROSEG_LANDING_DIR", "data/landing"),
        warehouse=warehouse,
        serving=_path(env, "MICROSEG_SERVING", "data/serving.duckdb"),
        export_dir=_path(env, "MICROSEG_EXPORT_DIR", "data/exports"),
        dagster_home=_path(env, "DAGSTER_HOME", "data/dagster_home"),
        privacy_dir=_path(env, "MICROSEG_PRIVACY_DIR", "data/privacy"),
        as_of=as_of,
        hmac_key=_hmac_key(env, warehouse),
        phone_region=region,
        timezone=env.get("MICROSEG_TIMEZONE") or "UTC",
        schedule_cron=env.get("MICROSEG_SCHEDULE_CRON") or "0 6 * * *",
        holdout_share=_float(env, "MICROSEG_HOLDOUT_SHARE", 0.1, 0.0, 0.5),
        min_segment_size=_int(env, "MICROSEG_MIN_SEGMENT_SIZE", 50, 1),
        segments_dir=_path(env, "MICROSEG_SEGMENTS_DIR", "segments"),
        segment_size_tolerance=_float(env, "MICROSEG_SEGMENT_SIZE_TOLERANCE", 0.5, 0.0, 100.0),
        clv_time_unit=_choice(env, "MICROSEG_CLV_TIME_UNIT", "weeks", ("days", "weeks")),
        propensity_min_auc=_float(env, "MICROSEG_PROPENSITY_MIN_AUC", 0.6, 0.0, 1.0),
        cluster_min_events=_int(env, "MICROSEG_CLUSTER_MIN_EVENTS", 5, 0),
        lookalike_seed=(env.get("MICROSEG_LOOKALIKE_SEED") or "").strip(),
        model_dir=_path(env, "MICROSEG_MODEL_DIR", "data/models"),
        model_versions=_model_versions(env),
        platform_min_audience=_platform_min_audience(env),
        api_token=env.get("MICROSEG_API_TOKEN") or "",
        api_host=env.get("MICROSEG_API_HOST") or "127.0.0.1",
        api_port=_int(env, "MICROSEG_API_PORT", 8080, 1),
        volume_tolerance=_float(env, "MICROSEG_VOLUME_TOLERANCE", 0.5, 0.0, 10.0),
        freshness_days=_int(env, "MICROSEG_FRESHNESS_DAYS", 3, 0),
        gx_sample_rows=_int(env, "MICROSEG_GX_SAMPLE_ROWS", 200_000, 1000),
        seed=_int(env, "MICROSEG_SEED", 42, 0),
        retention_days=_int(env, "MICROSEG_RETENTION_DAYS", 730, 30),
        lock_wait_s=_float(env, "MICROSEG_LOCK_WAIT_S", 60.0, 0.0, 86_400.0),
        max_segment_share=_float(env, "MICROSEG_MAX_SEGMENT_SHARE", 0.95, 0.0, 1.0),
        identity_match_threshold=_float(env, "MICROSEG_IDENTITY_MATCH_THRESHOLD", 0.95, 0.5, 1.0),
        identity_max_cluster_size=_int(env, "MICROSEG_IDENTITY_MAX_CLUSTER_SIZE", 50, 2),
        identity_max_values_per_type=_int(env, "MICROSEG_IDENTITY_MAX_VALUES_PER_TYPE", 5, 1),
        identity_retrain=_bool(env, "MICROSEG_IDENTITY_RETRAIN", False),
        identity_blocklist=tuple(
            v.strip().lower()
            for v in (env.get("MICROSEG_IDENTITY_BLOCKLIST") or "").split(",")
            if v.strip()
        ),
        identity_overrides=_path(env, "MICROSEG_IDENTITY_OVERRIDES", "data/identity_overrides.csv"),
        landing_gates=_landing_gates(env),
    )
