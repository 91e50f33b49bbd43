"""Every data shape publishes: any subset of the sources, one day of history, twenty persons.

Each shape is a small generated landing zone run through the whole graph; the run must publish a
complete serving snapshot (exit 0, no failed gate) and say in its summary and in `ml.model_runs`
what it could not compute and why. The tests are collected by `test_shapes_*.py`, each over a
part of `SHAPES` (`shape_fixture`), so the parallel test workers share the runs out.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest

from orchestration.runner import _summary
from synthetic import generate
from synthetic.generator import SOURCES
from tests.integration.conftest import DOCUMENTED_TABLES, run_pipeline

# name: generate() arguments. Each whole-graph run costs most of a minute, so the corners share
# runs: CRM + POS also has no consent ledger, no campaigns and no privacy requests; the smallest
# base (twenty persons) also has the shortest history (one day).
SHAPES = {
    "crm_only": {"sources": ["crm"], "customers": 150, "days": 30},
    "pos_only": {"sources": ["pos"], "customers": 150, "days": 30},
    "web_only": {"sources": ["web"], "customers": 150, "days": 30},
    "crm_and_pos_without_consent": {"sources": ["crm", "pos"], "customers": 150, "days": 45},
    "twenty_persons_one_day": {"customers": 20, "days": 1},
    # the 60-day case that crashed propensity on features null at the older cutoffs
    "sixty_days": {"customers": 1000, "days": 60},
}


def _run(root: Path, shape: dict) -> dict:
    landing = root / "landing"
    generate(landing, seed=11, **{"days": 90, **shape})
    outcome, settings = run_pipeline(root, landing, MICROSEG_HMAC_KEY="shape-test-key")
    summary = _summary(settings)
    return {"outcome": outcome, "settings": settings, "landing": landing, "summary": summary}


def shape_fixture(names: list[str]):
    """A module-scoped `shape_run` fixture over these shapes: one whole-graph run each."""

    @pytest.fixture(scope="module", params=names)
    def shape_run(request, tmp_path_factory):
        run = _run(tmp_path_factory.mktemp(request.param), SHAPES[request.param])
        run["name"] = request.param
        run["sources"] = SHAPES[request.param].get("sources", SOURCES)
        return run

    return shape_run


def _served(run: dict) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(run["settings"].serving), read_only=True)


def _models(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    rows = con.execute(
        "select model_name, status, reason from ml.model_runs "
        "qualify row_number() over (partition by model_name order by trained_at desc) = 1"
    ).fetchall()
    return {name: {"status": status, "reason": reason} for name, status, reason in rows}


def test_shape_publishes_a_complete_snapshot(shape_run):
    outcome = shape_run["outcome"]
    assert outcome.step_failures == []
    assert outcome.failed_checks == []
    assert outcome.run_errors == []
    assert outcome.published and outcome.exit_code == 0
    con = _served(shape_run)
    tables = {
        f"{s}.{t}"
        for s, t in con.execute("select schema_name, table_name from duckdb_tables()").fetchall()
    }
    assert DOCUMENTED_TABLES <= tables


def test_shape_summary_names_each_absent_source(shape_run):
    text = "\n".join(shape_run["summary"])
    for source in SOURCES:
        absent = source not in shape_run["sources"]
        assert (f"{source:<10} no files landed" in text) == absent, source


def test_shape_maps_every_record_it_holds(shape_run):
    """Every CRM record and web device of the truth file has a person (quarantined rows aside)."""
    with open(shape_run["landing"] / "_truth" / "identity.csv", newline="") as handle:
        truth = [r for r in csv.DictReader(handle) if r["source_system"] != "pos"]
    with open(shape_run["landing"] / "_truth" / "faults.csv", newline="") as handle:
        faults = sum(1 for r in csv.DictReader(handle) if r["source"] in ("crm", "web"))
    con = duckdb.connect(str(shape_run["settings"].warehouse), read_only=True)
    mapped = con.execute(
        "select count(*) from marts.identity_map "
        "where source_system != 'pos' and person_id is not null"
    ).fetchone()[0]
    # erasure requests in the privacy/ folder remove their persons' records
    erased = sum(
        json.loads(detail)["tables"].get("marts.identity_map", 0)
        for (detail,) in con.execute(
            "select detail from audit.events where kind = 'erasure' and subject like 'batch:%'"
        ).fetchall()
    )
    assert len(truth) - faults - erased <= mapped <= len(truth)


def test_shape_records_what_it_could_not_train(shape_run):
    con = _served(shape_run)
    models = _models(con)
    assert {"behavioural_clusters", "purchase_propensity"} <= set(models)
    for name, metrics in models.items():
        status = metrics["status"]
        assert status in ("trained", "skipped", "fallback"), (name, status)
        if status != "trained":
            assert metrics.get("reason"), f"{name} {status} without a reason"
    scored = con.execute("select count(propensity_30d) from marts.customer_scores").fetchone()[0]
    assert (scored > 0) == (models["purchase_propensity"]["status"] == "trained")
    if "consent" not in shape_run["sources"]:
        # opt-in: without a ledger nobody is scored, segmented or exported
        assert models["purchase_propensity"]["status"] == "skipped"
        assert con.execute("select count(*) from marts.segment_members").fetchone()[0] == 0
    if shape_run["name"] == "twenty_persons_one_day":
        assert models["purchase_propensity"]["status"] == "skipped"
        assert "as_of minus 30 days" in models["purchase_propensity"]["reason"]
    if shape_run["name"] == "sixty_days":
        assert models["purchase_propensity"]["status"] == "trained"
        assert scored > 0
