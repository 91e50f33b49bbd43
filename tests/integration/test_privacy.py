"""Erasure that sticks: a person leaves every layer and file, and re-delivered data stays out."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from synthetic import generate
from tests.integration.conftest import run_pipeline
from warehouse.connection import configure_connection

pytestmark = pytest.mark.slow


def _run(root: Path):
    # a minimum audience of one: the small test audiences reach the platform files
    outcome, _ = run_pipeline(
        root,
        root / "landing",
        MICROSEG_HMAC_KEY="privacy-test-key",
        MICROSEG_PLATFORM_MIN_AUDIENCE="google=1,meta=1,parquet=1",
    )
    assert outcome.exit_code == 0, (outcome.failed_checks, outcome.step_failures)
    return outcome


def _crm_rows(landing: Path) -> list[dict]:
    rows = []
    for path in sorted((landing / "crm").rglob("*.csv")):
        with open(path, newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())[-10:]


def _pick_subject(landing: Path, uploaded: bytes = b"") -> dict:
    """A known person with their own email (not a family's), phone and a purchase history;
    one whose hashed email is in `uploaded` (platform files) when there is one."""
    rows = _crm_rows(landing)
    rows.sort(key=lambda r: _sha(r["email"].strip().lower()).encode() not in uploaded)
    emails = [r["email"].strip().lower() for r in rows if r["email"].strip()]
    phones = [_digits(r["phone"]) for r in rows if r["phone"].strip()]
    for row in rows:
        email = row["email"].strip().lower()
        if (
            email
            and emails.count(email) == 1
            and row["phone"].strip()
            and phones.count(_digits(row["phone"])) == 1  # not a family's shared phone
            and row["last_name"]
        ):
            return row
    raise AssertionError("no suitable subject in the generated data")


def _mentions(con: duckdb.DuckDBPyConnection, needle: str) -> list[str]:
    hits = []
    for schema, table, column in con.execute(
        "select table_schema, table_name, column_name from information_schema.columns "
        "where data_type = 'VARCHAR' and table_schema not in ('information_schema', 'pg_catalog')"
    ).fetchall():
        n = con.execute(
            f'select count(*) from "{schema}"."{table}" where contains(lower("{column}"), ?)',
            [needle.lower()],
        ).fetchall()[0][0]
        if n:
            hits.append(f"{schema}.{table}.{column}")
    return hits


def _files_mentioning(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and "landing" not in path.parts and not path.name.endswith(".duckdb"):
            if needle in path.read_bytes():
                found.append(str(path.relative_to(root)))
    return found


@pytest.fixture(scope="module")
def erased(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy")
    landing = root / "landing"
    generate(landing, customers=300, days=90, seed=11)
    _run(root)
    full_files = list((root / "exports").rglob("full.csv"))
    subject = _pick_subject(landing, b"".join(path.read_bytes() for path in full_files))
    email = subject["email"].strip().lower()
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    person = con.execute(
        "select person_id from marts.customer_profiles where email = ?", [email]
    ).fetchall()
    con.close()
    assert person, "the subject has a profile before erasure"
    uploaded = {
        # (segment, platform) of every platform list that held the person
        (path.relative_to(root / "exports").parts[0], path.parent.name)
        for path in full_files
        if _sha(email).encode() in path.read_bytes()
    }
    (landing / "privacy" / "erasure_request.csv").write_text(
        "request_id,request_type,subject_type,subject_id,requested_at\n"
        f"DSR-erase-1,erasure,email,{subject['email']},2026-06-30T12:00:00Z\n"
    )
    _run(root)
    return {
        "root": root,
        "subject": subject,
        "email": email,
        "person_id": person[0][0],
        "uploaded": uploaded,
    }


def test_person_is_gone_from_every_table(erased):
    root = erased["root"]
    for db in ("warehouse.duckdb", "serving.duckdb"):
        con = duckdb.connect(str(root / db), read_only=True)
        configure_connection(con, b"privacy-test-key")  # staging views compute keyed hashes
        try:
            assert _mentions(con, erased["email"]) == [], db
            assert _mentions(con, erased["person_id"]) == [], db
            # their CRM record's graph node (crm:<system>:<id>): edges, cuts, lineage
            assert _mentions(con, erased["subject"]["crm_customer_id"]) == [], db
            phone_digits = "".join(ch for ch in erased["subject"]["phone"] if ch.isdigit())[-7:]
            hits = _mentions(con, phone_digits)
            assert not [h for h in hits if "phone" in h], (db, hits)
        finally:
            con.close()


def test_no_file_the_pipeline_wrote_holds_their_email(erased):
    assert _files_mentioning(erased["root"], erased["email"].encode()) == []


def test_erasure_reaches_the_platform_lists(erased):
    """Every platform list that held the person gets their row in its removes delta; no full
    file or adds delta holds them any more."""
    exports = erased["root"] / "exports"
    hashed = _sha(erased["email"]).encode()
    assert erased["uploaded"], "the subject was in a platform file before erasure"
    holding = {
        (path.relative_to(exports).parts[0], path.parent.name, path.name)
        for path in exports.rglob("*.csv")
        if hashed in path.read_bytes()
    }
    assert holding == {
        (segment, platform, "removes.csv") for segment, platform in erased["uploaded"]
    }


def test_erasure_is_logged_once_and_keyed(erased):
    con = duckdb.connect(str(erased["root"] / "warehouse.duckdb"), read_only=True)
    try:
        events = con.execute(
            "select subject, rows, detail from audit.events where kind = 'erasure' "
            "and subject = 'DSR-erase-1'"
        ).fetchall()
        assert len(events) == 1 and events[0][1] == 1  # completed once, for one person
        batch = json.loads(events[0][2])["batch"]
        removed = con.execute(
            "select rows, detail from audit.events where subject = ?", [f"batch:{batch}"]
        ).fetchall()
        assert removed and removed[0][0] > 0
        assert json.loads(removed[0][1])["tables"]["raw.crm"] >= 1
        assert erased["email"] not in (removed[0][1] + events[0][2])
        keys = con.execute("select key_type, count(*) from privacy.suppression_list group by 1")
        assert dict(keys.fetchall()).get("email", 0) >= 1
    finally:
        con.close()


def test_redelivered_files_do_not_bring_them_back(erased):
    root = erased["root"]
    landing = root / "landing"
    # The same CRM export delivered again under a new name, as a source system would.
    for path in sorted((landing / "crm").rglob("*.csv")):
        shutil.copy(path, path.with_name("redelivered_" + path.name))
    _run(root)
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    configure_connection(con, b"privacy-test-key")
    try:
        assert _mentions(con, erased["email"]) == []
        suppressed = con.execute(
            "select coalesce(sum(rows_suppressed), 0) from raw.load_ledger"
        ).fetchall()[0][0]
        assert suppressed >= 1
    finally:
        con.close()


def _landing_source_keys(landing: Path) -> set[str]:
    """Every source key and direct identifier in the landing files, as delivered and normalised."""
    con = duckdb.connect()
    configure_connection(con, b"privacy-test-key")
    values: set[str] = set()
    reads = {
        "crm": (
            f"read_csv('{landing}/crm/**/*.csv', all_varchar = true)",
            ["crm_customer_id", "email", "phone", "loyalty_card_id", "web_user_id"],
        ),
        "pos": (
            f"read_csv('{landing}/pos/**/*.csv', all_varchar = true)",
            ["transaction_id", "loyalty_card_id", "receipt_email", "payment_card_token"],
        ),
        "web": (
            f"read_json('{landing}/web/**/*.jsonl', format = 'newline_delimited', "
            "ignore_errors = true, "
            "columns = {anonymous_id: 'varchar', user_id: 'varchar', email: 'varchar'})",
            ["anonymous_id", "user_id", "email"],
        ),
    }
    for relation, columns in reads.values():
        for column in columns:
            rows = con.execute(
                f"select distinct v from (select trim({column}) as v from {relation} union all "
                f"select lower(trim({column})) from {relation} union all "
                f"select normalize_phone({column}, 'US') from {relation}) where v <> ''"
            ).fetchall()
            values.update(v for (v,) in rows if v)
    con.close()
    return values


def _record_nodes(landing: Path) -> set[str]:
    con = duckdb.connect()
    nodes = {
        n
        for (n,) in con.execute(
            f"""
            select distinct 'crm:' || coalesce(nullif(trim(source_system), ''), 'crm') || ':'
                || trim(crm_customer_id)
            from read_csv('{landing}/crm/**/*.csv', all_varchar = true)
            union select distinct 'pos:' || transaction_id
            from read_csv('{landing}/pos/**/*.csv', all_varchar = true)
            union select distinct 'web:' || anonymous_id
            from read_json('{landing}/web/**/*.jsonl', format = 'newline_delimited',
                           ignore_errors = true, columns = {{anonymous_id: 'varchar'}})
            """
        ).fetchall()
        if n
    }
    con.close()
    return nodes


def test_serving_snapshot_holds_no_source_key_and_only_keyed_person_ids(erased):
    root = erased["root"]
    landing = root / "landing"
    keys = _landing_source_keys(landing)
    nodes = _record_nodes(landing)
    assert len(keys) > 500 and len(nodes) > 300  # the scan has something to find
    snap = duckdb.connect(str(root / "serving.duckdb"), read_only=True)
    try:
        columns = snap.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where data_type = 'VARCHAR' and table_schema in ('marts', 'ml')"
        ).fetchall()
        assert {(s, t) for s, t, _ in columns} >= {
            ("marts", "identity_map"),
            ("marts", "person_id_lineage"),
            ("marts", "identity_cuts"),
            ("marts", "customer_profiles"),
            ("marts", "segment_members"),
        }
        snap.execute(
            "create temp table needles as select unnest(?::varchar[]) as needle",
            [sorted(keys | nodes)],
        )
        snap.execute("create temp table served (place varchar, v varchar)")
        for schema, table, column in columns:
            snap.execute(
                f"insert into served select distinct '{schema}.{table}.{column}', \"{column}\" "
                f'from "{schema}"."{table}" where "{column}" is not null'
            )
        # no served value is, or contains, a source key, identifier or record node in clear
        leaks = snap.execute(
            "select place, v, needle from served join needles "
            "on v = needle or (length(needle) >= 6 and contains(v, needle)) limit 10"
        ).fetchall()
        assert leaks == []
        # every person id is keyed: none is the unkeyed md5 of a record node (salted or not)
        person_ids = {
            v
            for (v,) in snap.execute(
                "select distinct v from served where place like '%person_id'"
            ).fetchall()
        }
        assert person_ids and all(p.startswith("p_k") and len(p) == 18 for p in person_ids)
        unkeyed = {"p_" + hashlib.md5(n.encode()).hexdigest()[:16] for n in nodes}
        unkeyed |= {"p_" + hashlib.md5(f"{n}|2026-06-30".encode()).hexdigest()[:16] for n in nodes}
        assert not person_ids & unkeyed
        # identity_map: source_system, keyed source_key, person_id; a holder of a source key and
        # the HMAC key can still look the record up
        assert [c for _, t, c in columns if t == "identity_map"] == [
            "source_system",
            "source_key",
            "person_id",
        ]
        subject = erased["subject"]["crm_customer_id"]
        row = next(r for r in reversed(_crm_rows(landing)) if r["crm_customer_id"] != subject)
        keyed = hmac.new(
            b"privacy-test-key", row["crm_customer_id"].strip().encode(), hashlib.sha256
        ).hexdigest()
        found = snap.execute(
            "select count(*) from marts.identity_map where source_system = ? and source_key = ?",
            [row["source_system"], keyed],
        ).fetchone()[0]
        assert found == 1
    finally:
        snap.close()
    # the warehouse keeps the clear keys the pipeline needs
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        assert (
            con.execute(
                "select count(*) from marts.identity_map where source_key = ?",
                [row["crm_customer_id"].strip()],
            ).fetchone()[0]
            == 1
        )
    finally:
        con.close()
