"""Unit tests for warehouse.ingest: landing files into raw.<source> and its quarantine."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from warehouse.ingest import SOURCES, ensure_raw_schema, load_source

RUN_DATE = date(2026, 6, 30)
POS_HEADER = "transaction_id,line_number,transacted_at,quantity,unit_price,is_return"


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


def write(landing: Path, rel: str, content: str | bytes) -> Path:
    path = landing / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def rows(con, sql: str, params=None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def quarantine(con, source: str) -> list[tuple]:
    return rows(con, f"select _file, _row_number, rule from raw.{source}_quarantine order by all")


def table_state(con) -> dict[str, list[tuple]]:
    state = {"ledger": rows(con, "select * from raw.load_ledger order by all")}
    for name in SOURCES:
        state[name] = rows(con, f"select * from raw.{name} order by all")
        state[name + "_q"] = rows(con, f"select * from raw.{name}_quarantine order by all")
    return state


def test_ensure_raw_schema_creates_typed_empty_tables(con):
    ensure_raw_schema(con)
    ensure_raw_schema(con)  # idempotent
    types = dict(rows(con, "select column_name, column_type from (describe raw.pos)"))
    assert types["transacted_at"] == "TIMESTAMP"
    assert types["quantity"] == "DOUBLE"
    assert types["line_number"] == "INTEGER"
    assert types["is_return"] == "BOOLEAN"
    assert types["_row_number"] == "BIGINT"
    assert {"_file", "_loaded_at", "_extra", "_flags"} <= types.keys()
    crm = dict(rows(con, "select column_name, column_type from (describe raw.crm)"))
    assert crm["date_of_birth"] == "DATE"
    camp = dict(rows(con, "select column_name, column_type from (describe raw.campaigns)"))
    assert camp["impressions"] == "BIGINT" and camp["date"] == "DATE"
    for name in SOURCES:
        assert rows(con, f"select count(*) from raw.{name}") == [(0,)]
        q = [r[0] for r in rows(con, f"select column_name from (describe raw.{name}_quarantine)")]
        assert q == ["_file", "_row_number", "rule", "record", "quarantined_at"]
    ledger = [r[0] for r in rows(con, "select column_name from (describe raw.load_ledger)")]
    assert ledger[:3] == ["source", "path", "sha256"]


def test_missing_folder_is_no_rows(con, landing):
    result = load_source(con, "consent", landing, RUN_DATE)
    assert result.files_seen == 0 and result.rows_loaded == 0
    assert rows(con, "select count(*) from raw.consent") == [(0,)]


def test_csv_loads_with_types_and_defaults(con, landing):
    write(
        landing,
        "pos/2026-06.csv",
        "transaction_id,transacted_at,quantity,unit_price,is_return,line_number\n"
        "t1,2026-06-30T12:00:00Z,2,3.5,,\n"
        "t2,2026-06-29 08:00:00,-1,0,YES,2\n",
    )
    result = load_source(con, "pos", landing, RUN_DATE)
    assert (result.files_loaded, result.rows_loaded, result.rows_quarantined) == (1, 2, 0)
    got = rows(
        con,
        "select transaction_id, line_number, transacted_at, quantity, unit_price, is_return,"
        " _file, _row_number, _extra, _flags from raw.pos order by _row_number",
    )
    assert got == [
        ("t1", 1, datetime(2026, 6, 30, 12), 2.0, 3.5, False, "pos/2026-06.csv", 1, None, None),
        ("t2", 2, datetime(2026, 6, 29, 8), -1.0, 0.0, True, "pos/2026-06.csv", 2, None, None),
    ]
    assert "pos: 1 files seen, 1 loaded" in result.summary()


def test_jsonl_and_ndjson_load_with_types(con, landing):
    line = {
        "event_id": "e1",
        "event_type": "purchase",
        "anonymous_id": "a1",
        "event_at": "2026-06-01T10:00:00+02:00",
        "revenue": 12.5,
        "order_id": 42,
    }
    write(landing, "web/a.jsonl", json.dumps(line) + "\n")
    write(landing, "web/sub/b.NDJSON", json.dumps(line | {"event_id": "e2"}) + "\n")
    result = load_source(con, "web", landing, RUN_DATE)
    assert (result.files_loaded, result.rows_loaded) == (2, 2)
    got = rows(con, "select event_id, event_at, revenue, order_id, _file from raw.web order by 1")
    assert got == [
        ("e1", datetime(2026, 6, 1, 8), 12.5, "42", "web/a.jsonl"),
        ("e2", datetime(2026, 6, 1, 8), 12.5, "42", "web/sub/b.NDJSON"),
    ]


def test_parquet_loads_with_types(con, landing):
    path = landing / "pos" / "p.parquet"
    path.parent.mkdir(parents=True)
    con.execute("set TimeZone = 'America/New_York'")
    con.execute(
        """
        copy (
            select 't' || i as TRANSACTION_ID, i::integer as line_number,
                   timestamptz '2026-06-30 12:00:00+00' as transacted_at,
                   (i + 1)::double as quantity, 2.5::decimal(8, 2) as unit_price,
                   false as is_return, 'x' as promo
            from range(3) r(i)
        ) to ? (format parquet)
        """,
        [str(path)],
    )
    result = load_source(con, "pos", landing, RUN_DATE)
    assert (result.rows_loaded, result.rows_quarantined) == (3, 0)
    got = rows(
        con,
        "select transaction_id, line_number, transacted_at, quantity, unit_price, _row_number,"
        " _extra from raw.pos order by _row_number",
    )
    assert got[0] == ("t0", 0, datetime(2026, 6, 30, 12), 1.0, 2.5, 1, '{"promo":"x"}')
    assert len(got) == 3


def test_headers_case_insensitive_any_order_and_extras(con, landing):
    write(
        landing,
        "pos/h.csv",
        " Unit_Price ,QUANTITY,Transacted_At, transaction_id ,Coupon,note\n3,1,2026-06-01,t1,C9,\n",
    )
    load_source(con, "pos", landing, RUN_DATE)
    got = rows(con, "select transaction_id, quantity, unit_price, _extra from raw.pos")
    assert got[0][:3] == ("t1", 1.0, 3.0)
    assert json.loads(got[0][3]) == {"Coupon": "C9", "note": None}


def test_missing_required_column_rejects_whole_file(con, landing):
    write(landing, "pos/ok.csv", f"{POS_HEADER}\nt1,1,2026-06-01,1,1,false\n")
    write(landing, "pos/sub/bad.csv", "transaction_id,transacted_at,unit_price\nt2,2026-06-01,1\n")
    result = load_source(con, "pos", landing, RUN_DATE)
    assert result.files_loaded == 1
    assert len(result.files_rejected) == 1
    path, message = result.files_rejected[0]
    assert path == "pos/sub/bad.csv"
    assert "pos/sub/bad.csv" in message and "quantity" in message
    assert rows(con, "select distinct _file from raw.pos") == [("pos/ok.csv",)]
    ledger = rows(con, "select path, status, message from raw.load_ledger order by path")
    assert ledger[0][:2] == ("pos/ok.csv", "loaded")
    assert ledger[1][:2] == ("pos/sub/bad.csv", "rejected") and "quantity" in ledger[1][2]
    # the rejected version is not retried while its content is unchanged
    again = load_source(con, "pos", landing, RUN_DATE)
    assert again.files_skipped_unchanged == 2 and again.files_rejected == []


@pytest.mark.parametrize(
    ("row", "rule"),
    [
        ("t1,1,2026-06-01,0,1,false", "pos_quantity_zero"),
        ("t1,1,2026-06-01,-1,1,false", "pos_return_sign"),
        ("t1,1,2026-06-01,1,1,true", "pos_return_sign"),
        ("t1,1,2026-06-01,1,-0.01,false", "pos_negative_price"),
        ("  ,1,2026-06-01,1,1,false", "required:transaction_id"),
        ("t1,1,,1,1,false", "required:transacted_at"),
        ("t1,1,2026-06-01,abc,1,false", "type:quantity"),
        ("t1,1.5,2026-06-01,1,1,false", "type:line_number"),
        ("t1,1,2026-06-01,1,1,maybe", "type:is_return"),
        ("t1,1,yesterday,1,1,false", "type:transacted_at"),
        ("t1,1,1900-01-01T00:00:00,1,1,false", "event_time_out_of_range:transacted_at"),
        ("t1,1,2027-06-01 00:00:00,1,1,false", "event_time_out_of_range:transacted_at"),
        ("t1,1,2026-07-02 00:00:00,1,1,false", "event_time_out_of_range:transacted_at"),
    ],
)
def test_pos_row_rules(con, landing, row, rule):
    good = "g1,1,2026-07-01T23:59:59,2,1,no"
    write(landing, "pos/r.csv", f"{POS_HEADER}\n{good}\n{row}\n{good}\n")
    result = load_source(con, "pos", landing, RUN_DATE)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    assert quarantine(con, "pos") == [("pos/r.csv", 2, rule)]
    record = rows(con, "select record from raw.pos_quarantine")[0][0]
    assert json.loads(record)["transaction_id"] == row.split(",")[0]
    assert rows(con, "select _row_number from raw.pos order by 1") == [(1,), (3,)]


@pytest.mark.parametrize(
    ("source", "text", "rule"),
    [
        (
            "web",
            '{"event_id":"e","event_type":"teleport","anonymous_id":"a","event_at":"2026-06-01"}',
            "value_not_allowed:event_type",
        ),
        (
            "web",
            '{"event_id":"e","event_type":"login","anonymous_id":"a","event_at":"1900-06-01"}',
            "event_time_out_of_range:event_at",
        ),
        (
            "consent",
            '{"consent_event_id":"c","subject_type":"email","subject_id":"x","purpose":"spam",'
            '"status":"granted","event_at":"2026-06-01"}',
            "value_not_allowed:purpose",
        ),
        (
            "consent",
            '{"consent_event_id":"c","subject_type":"email","subject_id":"x",'
            '"purpose":"analytics","status":"maybe","event_at":"2026-06-01"}',
            "value_not_allowed:status",
        ),
        (
            "privacy",
            '{"request_id":"r","request_type":"forget","subject_type":"email","subject_id":"x",'
            '"requested_at":"2026-06-01"}',
            "value_not_allowed:request_type",
        ),
        (
            "privacy",
            '{"request_id":"r","request_type":"erasure","subject_type":"email","subject_id":" ",'
            '"requested_at":"2026-06-01"}',
            "required:subject_id",
        ),
        (
            "campaigns",
            '{"date":"2026-06-01","platform":"meta","campaign_id":"c","segment_id":"s",'
            '"impressions":-5}',
            "negative:impressions",
        ),
        (
            "campaigns",
            '{"date":"2026-06-01","platform":"meta","campaign_id":"c","segment_id":"s",'
            '"spend":"-1.5"}',
            "negative:spend",
        ),
        (
            "campaigns",
            '{"date":"June 1st","platform":"meta","campaign_id":"c","segment_id":"s"}',
            "type:date",
        ),
    ],
)
def test_source_row_rules(con, landing, source, text, rule):
    write(landing, f"{source}/f.jsonl", text + "\n")
    result = load_source(con, source, landing, RUN_DATE)
    assert (result.rows_loaded, result.rows_quarantined) == (0, 1)
    assert quarantine(con, source) == [(f"{source}/f.jsonl", 1, rule)]
    assert rows(con, f"select record from raw.{source}_quarantine") == [(text,)]


def test_consent_and_campaigns_load_with_defaults(con, landing):
    write(
        landing,
        "consent/c.csv",
        "consent_event_id,subject_type,subject_id,purpose,status,event_at\n"
        "c1,Email,a@b.c,analytics,granted,2026-06-01T00:00:00-05:00\n",
    )
    (landing / "campaigns").mkdir(parents=True)
    con.execute(
        "copy (select date '2026-06-01' as date, 'meta' as platform, 'c1' as campaign_id,"
        " 's1' as segment_id, 10 as impressions, 2 as clicks, 1.5 as spend) to ? (format parquet)",
        [str(landing / "campaigns" / "k.parquet")],
    )
    load_source(con, "consent", landing, RUN_DATE)
    load_source(con, "campaigns", landing, RUN_DATE)
    assert rows(con, "select subject_type, source_system, event_at from raw.consent") == [
        ("Email", "crm", datetime(2026, 6, 1, 5))
    ]
    assert rows(con, "select date, impressions, clicks, spend, conversions from raw.campaigns") == [
        (date(2026, 6, 1), 10, 2, 1.5, None)
    ]


def test_unchanged_file_is_skipped_without_changes(con, landing):
    write(landing, "pos/a.csv", f"{POS_HEADER}\nt1,1,2026-06-01,1,1,false\nt2,1,2026-06-01,0,1,f\n")
    first = load_source(con, "pos", landing, RUN_DATE)
    assert first.files_loaded == 1
    before = table_state(con)
    second = load_source(con, "pos", landing, RUN_DATE)
    assert (second.files_seen, second.files_loaded, second.files_skipped_unchanged) == (1, 0, 1)
    assert second.rows_loaded == 0 and second.files[0].status == "skipped"
    assert table_state(con) == before


def test_changed_file_replaces_rows_and_removed_file_keeps_rows(con, landing):
    a = write(landing, "pos/a.csv", f"{POS_HEADER}\nt1,1,2026-06-01,1,1,false\nt2,1,x,1,1,f\n")
    b = write(landing, "pos/b.csv", f"{POS_HEADER}\nb1,1,2026-06-01,1,1,false\n")
    load_source(con, "pos", landing, RUN_DATE)
    assert rows(con, "select count(*) from raw.pos_quarantine") == [(1,)]
    a.write_text(f"{POS_HEADER}\nt9,1,2026-06-02,3,1,false\n", encoding="utf-8")
    b.unlink()
    result = load_source(con, "pos", landing, RUN_DATE)
    assert result.files_loaded == 1 and result.files[0].replaced
    got = rows(con, "select _file, transaction_id from raw.pos order by all")
    assert got == [("pos/a.csv", "t9"), ("pos/b.csv", "b1")]
    assert rows(con, "select count(*) from raw.pos_quarantine") == [(0,)]
    history = rows(con, "select path, rows_loaded from raw.load_ledger order by loaded_at")
    assert history == [("pos/a.csv", 1), ("pos/b.csv", 1), ("pos/a.csv", 1)]


def test_skipped_names_and_extensions(con, landing):
    body = f"{POS_HEADER}\nt1,1,2026-06-01,1,1,false\n"
    for rel in [
        "pos/.hidden.csv",
        "pos/_partial.csv",
        "pos/a.csv.tmp",
        "pos/a.csv.part",
        "pos/_staging/a.csv",
        "pos/.git/a.csv",
        "pos/readme.txt",
    ]:
        write(landing, rel, body)
    write(landing, "pos/2026/06/UPPER.CSV", body)
    write(landing, "pos/b.csv", body)
    result = load_source(con, "pos", landing, RUN_DATE)
    assert [f.path for f in result.files] == ["pos/2026/06/UPPER.CSV", "pos/b.csv"]
    assert result.rows_loaded == 2


def test_bom_empty_and_header_only_files(con, landing):
    write(landing, "pos/bom.csv", f"\ufeff{POS_HEADER}\r\nt1,1,2026-06-01,1,1,false\r\n")
    write(landing, "pos/empty.csv", b"")
    write(landing, "pos/header.csv", f"{POS_HEADER}\n")
    write(landing, "pos/empty.jsonl", b"")
    write(landing, "pos/blank.jsonl", "\n\n")
    result = load_source(con, "pos", landing, RUN_DATE)
    assert result.files_rejected == []
    assert (result.files_loaded, result.rows_loaded, result.rows_quarantined) == (5, 1, 0)
    assert rows(con, "select transaction_id, is_return from raw.pos") == [("t1", False)]
    assert rows(con, "select count(*) from raw.load_ledger where status = 'loaded'") == [(5,)]


def test_malformed_json_lines_are_quarantined(con, landing):
    good = '{"event_id":"e1","event_type":"login","anonymous_id":"a","event_at":"2026-06-01"}'
    text = f'{good}\n{{"event_id": "e2",\n\n[1, 2]\n{good.replace("e1", "e3")}\n'
    write(landing, "web/w.jsonl", text)
    result = load_source(con, "web", landing, RUN_DATE)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 2)
    assert quarantine(con, "web") == [
        ("web/w.jsonl", 2, "json_invalid"),
        ("web/w.jsonl", 4, "json_invalid"),
    ]
    assert rows(con, "select event_id, _row_number from raw.web order by 2") == [
        ("e1", 1),
        ("e3", 5),
    ]


def test_malformed_csv_lines_are_quarantined(con, landing):
    text = (
        f"{POS_HEADER}\n"
        "t1,1,2026-06-01,1,1,false\n"
        "t2,1,2026-06-01,1\n"
        "t3,1,2026-06-01,1,1,false\n"
        't4,1,"2026-06-01,1,1,false\n'
        "t5,1,2026-06-01,1,1,false\n"
    )
    write(landing, "pos/q.csv", text)
    result = load_source(con, "pos", landing, RUN_DATE)
    assert result.files_rejected == []
    # an unterminated quote no longer swallows the rest of the file: t5 still loads
    assert rows(con, "select transaction_id, _row_number from raw.pos order by 2") == [
        ("t1", 1),
        ("t3", 3),
        ("t5", 5),
    ]
    assert quarantine(con, "pos") == [
        ("pos/q.csv", 2, "csv_malformed"),
        ("pos/q.csv", 4, "csv_malformed"),
    ]
    records = rows(con, "select record from raw.pos_quarantine order by _row_number")
    assert records == [("t2,1,2026-06-01,1",), ('t4,1,"2026-06-01,1,1,false',)]
    assert result.rows_loaded + result.rows_quarantined == 5
    assert rows(con, "select rows_read from raw.load_ledger") == [(5,)]


def test_invalid_utf8_line_is_quarantined(con, landing):
    body = f"{POS_HEADER}\nt1,1,2026-06-01,1,1,false\nt\xff,1,2026-06-01,1,1,false\n"
    write(landing, "pos/latin.csv", body.encode("latin-1"))
    result = load_source(con, "pos", landing, RUN_DATE)
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    assert quarantine(con, "pos") == [("pos/latin.csv", 2, "csv_malformed")]


def test_dates_of_birth_and_crm_timestamps_are_soft(con, landing):
    write(
        landing,
        "crm/c.csv",
        "crm_customer_id,date_of_birth,created_at,updated_at,household_income\n"
        "c1,19800102,2020-01-01T10:00:00+01:00,2026-06-30,52000\n"
        "c2,1980-13-45,soon,,\n"
        "c3,1850-01-01,2020-01-01,2099-01-01,\n"
        "c4,2026-07-01,,,\n",
    )
    result = load_source(con, "crm", landing, RUN_DATE)
    assert (result.rows_loaded, result.rows_quarantined) == (4, 0)
    got = rows(
        con,
        "select crm_customer_id, source_system, date_of_birth, created_at, updated_at,"
        " household_income, _flags from raw.crm order by 1",
    )
    assert got == [
        (
            "c1",
            "crm",
            date(1980, 1, 2),
            datetime(2020, 1, 1, 9),
            datetime(2026, 6, 30),
            52000.0,
            None,
        ),
        ("c2", "crm", None, None, None, None, "date_of_birth_invalid,created_at_invalid"),
        (
            "c3",
            "crm",
            None,
            datetime(2020, 1, 1),
            None,
            None,
            "date_of_birth_invalid,updated_at_invalid",
        ),
        ("c4", "crm", None, None, None, None, "date_of_birth_invalid"),
    ]


def test_timestamp_offsets_convert_to_utc_whatever_the_session_timezone(con, landing):
    con.execute("set TimeZone = 'Asia/Tokyo'")
    write(
        landing,
        "web/t.csv",
        "event_id,event_type,anonymous_id,event_at\n"
        "e1,login,a,2026-06-30T12:00:00Z\n"
        "e2,login,a,2026-06-30 12:00:00+02:00\n"
        "e3,login,a,2026-06-30T12:00:00\n"
        "e4,login,a,2026-06-30T12:00:00.250-0530\n",
    )
    load_source(con, "web", landing, RUN_DATE)
    got = rows(con, "select event_id, event_at from raw.web order by 1")
    assert got == [
        ("e1", datetime(2026, 6, 30, 12)),
        ("e2", datetime(2026, 6, 30, 10)),
        ("e3", datetime(2026, 6, 30, 12)),
        ("e4", datetime(2026, 6, 30, 17, 30, 0, 250000)),
    ]


def test_boolean_spellings(con, landing):
    values = ["true", "FALSE", "1", "0", "Yes", "no", "T", "f", "y", "N"]
    body = "\n".join(
        f"t{i},1,2026-06-01,{-1 if v.lower() in ('true', '1', 'yes', 't', 'y') else 1},1,{v}"
        for i, v in enumerate(values)
    )
    write(landing, "pos/b.csv", f"{POS_HEADER}\n{body}\n")
    result = load_source(con, "pos", landing, RUN_DATE)
    assert (result.rows_loaded, result.rows_quarantined) == (10, 0)
    assert rows(con, "select count(*) filter (where is_return) from raw.pos") == [(5,)]


def test_sql_looking_values_load_as_data(con, landing):
    evil = "'); drop table raw.pos; --"
    write(
        landing,
        "pos/evil.csv",
        f'{POS_HEADER},"{evil}"\n"{evil}",1,2026-06-01,1,1,false,"x""y"\n',
    )
    result = load_source(con, "pos", landing, RUN_DATE)
    assert result.rows_loaded == 1
    assert rows(con, "select transaction_id from raw.pos") == [(evil,)]
    assert json.loads(rows(con, "select _extra from raw.pos")[0][0]) == {evil: 'x"y'}


def test_unknown_source_is_an_error(con, landing):
    with pytest.raises(ValueError, match="unknown source"):
        load_source(con, "nope", landing, RUN_DATE)


def test_unreadable_file_is_rejected_with_its_path(con, landing):
    write(landing, "pos/broken.parquet", b"not a parquet file at all")
    write(landing, "pos/ok.csv", f"{POS_HEADER}\nt1,1,2026-06-01,1,1,false\n")
    result = load_source(con, "pos", landing, RUN_DATE)
    assert result.files_loaded == 1 and result.rows_loaded == 1
    assert [p for p, _ in result.files_rejected] == ["pos/broken.parquet"]
    assert result.files_rejected[0][1].startswith("pos/broken.parquet: ")
    status = rows(con, "select status from raw.load_ledger where path = 'pos/broken.parquet'")
    assert status == [("rejected",)]
