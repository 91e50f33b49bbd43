"""Identity resolution on a public benchmark (FEBRL, Australian person records without email,
phone or card): the identity part of the pipeline against Splink alone, set up the standard way,
on the same records."""

from __future__ import annotations

import pytest

from bench.febrl import write_landing
from bench.identity import main as run_identity
from tests.integration.conftest import environ_restored

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("febrl1")
    counts = write_landing("febrl1", root / "landing")
    with environ_restored("MICROSEG_LANDING_DIR", "MICROSEG_WAREHOUSE"):
        yield counts, run_identity(
            ["--customers", str(counts["records"]), "--root", str(root),
             "--landing", str(root / "landing"), "--memory-limit", "2GB"]
        )  # fmt: skip


def test_the_landing_zone_holds_the_whole_set(report):
    counts, result = report
    assert counts == {"records": 1000, "entities": 500, "true_pairs": 500}
    assert result["ours"]["crm"]["records"] == 1000
    assert result["ours"]["crm"]["true_pairs"] == 500


def test_pipeline_is_at_least_as_good_as_splink_alone(report):
    _, result = report
    ours, splink = result["ours"]["crm"], result["splink_only_crm"]
    assert ours["pairwise_precision"] >= 0.99, ours
    assert ours["pairwise_f1"] >= splink["pairwise_f1"], (ours, splink)
    assert ours["pairwise_f1"] >= 0.98, ours
