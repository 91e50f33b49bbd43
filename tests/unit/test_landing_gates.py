"""Landing gates: rejected files, quarantine share and schema drift fail (or warn) the raw assets'
checks, naming the file and the rule; the Dagster check blocks what is downstream."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expectations.runner import validate_landing
from orchestration.defs.ingest.assets import ingest_assets
from orchestration.defs.quality.checks import landing_checks
from orchestration.defs.resources import build_resources
from orchestration.settings import SettingsError, load_settings
from warehouse.ingest import load_source
from warehouse.sources import LandingGates

RUN_DATE = date(2026, 6, 30)
POS = "transaction_id,line_number,transacted_at,quantity,unit_price,is_return"
CRM = "crm_customer_id,first_name,email"
DEFAULT = LandingGates()


def pos_csv(good: int, bad: int = 0, bad_rule: str = "price") -> str:
    """`good` valid POS lines then `bad` lines quarantined (negative price by default)."""
    lines = [POS] + [f"t{i},1,2026-06-01 10:00:00,1,2.5,false" for i in range(good)]
    broken = {"price": "-1", "type": "abc"}[bad_rule]
    lines += [f"b{i},1,2026-06-01 10:00:00,1,{broken},false" for i in range(bad)]
    return "\n".join(lines) + "\n"


def write(landing: Path, rel: str, text: str) -> None:
    path = landing / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def gates(con, source, run_id=None, landing=None, policy=DEFAULT):
    present = None
    if landing is not None:
        present = [p.relative_to(landing).as_posix() for p in landing.rglob("*") if p.is_file()]
    return validate_landing(con, source, policy, present=present, run_id=run_id)


def findings(result) -> list[tuple[str, str]]:
    return [(f["severity"], f["finding"]) for f in result.failing_examples]


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


def load(con, landing, source, run_id="run-1"):
    return load_source(con, source, landing, RUN_DATE, run_id=run_id)


# ----- rejected files ------------------------------------------------------------------------


def test_rejected_file_fails_naming_file_and_rule(con, landing):
    write(landing, "crm/2026/day2.csv", "first_name,email\nAda,a@x.io\n")
    load(con, landing, "crm")
    result = gates(con, "crm", "run-1", landing)["rejected_files"]
    assert not result.success and result.severity == "error"
    assert findings(result) == [
        ("error", "crm/2026/day2.csv rejected: missing required column crm_customer_id")
    ]


def test_rejected_file_stays_failed_until_fixed_or_removed(con, landing):
    write(landing, "pos/a.csv", pos_csv(2).replace("unit_price", "price"))
    load(con, landing, "pos", "run-1")
    # a later run that loads nothing new still fails: the sensor's retry cannot wave it through
    load(con, landing, "pos", "run-2")
    assert not gates(con, "pos", "run-2", landing)["rejected_files"].success
    # re-delivered fixed under the same path: the current version loads and clears it
    write(landing, "pos/a.csv", pos_csv(2))
    load(con, landing, "pos", "run-3")
    assert gates(con, "pos", "run-3", landing)["rejected_files"].success
    # a rejected file removed from the landing zone no longer blocks (it loaded nothing)
    write(landing, "pos/b.csv", "nothing,useful\n1,2\n")
    load(con, landing, "pos", "run-4")
    assert not gates(con, "pos", "run-4", landing)["rejected_files"].success
    (landing / "pos" / "b.csv").unlink()
    assert gates(con, "pos", "run-5", landing)["rejected_files"].success


def test_rejected_file_policy_warn_reports_once(con, landing):
    write(landing, "pos/a.csv", pos_csv(2).replace("unit_price", "price"))
    load(con, landing, "pos", "run-1")
    warn = LandingGates(rejected_file="warn")
    result = gates(con, "pos", "run-1", landing, warn)["rejected_files"]
    assert (result.success, result.severity) == (False, "warn")
    assert "pos/a.csv rejected: missing required column unit_price" in findings(result)[0][1]
    load(con, landing, "pos", "run-2")
    assert gates(con, "pos", "run-2", landing, warn)["rejected_files"].success


def test_absent_or_empty_source_passes_every_gate(con, landing):
    load(con, landing, "web")
    (landing / "consent").mkdir(parents=True)
    load(con, landing, "consent")
    for source in ("web", "consent"):
        assert all(r.success for r in gates(con, source, "run-1", landing).values())


# ----- quarantine share ----------------------------------------------------------------------


def test_quarantine_share_10_percent_warns_30_percent_fails(con, landing):
    write(landing, "pos/ten.csv", pos_csv(27, 3))
    write(landing, "pos/thirty.csv", pos_csv(21, 9))
    write(landing, "pos/clean.csv", pos_csv(30))
    load(con, landing, "pos")
    result = gates(con, "pos", "run-1", landing)["quarantine_share"]
    assert result.severity == "error" and result.observed["errors"] == 1
    assert findings(result) == [
        (
            "error",
            "pos/thirty.csv: 30% of 30 rows quarantined (limit 25%); "
            "top rules: pos_negative_price 9",
        ),
        (
            "warn",
            "pos/ten.csv: 10% of 30 rows quarantined (limit 5%); top rules: pos_negative_price 3",
        ),
    ]
    # the warning is told in the run that loaded the file; the error stands in the next run
    again = gates(con, "pos", "run-2", landing)["quarantine_share"]
    assert [f for f, _ in findings(again)] == ["error"]


def test_quarantine_limits_per_source(con, landing):
    write(landing, "pos/thirty.csv", pos_csv(21, 9))
    load(con, landing, "pos")
    lenient = LandingGates(quarantine_warn_share=0.2, quarantine_error_share=0.5)
    result = gates(con, "pos", "run-1", landing, lenient)["quarantine_share"]
    assert result.severity == "warn" and "limit 20%" in findings(result)[0][1]


def test_tiny_file_warns_unless_every_row_is_quarantined(con, landing):
    write(landing, "pos/tiny.csv", pos_csv(2, 1))
    write(landing, "pos/broken.csv", pos_csv(0, 3))
    load(con, landing, "pos")
    result = gates(con, "pos", "run-1", landing)["quarantine_share"]
    assert findings(result) == [
        (
            "error",
            "pos/broken.csv: 100% of 3 rows quarantined (limit 25%); "
            "top rules: pos_negative_price 3",
        ),
        (
            "warn",
            "pos/tiny.csv: 33.3% of 3 rows quarantined (limit 25%); only 3 rows (< 20), so a "
            "warning; top rules: pos_negative_price 1",
        ),
    ]


# ----- schema drift --------------------------------------------------------------------------


def test_unknown_column_warns_once_per_file_and_lands_in_extra(con, landing):
    write(landing, "crm/a.csv", CRM + ",loyalty_tier,shoe_size\nc1,Ada,a@x.io,gold,38\n")
    write(landing, "crm/b.csv", CRM + ",loyalty_tier\nc2,Bob,b@x.io,silver\n")
    load(con, landing, "crm", "run-1")
    result = gates(con, "crm", "run-1", landing)["schema_drift"]
    assert (result.success, result.severity) == (False, "warn")
    assert findings(result) == [
        ("warn", "crm/a.csv: unknown column(s) `loyalty_tier`, `shoe_size` kept in _extra"),
        ("warn", "crm/b.csv: unknown column(s) `loyalty_tier` kept in _extra"),
    ]
    extras = con.execute("select _extra from raw.crm order by crm_customer_id").fetchall()
    assert [json.loads(e) for (e,) in extras] == [
        {"loyalty_tier": "gold", "shoe_size": "38"},
        {"loyalty_tier": "silver"},
    ]
    # once: the next run, loading nothing new, has nothing to say
    load(con, landing, "crm", "run-2")
    assert gates(con, "crm", "run-2", landing)["schema_drift"].success


def test_renamed_column_errors_naming_both(con, landing):
    write(landing, "crm/a.csv", "crm_customer_id,first_name,e-mail\nc1,Ada,a@x.io\n")
    load(con, landing, "crm")
    result = gates(con, "crm", "run-1", landing)["schema_drift"]
    assert result.severity == "error"
    assert findings(result) == [
        ("error", "crm/a.csv: column `email` missing, unknown column `e-mail` found: renamed?")
    ]
    # the value is not lost: it waits in _extra
    assert con.execute("select email, _extra from raw.crm").fetchone() == (
        None,
        '{"e-mail":"a@x.io"}',
    )
    warn = LandingGates(schema_drift="warn")
    assert gates(con, "crm", "run-1", landing, warn)["schema_drift"].severity == "warn"


def test_a_column_whose_name_only_holds_a_known_one_is_a_warned_guess(con, landing):
    # a CRM export with a lead `source` and no source_system (it defaults), and a longer name
    write(
        landing,
        "crm/a.csv",
        "crm_customer_id,first_name,email_address,source\nc1,Ada,a@x.io,fair\n",
    )
    load(con, landing, "crm")
    result = gates(con, "crm", "run-1", landing)["schema_drift"]
    assert result.severity == "warn"
    assert sorted(findings(result)) == [
        (
            "warn",
            "crm/a.csv: column `email` missing, unknown column `email_address` found: renamed? "
            "(names only overlap, so a warning)",
        ),
        (
            "warn",
            "crm/a.csv: column `source_system` missing, unknown column `source` found: renamed? "
            "(names only overlap, so a warning)",
        ),
    ]


def test_renamed_required_column_rejects_naming_both(con, landing):
    write(landing, "pos/a.csv", pos_csv(3).replace("transacted_at", "transacted"))
    load(con, landing, "pos")
    [(severity, text)] = findings(gates(con, "pos", "run-1", landing)["rejected_files"])
    assert severity == "error"
    assert text == (
        "pos/a.csv rejected: missing required column transacted_at; column `transacted_at` "
        "missing, unknown column `transacted` found: renamed?"
    )


def test_retyped_text_column_errors_naming_column_and_types(con, landing):
    words = ["one", "two", "three"] * 8
    lines = [POS] + [f"t{i},1,2026-06-01,{w},2.5,false" for i, w in enumerate(words)]
    write(landing, "pos/words.csv", "\n".join(lines) + "\n")
    load(con, landing, "pos")
    result = gates(con, "pos", "run-1", landing)["schema_drift"]
    assert findings(result) == [
        (
            "error",
            "pos/words.csv: column `quantity` retyped: expected DOUBLE, found VARCHAR "
            "(24 of 24 non-empty values do not cast, e.g. 'one', 'two', 'three')",
        )
    ]


def test_retyped_parquet_column_names_the_file_type(con, landing):
    # transacted_at delivered as epoch seconds (int64): no row casts to a timestamp
    table = pa.table(
        {
            "transaction_id": [f"t{i}" for i in range(25)],
            "transacted_at": pa.array([1_780_000_000 + i for i in range(25)], pa.int64()),
            "quantity": [1.0] * 25,
            "unit_price": [2.5] * 25,
        }
    )
    (landing / "pos").mkdir(parents=True)
    pq.write_table(table, landing / "pos" / "epoch.parquet")
    load(con, landing, "pos")
    [(severity, text)] = findings(gates(con, "pos", "run-1", landing)["schema_drift"])
    assert severity == "error"
    assert text.startswith(
        "pos/epoch.parquet: column `transacted_at` retyped: expected TIMESTAMP, found BIGINT "
        "(25 of 25 non-empty values do not cast"
    )


def test_epoch_numbers_in_text_are_found_to_be_integers(con, landing):
    lines = [POS] + [f"t{i},1,{1_780_000_000 + i},1,2.5,false" for i in range(3)]
    write(landing, "pos/epoch.csv", "\n".join(lines) + "\n")
    load(con, landing, "pos")
    [(severity, text)] = findings(gates(con, "pos", "run-1", landing)["schema_drift"])
    # a tiny file, but every value fails: still an error
    assert severity == "error" and "expected TIMESTAMP, found BIGINT (3 of 3" in text


def test_a_few_bad_values_are_not_a_retyped_column(con, landing):
    lines = [POS] + [f"t{i},1,2026-06-01,{'x' if i < 2 else 1},2.5,false" for i in range(30)]
    write(landing, "pos/some.csv", "\n".join(lines) + "\n")
    # tiny: half the values fail but fewer than the minimum rows: a warning
    write(landing, "pos/tiny.csv", POS + "\nt1,1,2026-06-01,x,2.5,false\nt2,1,2026-06-01,1,2,f\n")
    load(con, landing, "pos")
    assert findings(gates(con, "pos", "run-1", landing)["schema_drift"]) == [
        (
            "warn",
            "pos/tiny.csv: column `quantity` retyped: expected DOUBLE, found VARCHAR (1 of 2 "
            "non-empty values do not cast, e.g. 'x'); only 2 values (< 20), so a warning",
        )
    ]


# ----- settings ------------------------------------------------------------------------------


def test_gate_settings_default_and_per_source_overrides(tmp_path):
    base = {"MICROSEG_WAREHOUSE": str(tmp_path / "w.duckdb"), "MICROSEG_HMAC_KEY": "k"}
    assert load_settings(base).landing_gates["pos"] == DEFAULT
    settings = load_settings(
        {
            **base,
            "MICROSEG_REJECTED_FILE_POLICY_WEB": "WARN",
            "MICROSEG_SCHEMA_DRIFT_POLICY": "warn",
            "MICROSEG_SCHEMA_DRIFT_POLICY_CRM": "error",
            "MICROSEG_QUARANTINE_WARN_SHARE": "0.1",
            "MICROSEG_QUARANTINE_ERROR_SHARE_POS": "0.5",
            "MICROSEG_GATE_MIN_ROWS": "5",
        }
    )
    web, crm, pos = (settings.landing_gates[s] for s in ("web", "crm", "pos"))
    assert (web.rejected_file, crm.rejected_file) == ("warn", "error")
    assert (web.schema_drift, crm.schema_drift) == ("warn", "error")
    assert (pos.quarantine_warn_share, pos.quarantine_error_share, pos.min_rows) == (0.1, 0.5, 5)
    assert web.quarantine_error_share == 0.25
    resource = build_resources(settings)["warehouse"]
    assert resource.landing_gates("web") == web and resource.landing_gates("pos") == pos


def test_env_example_lists_the_gate_defaults(tmp_path):
    from orchestration.settings import GATE_SETTINGS, REPO_ROOT, _dotenv

    example = _dotenv(REPO_ROOT / ".env.example")
    assert set(GATE_SETTINGS) <= set(example)
    env = {
        **{k: v for k, v in example.items() if k in GATE_SETTINGS},
        "MICROSEG_WAREHOUSE": str(tmp_path / "w.duckdb"),
        "MICROSEG_HMAC_KEY": "k",
    }
    assert set(load_settings(env).landing_gates.values()) == {DEFAULT}


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("MICROSEG_REJECTED_FILE_POLICY", "block", "MICROSEG_REJECTED_FILE_POLICY"),
        ("MICROSEG_REJECTED_FILE_POLICY_WEBB", "warn", "WEBB"),
        ("MICROSEG_QUARANTINE_ERROR_SHARE_POS", "1.5", "MICROSEG_QUARANTINE_ERROR_SHARE_POS"),
        ("MICROSEG_QUARANTINE_WARN_SHARE", "0.3", "warn share 0.3 is above its error share"),
        ("MICROSEG_GATE_MIN_ROWS", "0", "MICROSEG_GATE_MIN_ROWS"),
    ],
)
def test_bad_gate_settings_are_named(tmp_path, name, value, match):
    env = {"MICROSEG_WAREHOUSE": str(tmp_path / "w.duckdb"), "MICROSEG_HMAC_KEY": "k"}
    with pytest.raises(SettingsError, match=match):
        load_settings({**env, name: value})


# ----- through Dagster: the gate blocks what is downstream -----------------------------------


def _run_pos(tmp_path: Path, landing: Path, extra_env: dict[str, str]):
    env = {
        "MICROSEG_WAREHOUSE": str(tmp_path / "w.duckdb"),
        "MICROSEG_LANDING_DIR": str(landing),
        "MICROSEG_HMAC_KEY": "k",
        **extra_env,
    }
    resources = build_resources(load_settings(env))

    @dg.asset(deps=[dg.AssetKey(["raw", "pos"])])
    def downstream() -> None:
        return None

    pos_asset = next(a for a in ingest_assets if a.key == dg.AssetKey(["raw", "pos"]))
    pos_check = next(c for c in landing_checks if c.node_def.name == "landing_gates_pos")
    defs = dg.Definitions(
        assets=[pos_asset, downstream],
        asset_checks=[pos_check],
        resources={"warehouse": resources["warehouse"]},
        jobs=[dg.define_asset_job("job", selection=dg.AssetSelection.all())],
    )
    result = defs.resolve_job_def("job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    evaluations = {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    materialised = {
        "/".join(e.asset_key.path)
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    return evaluations, materialised


def test_dagster_gate_blocks_downstream_on_a_rejected_file(tmp_path, landing):
    write(landing, "pos/ok.csv", pos_csv(3))
    write(landing, "pos/sub/bad.csv", pos_csv(3).replace("quantity", "qty"))
    evaluations, materialised = _run_pos(tmp_path, landing, {})
    rejected = evaluations["rejected_files"]
    assert not rejected.passed and rejected.severity == dg.AssetCheckSeverity.ERROR
    assert rejected.description.startswith(
        "pos/sub/bad.csv rejected: missing required column quantity"
    )
    assert evaluations["quarantine_share"].passed
    assert "raw/pos" in materialised and "downstream" not in materialised


def test_dagster_gate_per_source_warn_lets_the_run_through(tmp_path, landing):
    write(landing, "pos/ok.csv", pos_csv(3))
    write(landing, "pos/sub/bad.csv", pos_csv(3).replace("quantity", "qty"))
    evaluations, materialised = _run_pos(
        tmp_path, landing, {"MICROSEG_REJECTED_FILE_POLICY_POS": "warn"}
    )
    rejected = evaluations["rejected_files"]
    assert not rejected.passed and rejected.severity == dg.AssetCheckSeverity.WARN
    assert "pos/sub/bad.csv" in rejected.description
    assert "downstream" in materialised
