"""The optional `enrichment/` source: ingest rules, stg_enrichment__postcodes (latest delivery
wins, postcodes normalised exactly as profiles' are) and the generator's geo_demographics.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest

from synthetic import generate
from tests.unit.test_dbt_identity import PROJECT_DIR, REPO_ROOT, create_identity_sources
from tests.unit.test_ingest import RUN_DATE, quarantine, rows, write
from warehouse.ingest import ensure_raw_schema, load_source

ENRICHMENT_HEADER = (
    "Country,POSTCODE,urbanicity,median_household_income,population_density,provider,tier\n"
)
# First delivery: two rows break a rule, 10001 is delivered again below.
DELIVERY_1 = ENRICHMENT_HEADER + (
    "gb,sw1a 1aa,Urban,41000,12000,geo1,a\n"
    "GB,ec1a1bb,urban,39000,9000,geo1,a\n"
    "US,10001,suburban,70000,1500,geo1,a\n"
    "US,10002,metropolitan,80000,9000,geo1,a\n"
    "US,10003,rural,-5,40,geo1,a\n"
    "US, 02134 ,RURAL ,52000,300,geo1,a\n"
    "ca,k1a0b1,urban,65000,3000,geo1,a\n"
)
# Second delivery, loaded later: the row of 10001 wins (written differently, same postcode).
DELIVERY_2 = ENRICHMENT_HEADER + "us,10001 ,urban,91000,20000,geo2,b\n"

CRM_HEADER = (
    "crm_customer_id,source_system,first_name,last_name,email,postcode,country,created_at,"
    "updated_at\n"
)
# (crm_customer_id, postcode as the CRM holds it, country): one person each.
CRM_ADDRESSES = [
    ("gb1", "sw1a1aa ", "GB"),
    ("gb2", "EC1A  1BB", "gb"),
    ("us1", " 10001", "US"),
    ("us2", "02134", "us"),
    ("ca1", "K1A 0B1", "CA"),
    ("us3", "10002", "US"),  # its enrichment row was quarantined
]
CRM = CRM_HEADER + "".join(
    f"{cid},crm,Name{i},Person,{cid}@example.com,{postcode},{country},"
    "2026-01-01T00:00:00Z,2026-06-01T00:00:00Z\n"
    for i, (cid, postcode, country) in enumerate(CRM_ADDRESSES)
)
# What stg_enrichment__postcodes must hold: the one postcode form profiles use.
EXPECTED_POSTCODES = {
    ("CA", "K1A 0B1"): ("urban", 65000.0, "geo1"),
    ("GB", "EC1A 1BB"): ("urban", 39000.0, "geo1"),
    ("GB", "SW1A 1AA"): ("urban", 41000.0, "geo1"),
    ("US", "02134"): ("rural", 52000.0, "geo1"),
    ("US", "10001"): ("urban", 91000.0, "geo2"),
}


def _load_landing(con: duckdb.DuckDBPyConnection, landing: Path) -> dict:
    """Load the CRM file and both enrichment deliveries, the second in a later load."""
    ensure_raw_schema(con)
    write(landing, "crm/customers.csv", CRM)
    load_source(con, "crm", landing, RUN_DATE)
    write(landing, "enrichment/geo_2026-05.csv", DELIVERY_1)
    first = load_source(con, "enrichment", landing, RUN_DATE)
    write(landing, "enrichment/geo_2026-06.csv", DELIVERY_2)
    second = load_source(con, "enrichment", landing, RUN_DATE)
    return {"first": first, "second": second}


# --- ingest ------------------------------------------------------------------------------------


def test_absent_enrichment_folder_is_an_empty_table(tmp_path):
    con = duckdb.connect()
    result = load_source(con, "enrichment", tmp_path / "landing", RUN_DATE)
    assert (result.files_seen, result.rows_loaded) == (0, 0)
    assert rows(con, "select count(*) from raw.enrichment") == [(0,)]
    types = dict(rows(con, "select column_name, column_type from (describe raw.enrichment)"))
    assert types["median_household_income"] == types["population_density"] == "DOUBLE"
    assert types["country"] == types["postcode"] == types["urbanicity"] == "VARCHAR"


def test_enrichment_loads_and_quarantines_rows_with_their_rule(tmp_path):
    con = duckdb.connect()
    landing = tmp_path / "landing"
    loads = _load_landing(con, landing)
    first, second = loads["first"], loads["second"]
    assert (first.files_loaded, first.rows_loaded, first.rows_quarantined) == (1, 5, 2)
    assert (second.files_loaded, second.files_skipped_unchanged, second.rows_loaded) == (1, 1, 1)
    assert quarantine(con, "enrichment") == [
        ("enrichment/geo_2026-05.csv", 4, "value_not_allowed:urbanicity"),
        ("enrichment/geo_2026-05.csv", 5, "negative:median_household_income"),
    ]
    # kept as delivered: staging trims and normalises; the unknown column goes to _extra
    got = rows(
        con,
        "select country, postcode, urbanicity, median_household_income, _extra"
        " from raw.enrichment where _file like '%06.csv'",
    )
    assert got == [("us", "10001 ", "urban", 91000.0, '{"tier":"b"}')]


def test_enrichment_file_without_postcode_is_rejected_naming_it(tmp_path):
    con = duckdb.connect()
    landing = tmp_path / "landing"
    write(landing, "enrichment/bad.csv", "country,zip,urbanicity\nUS,10001,urban\n")
    result = load_source(con, "enrichment", landing, RUN_DATE)
    assert len(result.files_rejected) == 1
    path, message = result.files_rejected[0]
    assert path == "enrichment/bad.csv"
    assert "missing required column postcode" in message


# --- dbt: stg_enrichment__postcodes and customer_profiles --------------------------------------


def _dbt_build(path: Path, tmp: Path, select: list[str]) -> None:
    from dbt.cli.main import dbtRunner

    staging = sorted(p.name for p in (PROJECT_DIR / "models" / "staging").iterdir() if p.is_dir())
    # only this module's unit tests: other models' unit tests are their owners' to run
    foreign_unit_tests = [
        f"test_type:unit,path:models/staging/{name}" for name in staging if name != "enrichment"
    ] + ["test_type:unit,path:models/intermediate", "test_type:unit,path:models/marts"]
    mp = pytest.MonkeyPatch()
    mp.setenv("MICROSEG_WAREHOUSE", str(path))
    mp.setenv("MICROSEG_HMAC_KEY", "test-key")
    mp.setenv("MICROSEG_PHONE_REGION", "US")
    mp.setenv("MICROSEG_REPO_ROOT", str(REPO_ROOT))
    try:
        result = dbtRunner().invoke(
            [
                "build",
                "--select", *select,
                "--exclude", *foreign_unit_tests,
                "--vars", "{as_of: '2026-06-30'}",
                "--project-dir", str(PROJECT_DIR),
                "--profiles-dir", str(PROJECT_DIR),
                "--target-path", str(tmp / "target"),
                "--log-path", str(tmp / "logs"),
                "--quiet",
            ]
        )  # fmt: skip
    finally:
        mp.undo()
    failures = [
        f"{r.node.name}: {r.status} {r.message}"
        for r in (result.result or [])
        if str(r.status) not in ("success", "pass")
    ]
    assert result.success, (result.exception, failures)
    ran = {r.node.name for r in result.result}
    assert "stg_enrichment__postcodes" in ran
    assert any(name.startswith("stg_enrichment__postcodes_latest") for name in ran), ran


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("dbt_enrichment")
    path = tmp / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        _load_landing(con, tmp / "landing")
        create_identity_sources(con, tmp, [], [])
    _dbt_build(path, tmp, ["+identity_map", "+customer_profiles", "stg_enrichment__postcodes"])
    con = duckdb.connect(str(path))
    yield con
    con.close()


def test_staging_keeps_the_latest_delivery_per_normalised_postcode(warehouse):
    got = {
        (country, postcode): (urbanicity, income, provider)
        for country, postcode, urbanicity, income, provider in rows(
            warehouse,
            "select country, postcode, urbanicity, median_household_income, provider"
            " from staging.stg_enrichment__postcodes",
        )
    }
    assert got == EXPECTED_POSTCODES
    source = rows(
        warehouse,
        "select source_file from staging.stg_enrichment__postcodes where postcode = '10001'",
    )
    assert source == [("enrichment/geo_2026-06.csv",)]


def test_postcodes_normalise_as_profiles_do_and_join_the_golden_record(warehouse):
    profiles = rows(
        warehouse,
        """
        select ids.source_key, profiles.country, profiles.postcode, geo.urbanicity
        from marts.identity_map as ids
        inner join marts.customer_profiles as profiles on ids.person_id = profiles.person_id
        left join staging.stg_enrichment__postcodes as geo
            on profiles.country = geo.country and profiles.postcode = geo.postcode
        where ids.source_system = 'crm'
        order by ids.source_key
        """,
    )
    assert profiles == [
        ("ca1", "CA", "K1A 0B1", "urban"),
        ("gb1", "GB", "SW1A 1AA", "urban"),  # 'sw1a1aa ' in the CRM, 'sw1a 1aa' delivered
        ("gb2", "GB", "EC1A 1BB", "urban"),  # 'EC1A  1BB' in the CRM, 'ec1a1bb' delivered
        ("us1", "US", "10001", "urban"),  # ' 10001' in the CRM, '10001 ' redelivered
        ("us2", "US", "02134", "rural"),
        ("us3", "US", "10002", None),  # its enrichment row was quarantined
    ]
    # the same macro over the same text gives the same value in both staging models
    crm = dict(rows(warehouse, "select crm_customer_id, postcode from staging.stg_crm__customers"))
    assert crm == {cid: postcode for cid, _, postcode, _ in profiles}


# --- generator ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("enrichment_zone")
    return out, generate(out, customers=400, days=7, seed=13)


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_generator_covers_every_crm_and_web_postcode(generated):
    out, summary = generated
    path = out / "enrichment" / "geo_demographics.csv"
    geo = _csv(path)
    assert summary["files"]["enrichment"] == 1 and summary["rows"]["enrichment"] == len(geo)
    assert list(geo[0]) == [
        "country",
        "postcode",
        "urbanicity",
        "median_household_income",
        "population_density",
        "provider",
    ]
    keys = {(r["country"], r["postcode"]) for r in geo}
    assert len(keys) == len(geo)  # one row per (country, postcode)
    crm = [r for p in sorted((out / "crm").rglob("*.csv")) for r in _csv(p)]
    crm_keys = {(r["country"], r["postcode"]) for r in crm if r["country"] and r["postcode"]}
    assert len(crm_keys) > 50 and crm_keys <= keys, crm_keys - keys
    # records without a country still have a postcode the provider lists
    postcodes = {postcode for _, postcode in keys}
    assert {r["postcode"] for r in crm if r["postcode"]} <= postcodes
    assert {c for c, _ in crm_keys} == {"US", "GB"}
    web = [
        json.loads(line)
        for p in sorted((out / "web").glob("*.jsonl"))
        for line in p.read_text().splitlines()
        if line.startswith("{") and line.endswith("}")
    ]
    # a web event's postcode is the person's home one (its geo_country is where the event was)
    web_postcodes = {e["geo_postcode"] for e in web if e.get("geo_postcode")}
    assert web_postcodes and web_postcodes <= postcodes


def test_generated_geo_demographics_follow_the_urbanicity(generated, tmp_path):
    out, _ = generated
    con = duckdb.connect()
    load_source(con, "enrichment", out, RUN_DATE)
    assert rows(con, "select count(*) from raw.enrichment_quarantine") == [(0,)]
    by_class = {
        u: (lo, hi, income)
        for u, lo, hi, income in rows(
            con,
            "select urbanicity, min(population_density), max(population_density),"
            " median(median_household_income) from raw.enrichment where country = 'US'"
            " group by 1",
        )
    }
    assert set(by_class) == {"urban", "suburban", "rural"}
    assert by_class["rural"][1] < by_class["suburban"][0]
    assert by_class["suburban"][1] < by_class["urban"][0]
    assert by_class["suburban"][2] > by_class["urban"][2] > by_class["rural"][2]
    # a metro's central postcodes are urban: Manhattan's first ZIPs, all of London's list
    central = rows(
        con,
        "select distinct urbanicity from raw.enrichment"
        " where postcode in ('10001', '10002') or country = 'GB'",
    )
    assert central == [("urban",)]
    # the values depend on the seed only
    again = tmp_path / "again"
    generate(again, customers=30, days=2, seed=13)
    path = Path("enrichment") / "geo_demographics.csv"
    assert (again / path).read_bytes() == (out / path).read_bytes()
    other = tmp_path / "other"
    generate(other, customers=30, days=2, seed=14, sources=["crm", "enrichment"])
    assert (other / path).read_bytes() != (out / path).read_bytes()
    assert _csv(other / path)[0]["postcode"] == _csv(out / path)[0]["postcode"]


def test_generator_writes_enrichment_only_when_selected(tmp_path):
    summary = generate(tmp_path / "zone", customers=20, days=2, seed=1, sources=["crm"])
    assert not (tmp_path / "zone" / "enrichment").exists()
    assert "enrichment" not in summary["files"]
