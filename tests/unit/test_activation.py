"""Activation exports: consented, non-holdout members only, deltas that carry every exit to the
platform, and the minimum audience per platform."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date

import duckdb
import pyarrow.parquet as pq
import pytest

from warehouse.activation import below_minimum, export_segments, verify_exports
from warehouse.connection import configure_connection

DAY1, DAY2 = date(2026, 6, 29), date(2026, 6, 30)
LOW = {"google": 1, "meta": 1, "parquet": 1}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture()
def con():
    con = duckdb.connect()
    configure_connection(con, b"unit-key", "US")
    con.execute("create schema marts")
    con.execute(
        """
        create table marts.customer_profiles as select * from (values
            ('p1', 'ann@example.com', '+12127365000', true, true),
            ('p2', 'bob@example.com', null, false, true),
            ('p3', null, '+12127365001', true, false),
            ('p4', null, null, true, true),
            ('p5', 'eve@example.com', null, true, true),
            ('p6', 'dan@example.com', null, true, true)
        ) as t(person_id, email, phone, consent_ad_targeting, consent_personalization)
        """
    )
    for column in ("first_name", "last_name", "city", "state", "country", "postcode", "gender"):
        con.execute(f"alter table marts.customer_profiles add column {column} varchar")
    con.execute("alter table marts.customer_profiles add column date_of_birth date")
    con.execute(
        """
        create table marts.segment_definitions as select * from (values
            ('ads', 'Ads', 'ad_targeting'),
            ('mail', 'Mail', 'personalization'),
            ('stats', 'Stats', 'analytics')
        ) as t(segment_id, name, purpose)
        """
    )
    # p2 slipped into the ad segment without consent: the export must still leave them out.
    con.execute(
        """
        create table marts.segment_members as select * from (values
            ('ads', 'p1', 0.9, 1, false), ('ads', 'p2', 0.8, 2, false),
            ('ads', 'p3', 0.7, 3, false), ('ads', 'p4', 0.6, 4, false),
            ('ads', 'p5', 0.5, 5, true), ('ads', 'p6', 0.4, 6, false),
            ('mail', 'p1', 1.0, 1, false), ('mail', 'p3', 0.5, 2, false),
            ('stats', 'p1', 1.0, 1, false)
        ) as t(segment_id, person_id, score, rank, is_holdout)
        """
    )
    return con


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _manifest(root, segment, day, platform):
    return json.loads((root / segment / day.isoformat() / platform / "manifest.json").read_text())


def _emails(path):
    return {r["Email"] for r in _rows(path)}


def test_exports_only_consented_matchable_non_holdout_members(con, tmp_path):
    report = export_segments(con, tmp_path, DAY2, LOW)
    assert {s: {p: v["rows"] for p, v in r.items()} for s, r in report["segments"].items()} == {
        "ads": {"google": 3, "meta": 3},
        "mail": {"parquet": 1},
    }
    assert not (tmp_path / "stats").exists()  # analytics consent does not cover activation
    folder = tmp_path / "ads" / "2026-06-30"
    assert _emails(folder / "google" / "full.csv") == {
        sha("ann@example.com"),
        sha("dan@example.com"),
        "",  # p3: phone only
    }
    assert {r["PHONE"] for r in _rows(folder / "meta" / "full.csv")} == {
        sha("12127365000"),
        sha("12127365001"),
        "",
    }
    members = pq.read_table(tmp_path / "mail" / "2026-06-30" / "parquet" / "full.parquet")
    assert members.to_pylist() == [{"person_id": "p1", "rank": 1, "score": 1.0}]


def test_manifest_describes_every_file(con, tmp_path):
    export_segments(con, tmp_path, DAY2, LOW)
    folder = tmp_path / "ads" / "2026-06-30" / "google"
    manifest = _manifest(tmp_path, "ads", DAY2, "google")
    assert manifest["segment_id"] == "ads" and manifest["purpose"] == "ad_targeting"
    assert manifest["as_of"] == "2026-06-30" and manifest["format_version"] == 2
    assert manifest["status"] == "exported" and manifest["row_count"] == 3
    for kind in ("full", "adds", "removes"):
        entry = manifest["files"][kind]
        assert entry["sha256"] == hashlib.sha256((folder / entry["name"]).read_bytes()).hexdigest()
    assert manifest["files"]["adds"]["rows"] == 3 and manifest["files"]["removes"]["rows"] == 0
    assert manifest["baseline"] is None
    assert verify_exports(con, tmp_path, DAY2) == []


def test_revoked_consent_is_removed_on_the_platform(con, tmp_path):
    export_segments(con, tmp_path, DAY1, LOW)
    con.execute(
        "update marts.customer_profiles set consent_ad_targeting = false where person_id = 'p6'"
    )
    export_segments(con, tmp_path, DAY2, LOW)
    folder = tmp_path / "ads" / "2026-06-30" / "google"
    assert _emails(folder / "removes.csv") == {sha("dan@example.com")}
    assert _rows(folder / "adds.csv") == []
    assert sha("dan@example.com") not in _emails(folder / "full.csv")
    manifest = _manifest(tmp_path, "ads", DAY2, "google")
    assert manifest["baseline"]["as_of"] == "2026-06-29"
    assert verify_exports(con, tmp_path, DAY2) == []


def test_erased_person_is_removed_on_the_platform(con, tmp_path):
    export_segments(con, tmp_path, DAY1, LOW)
    # erasure deletes the person from every table: only the previous file still knows the row
    con.execute("delete from marts.customer_profiles where person_id = 'p1'")
    con.execute("delete from marts.segment_members where person_id = 'p1'")
    export_segments(con, tmp_path, DAY2, LOW)
    folder = tmp_path / "ads" / "2026-06-30"
    assert _emails(folder / "google" / "removes.csv") == {sha("ann@example.com")}
    assert {r["PHONE"] for r in _rows(folder / "meta" / "removes.csv")} == {sha("12127365000")}
    removed = pq.read_table(tmp_path / "mail" / "2026-06-30" / "parquet" / "removes.parquet")
    assert removed.column("person_id").to_pylist() == ["p1"]
    # the earlier day's files are gone: only the removes delta still names the row
    assert not (tmp_path / "ads" / "2026-06-29").exists()
    holding = [p for p in tmp_path.rglob("*.csv") if sha("ann@example.com") in p.read_text()]
    assert {p.name for p in holding} == {"removes.csv"}


def test_person_leaving_the_segment_is_removed_and_a_newcomer_added(con, tmp_path):
    export_segments(con, tmp_path, DAY1, LOW)
    con.execute("delete from marts.segment_members where segment_id = 'ads' and person_id = 'p6'")
    con.execute("update marts.segment_members set is_holdout = false where person_id = 'p5'")
    export_segments(con, tmp_path, DAY2, LOW)
    folder = tmp_path / "ads" / "2026-06-30" / "google"
    assert _emails(folder / "removes.csv") == {sha("dan@example.com")}
    assert _emails(folder / "adds.csv") == {sha("eve@example.com")}
    manifest = _manifest(tmp_path, "ads", DAY2, "google")
    assert manifest["files"]["removes"]["rows"] == 1 and manifest["files"]["adds"]["rows"] == 1


def test_same_day_rerun_deltas_against_the_export_it_replaces(con, tmp_path):
    export_segments(con, tmp_path, DAY2, LOW)
    con.execute(
        "update marts.customer_profiles set consent_ad_targeting = false where person_id = 'p3'"
    )
    export_segments(con, tmp_path, DAY2, LOW)
    folder = tmp_path / "ads" / "2026-06-30" / "google"
    assert len(_rows(folder / "full.csv")) == 2
    assert {r["Phone"] for r in _rows(folder / "removes.csv")} == {sha("+12127365001")}
    assert sorted(p.name for p in (tmp_path / "ads").iterdir()) == ["2026-06-30"]


def test_a_segment_gone_from_the_audience_files_gets_a_final_remove_everything(con, tmp_path):
    export_segments(con, tmp_path, DAY1, LOW)
    con.execute("delete from marts.segment_definitions where segment_id = 'ads'")
    con.execute("delete from marts.segment_members where segment_id = 'ads'")
    report = export_segments(con, tmp_path, DAY2, LOW)
    assert report["segments"]["ads"]["google"]["status"] == "retired"
    folder = tmp_path / "ads" / "2026-06-30" / "google"
    assert not (folder / "full.csv").exists()
    assert len(_rows(folder / "removes.csv")) == 3
    assert verify_exports(con, tmp_path, DAY2) == []
    # once withdrawn, nothing more is written for it
    later = export_segments(con, tmp_path, date(2026, 7, 1), LOW)
    assert "ads" not in later["segments"]


def test_below_the_platform_minimum_is_not_exported_and_withdrawn(con, tmp_path):
    export_segments(con, tmp_path, DAY1, LOW)
    report = export_segments(con, tmp_path, DAY2, {"google": 4, "meta": 3, "parquet": 1})
    assert report["segments"]["ads"]["google"]["status"] == "below_minimum"
    assert report["segments"]["ads"]["meta"]["status"] == "exported"
    google = tmp_path / "ads" / "2026-06-30" / "google"
    assert not (google / "full.csv").exists()
    assert len(_rows(google / "removes.csv")) == 3  # the platform's list is withdrawn
    assert below_minimum(tmp_path, DAY2) == [
        {"segment_id": "ads", "platform": "google", "rows": 3, "min_audience": 4}
    ]
    assert verify_exports(con, tmp_path, DAY2) == []


def test_default_minimum_is_100(con, tmp_path):
    report = export_segments(con, tmp_path, DAY2)
    assert {p["status"] for r in report["segments"].values() for p in r.values()} == {
        "below_minimum"
    }
    assert not list(tmp_path.rglob("full.*"))


def test_verify_catches_tampering_and_rows_without_consent(con, tmp_path):
    export_segments(con, tmp_path, DAY2, LOW)
    full = tmp_path / "ads" / "2026-06-30" / "google" / "full.csv"
    with open(full, "a") as handle:
        handle.write(f'"{sha("bob@example.com")}","","","","",""\n')
    problems = {p["problem"] for p in verify_exports(con, tmp_path, DAY2)}
    assert "full checksum differs" in problems
    assert "full: 4 rows, manifest says 3" in problems
    assert "1 rows not from a non-holdout member with ad_targeting consent" in problems


def test_verify_catches_a_plaintext_identifier(con, tmp_path):
    export_segments(con, tmp_path, DAY2, LOW)
    adds = tmp_path / "ads" / "2026-06-30" / "meta" / "adds.csv"
    with open(adds, "a") as handle:
        handle.write('"ann@example.com","","","","","","","","","","",""\n')
    problems = {p["problem"] for p in verify_exports(con, tmp_path, DAY2)}
    assert "adds: 1 rows with an unhashed identifier" in problems
    assert "1 adds rows not in the full file" in problems
