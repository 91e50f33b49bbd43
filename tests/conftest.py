"""The whole suite: temporary directories in memory where the machine has room for them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# A whole-graph run stores about a thousand Dagster events, each a SQLite commit, and DuckDB
# and dbt commit as often: on a disk every commit waits for fsync, which made a third of a run's
# wall time. Files in tmpfs behave the same to the pipeline (a kill -9 keeps what was written).
MEMORY_TEMPROOT = Path("/dev/shm")
MIN_FREE_BYTES = 4 * 1024**3


def _memory_temproot_usable() -> bool:
    if not (MEMORY_TEMPROOT.is_dir() and os.access(MEMORY_TEMPROOT, os.W_OK)):
        return False
    stats = os.statvfs(MEMORY_TEMPROOT)
    return stats.f_bavail * stats.f_frsize >= MIN_FREE_BYTES


def pytest_configure(config: pytest.Config) -> None:
    # An explicit --basetemp or PYTEST_DEBUG_TEMPROOT wins; xdist workers inherit the choice.
    if config.option.basetemp or os.environ.get("PYTEST_DEBUG_TEMPROOT"):
        return
    if _memory_temproot_usable():
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(MEMORY_TEMPROOT)
