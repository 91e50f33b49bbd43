"""Retention: events older than the configured window are out of staging, hence of every model."""

from __future__ import annotations

from pathlib import Path

import duckdb
from dbt.cli.main import dbtRunner

from warehouse.connection import configure_connection
from warehouse.ingest import ensure_raw_schema

PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"


def test_staging_keeps_only_the_retention_window(tmp_path, monkeypatch):
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    ensure_raw_schema(con)
    # as_of 2026-06-30 (ends 07-01 00:00), 30 days retained: 2026-06-01 00:00 is the first kept.
    times = ["2026-05-31 23:59:59", "2026-06-01 00:00:00", "2026-06-30 12:00:00"]
    for i, at in enumerate(times):
        con.execute(
            "insert into raw.pos (transaction_id, line_number, transacted_at, quantity, "
            "unit_price, is_return, _file, _row_number, _loaded_at) "
            "values (?, 1, ?::timestamp, 1, 5, false, 'pos/a.csv', ?, now())",
            [f"T{i}", at, i + 1],
        )
        con.execute(
            "insert into raw.web (event_id, event_at, event_type, anonymous_id, _file, "
            "_row_number, _loaded_at) values (?, ?::timestamp, 'page_view', 'a1', 'web/a.jsonl', "
            "?, now())",
            [f"E{i}", at, i + 1],
        )
    con.close()
    monkeypatch.setenv("MICROSEG_WAREHOUSE", str(path))
    monkeypatch.setenv("MICROSEG_HMAC_KEY", "k")
    monkeypatch.setenv("MICROSEG_REPO_ROOT", str(PROJECT.parent))
    result = dbtRunner().invoke(
        [
            "run",
            "--project-dir", str(PROJECT),
            "--profiles-dir", str(PROJECT),
            "--target-path", str(tmp_path / "target"),
            "--log-path", str(tmp_path / "logs"),
            "--vars", "{as_of: '2026-06-30', retention_days: 30}",
            "--select", "stg_pos__transaction_lines", "stg_web__events",
        ]
    )  # fmt: skip
    assert result.success, result.exception
    con = duckdb.connect(str(path))
    configure_connection(con, b"k")
    pos = [
        r[0]
        for r in con.execute(
            "select transaction_id from staging.stg_pos__transaction_lines order by 1"
        ).fetchall()
    ]
    web = [
        r[0]
        for r in con.execute("select event_id from staging.stg_web__events order by 1").fetchall()
    ]
    assert pos == ["T1", "T2"] and web == ["E1", "E2"]


def test_retention_deletes_old_raw_events_and_keeps_the_account(tmp_path):
    from datetime import date

    import expectations as ex
    from warehouse.erasure import apply_retention
    from warehouse.ingest import load_source

    landing = tmp_path / "landing"
    (landing / "pos").mkdir(parents=True)
    (landing / "pos" / "lines.csv").write_text(
        "transaction_id,transacted_at,quantity,unit_price\n"
        "T1,2024-01-01T10:00:00Z,1,5\n"  # older than 365 days before 2026-06-30
        "T2,2025-07-01T00:00:00Z,1,5\n"  # the first instant kept
        "T3,2026-06-30T12:00:00Z,1,5\n"
    )
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    load_source(con, "pos", landing, date(2026, 7, 1))
    deleted = apply_retention(con, date(2026, 6, 30), 365)
    assert deleted["raw.pos"] == 1
    assert [
        r[0] for r in con.execute("select transaction_id from raw.pos order by 1").fetchall()
    ] == [
        "T2",
        "T3",
    ]
    assert con.execute("select source, path, rows from privacy.erased_rows").fetchall() == [
        ("pos", "pos/lines.csv", 1)
    ]
    outcome = ex.validate(con, "raw.pos", context={"run_date": date(2026, 7, 1)})
    [check] = [r for r in outcome.results if r.name == "rows_reconcile"]
    assert check.success, check.observed
    assert con.execute("select kind, rows from audit.events").fetchall() == [("retention", 1)]
    # Nothing more to delete on a re-run: no new audit event either.
    assert apply_retention(con, date(2026, 6, 30), 365)["raw.pos"] == 0
    assert con.execute("select count(*) from audit.events").fetchall()[0][0] == 1
