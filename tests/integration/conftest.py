"""What the whole-graph tests share: the documented outputs and one way to run the refresh job
on a temporary warehouse over a landing zone."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.runner import RefreshOutcome, execute_refresh
from orchestration.settings import Settings, load_settings

# Every table of the data contract's outputs (section 3), in the snapshot after every run.
DOCUMENTED_TABLES = {
    "marts.identity_map",
    "marts.customer_profiles",
    "marts.customer_features",
    "marts.customer_scores",
    "marts.segment_definitions",
    "marts.segment_members",
    "marts.segment_membership_history",
    "marts.segment_summary",
    "marts.campaign_performance",
    "ml.model_runs",
}


def pipeline_env(root: Path, landing: Path, **overrides: str) -> dict[str, str]:
    """Settings of a run whose warehouse, snapshot, exports and Dagster instance live in root."""
    return {
        "MICROSEG_LANDING_DIR": str(landing),
        "MICROSEG_WAREHOUSE": str(root / "warehouse.duckdb"),
        "MICROSEG_SERVING": str(root / "serving.duckdb"),
        "MICROSEG_EXPORT_DIR": str(root / "exports"),
        "MICROSEG_PRIVACY_DIR": str(root / "privacy"),
        "MICROSEG_MODEL_DIR": str(root / "models"),
        "DAGSTER_HOME": str(root / "dagster_home"),
        "MICROSEG_HMAC_KEY": "integration-test-key",
        "MICROSEG_MIN_SEGMENT_SIZE": "5",
        **overrides,
    }


def run_pipeline(root: Path, landing: Path, **overrides: str) -> tuple[RefreshOutcome, Settings]:
    """The refresh job as `microseg run` runs it, with as_of taken from the data."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in pipeline_env(root, landing, **overrides).items():
            mp.setenv(name, value)
        mp.delenv("MICROSEG_AS_OF", raising=False)
        settings = load_settings()
        return execute_refresh(settings), settings


@contextlib.contextmanager
def environ_restored(*names: str) -> Iterator[None]:
    """Put these environment variables back as they were (benchmark code sets them)."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
