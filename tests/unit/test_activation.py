"""Activation exports: consented, non-holdout members only, hashed as platforms expect."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date

import duckdb
import pytest

from warehouse.activation import export_segments, verify_exports

AS_OF = date(2026, 6, 30)


@pytest.fixture()
def con():
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        """
        create table marts.customer_profiles as select * from (values
            ('p1', 'ann@example.com', '+12127365000', true, true),
            ('p2', 'bob@example.com', null, false, true),
            ('p3', null, '+12127365001', true, false),
            ('p4', null, null, true, true),
            ('p5', 'eve@example.com', null, true, true)
        ) as t(person_id, email, phone, consent_ad_targeting, consent_personalization)
        """
    )
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
            ('ads', 'p5', 0.5, 5, true),
            ('mail', 'p1', 1.0, 1, false), ('mail', 'p3', 0.5, 2, false),
            ('stats', 'p1', 1.0, 1, false)
        ) as t(segment_id, person_id, score, rank, is_holdout)
        """
    )
    return con


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_exports_only_consented_matchable_non_holdout_members(con, tmp_path):
    report = export_segments(con, tmp_path, AS_OF)
    assert report["segments"] == {"ads": 2, "mail": 1}
    assert not (tmp_path / "stats").exists()  # analytics consent does not cover activation
    rows = _rows(tmp_path / "ads" / "2026-06-30" / "audience.csv")
    assert [r["rank"] for r in rows] == ["1", "3"]
    assert rows[0]["hashed_email"] == hashlib.sha256(b"ann@example.com").hexdigest()
    assert rows[1]["hashed_phone"] == hashlib.sha256(b"+12127365001").hexdigest()
    # No plaintext identifier reaches an export file.
    text = (tmp_path / "ads" / "2026-06-30" / "audience.csv").read_text()
    assert "example.com" not in text and "+1212" not in text


def test_manifest_describes_the_file(con, tmp_path):
    export_segments(con, tmp_path, AS_OF)
    folder = tmp_path / "mail" / "2026-06-30"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["segment_id"] == "mail" and manifest["purpose"] == "personalization"
    assert manifest["row_count"] == 1 and manifest["as_of"] == "2026-06-30"
    assert manifest["sha256"] == hashlib.sha256((folder / "audience.csv").read_bytes()).hexdigest()
    assert verify_exports(con, tmp_path, AS_OF) == []


def test_rerun_replaces_the_days_folder_and_leaves_no_temporaries(con, tmp_path):
    export_segments(con, tmp_path, AS_OF)
    con.execute(
        "update marts.customer_profiles set consent_ad_targeting = false where person_id = 'p3'"
    )
    export_segments(con, tmp_path, AS_OF)
    assert len(_rows(tmp_path / "ads" / "2026-06-30" / "audience.csv")) == 1
    assert sorted(p.name for p in (tmp_path / "ads").iterdir()) == ["2026-06-30"]


def test_verify_catches_tampering_and_revoked_consent(con, tmp_path):
    export_segments(con, tmp_path, AS_OF)
    audience = tmp_path / "ads" / "2026-06-30" / "audience.csv"
    with open(audience, "a") as handle:
        handle.write(f'"{hashlib.sha256(b"bob@example.com").hexdigest()}",,9,0.1\n')
    problems = {p["problem"] for p in verify_exports(con, tmp_path, AS_OF)}
    assert "checksum differs" in problems
    assert "3 rows, manifest says 2" in problems
    assert "1 rows without ad_targeting consent" in problems
