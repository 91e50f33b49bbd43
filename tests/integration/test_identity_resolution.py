"""Identity resolution against the generator's ground truth, with and without contact data:
the identity part of the pipeline (ingest, staging, Splink matching, the dbt identity layer)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bench.identity import main as run_identity
from synthetic import generate
from tests.integration.conftest import environ_restored

pytestmark = pytest.mark.slow
CUSTOMERS = 3000
CONTACT_COLUMNS = ("email", "phone", "loyalty_card_id", "web_user_id")


def _blank_contact_data(landing: Path) -> int:
    """Rewrite the CRM files without email, phone, card and web account: name, birth date and
    address only, as many CRM exports are."""
    blanked = 0
    for path in sorted((landing / "crm").rglob("*.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        fields = list(rows[0].keys()) if rows else []
        for row in rows:
            for column in CONTACT_COLUMNS:
                if row.get(column):
                    row[column] = ""
                    blanked += 1
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return blanked


@pytest.fixture(scope="module", params=["with_contact", "without_contact"])
def report(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    landing = root / "landing"
    generate(landing, customers=CUSTOMERS, days=60, seed=5)
    if request.param == "without_contact":
        assert _blank_contact_data(landing) > 0
    with environ_restored("MICROSEG_LANDING_DIR", "MICROSEG_WAREHOUSE"):
        yield request.param, run_identity(
            ["--customers", str(CUSTOMERS), "--root", str(root), "--landing", str(landing),
             "--memory-limit", "2GB"]
        )  # fmt: skip


def test_pairwise_targets_on_crm_records(report):
    case, result = report
    crm = result["ours"]["crm"]
    assert crm["true_pairs"] > 300, crm  # enough duplicates to judge
    assert crm["pairwise_precision"] >= 0.99, (case, crm)
    assert crm["pairwise_f1"] >= 0.98, (case, crm)


def test_we_do_not_lose_to_splink_alone(report):
    case, result = report
    ours, splink = result["ours"]["crm"], result["splink_only_crm"]
    assert ours["pairwise_precision"] >= splink["pairwise_precision"] - 0.002, (case, ours, splink)
    assert ours["pairwise_f1"] >= splink["pairwise_f1"] - 0.01, (case, ours, splink)


# Without CRM contact data the family guard cannot see who shares a receipt email or a card
# among POS/web records, so precision over all records is measured lower (0.988 at this size).
ALL_RECORDS_PRECISION_FLOOR = {"with_contact": 0.99, "without_contact": 0.98}


def test_all_identified_records_are_not_over_merged(report):
    case, result = report
    every = result["ours"]["all_identified"]
    assert every["pairwise_precision"] >= ALL_RECORDS_PRECISION_FLOOR[case], (case, every)
