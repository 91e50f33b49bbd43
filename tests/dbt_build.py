"""`dbt build` of a model selection on a prepared DuckDB file, in this process, for tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "dbt_project"


def dbt_build(tmp: Path, warehouse: Path, hmac_key: str, as_of: str, selection: list[str]):
    """Build the selection (models and their tests) as of a date; fail naming what failed."""
    from dbt.cli.main import dbtRunner

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MICROSEG_WAREHOUSE", str(warehouse))
        mp.setenv("MICROSEG_HMAC_KEY", hmac_key)
        mp.setenv("MICROSEG_REPO_ROOT", str(REPO))
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        result = dbtRunner().invoke(
            [
                "build",
                "--project-dir", str(PROJECT),
                "--profiles-dir", str(PROJECT),
                "--target-path", str(tmp / "target"),
                "--log-path", str(tmp / "logs"),
                "--vars", f"{{as_of: '{as_of}'}}",
                "--select", *selection,
            ]
        )  # fmt: skip
    failures = [
        (r.node.name, str(r.status), r.message)
        for r in (result.result or [])
        if str(r.status) not in ("success", "pass")
    ]
    assert result.success, (result.exception, failures)
