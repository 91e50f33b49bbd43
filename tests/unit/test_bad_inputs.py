"""The bad-input corpus: each broken file gets a clear rejection or a quarantine rule, and no good
row of the same file is lost (rows read = rows loaded + rows quarantined, per file)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pytest

from warehouse.ingest import load_source

RUN_DATE = date(2026, 6, 30)
POS = "transaction_id,line_number,transacted_at,quantity,unit_price,is_return"


def pos_row(tid: str, when: str = "2026-06-01 10:00:00", qty: str = "1", price: str = "2.5") -> str:
    return f"{tid},1,{when},{qty},{price},false"


def pos_file(*rows: str, header: str = POS, eol: str = "\n") -> bytes:
    return (eol.join([header, *rows]) + eol).encode("utf-8")


GOOD = [pos_row("g1"), pos_row("g2"), pos_row("g3")]


@dataclass
class Case:
    """Files for one source; what must load (keys) and what must be quarantined or rejected."""

    files: dict[str, bytes]
    loaded: list[str]  # keys (first required column) expected in raw, in row order
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (row number, rule)
    rejected: list[str] = field(default_factory=list)  # substrings of the rejection message
    source: str = "pos"


WEB_OK = {"event_type": "login", "anonymous_id": "a1", "event_at": "2026-06-01T10:00:00Z"}


def web_line(event_id: str, **changes) -> str:
    return json.dumps({"event_id": event_id, **WEB_OK, **changes})


CASES: dict[str, Case] = {
    "unbalanced quote mid-file": Case(
        {"pos/q.csv": pos_file(GOOD[0], 'b1,1,"2026-06-01,1,2.5,false', GOOD[1], GOOD[2])},
        ["g1", "g2", "g3"],
        [(2, "csv_malformed")],
    ),
    "two unbalanced quotes": Case(
        {
            "pos/q2.csv": pos_file(
                GOOD[0], 'b1,1,"2026-06-01,1,2.5,false', GOOD[1], 'b2,"1,x,1,1,false', GOOD[2]
            )
        },
        ["g1", "g2", "g3"],
        [(2, "csv_malformed"), (4, "csv_malformed")],
    ),
    "quoted field with comma and doubled quote": Case(
        {"pos/ok.csv": pos_file('"g1",1,2026-06-01,1,2.5,false', '"g,2",1,2026-06-01,1,2.5,""')},
        ["g1", "g,2"],
    ),
    "wrong delimiter (semicolon)": Case(
        {
            "pos/semi.csv": pos_file(
                *(r.replace(",", ";") for r in GOOD), header=POS.replace(",", ";")
            )
        },
        [],
        rejected=["pos/semi.csv", "missing required columns transaction_id", "wrong delimiter"],
    ),
    "non-UTF-8 bytes in a row": Case(
        {
            "pos/latin.csv": pos_file(GOOD[0], "b\xe9,1,2026-06-01,1,2.5,false", GOOD[1]).replace(
                "é".encode(), b"\xe9"
            )
        },
        ["g1", "g2"],
        [(2, "csv_malformed")],
    ),
    "UTF-8 BOM before the header": Case(
        {"pos/bom.csv": b"\xef\xbb\xbf" + pos_file(*GOOD)}, ["g1", "g2", "g3"]
    ),
    "file of only a BOM": Case({"pos/only_bom.csv": b"\xef\xbb\xbf"}, []),
    "empty file": Case({"pos/empty.csv": b""}, []),
    "header only": Case({"pos/header.csv": pos_file()}, []),
    "CRLF line endings": Case({"pos/crlf.csv": pos_file(*GOOD, eol="\r\n")}, ["g1", "g2", "g3"]),
    "no newline at end of file": Case({"pos/nonl.csv": pos_file(*GOOD)[:-1]}, ["g1", "g2", "g3"]),
    "trailing delimiter on every line": Case(
        {"pos/trail.csv": pos_file(*(r + "," for r in GOOD), header=POS + ",")},
        ["g1", "g2", "g3"],
    ),
    "row with too few fields": Case(
        {"pos/short.csv": pos_file(GOOD[0], "b1,1,2026-06-01", GOOD[1])},
        ["g1", "g2"],
        [(2, "csv_malformed")],
    ),
    "row with too many fields": Case(
        {"pos/long.csv": pos_file(GOOD[0], pos_row("b1") + ",x,y", GOOD[1])},
        ["g1", "g2"],
        [(2, "csv_malformed")],
    ),
    "blank lines between rows": Case(
        {"pos/blank.csv": pos_file(GOOD[0], "", GOOD[1])}, ["g1", "g2"]
    ),
    "missing required column": Case(
        {
            "pos/noprice.csv": pos_file(
                "g1,1,2026-06-01,1,false", header=POS.replace("unit_price,", "")
            )
        },
        [],
        rejected=["pos/noprice.csv", "missing required column unit_price"],
    ),
    "renamed required column": Case(
        {"pos/renamed.csv": pos_file(*GOOD, header=POS.replace("transaction_id", "txn_id"))},
        [],
        rejected=["pos/renamed.csv", "transaction_id", "'txn_id'", "renamed?"],
    ),
    "missing optional column": Case(
        {
            "pos/noline.csv": pos_file(
                "g1,2026-06-01,1,2.5,false", header=POS.replace("line_number,", "")
            )
        },
        ["g1"],
    ),
    "extra and renamed optional columns": Case(
        {"pos/extra.csv": pos_file(pos_row("g1") + ",VIP,S1", header=POS + ",promo,store")},
        ["g1"],
    ),
    "header in another case, other order, padded": Case(
        {
            "pos/case.csv": pos_file(
                "2.5,g1,1,2026-06-01,1,false",
                header=" UNIT_PRICE ,Transaction_ID,line_number,transacted_at,quantity,is_return",
            )
        },
        ["g1"],
    ),
    "null key": Case(
        {
            "pos/nullkey.csv": pos_file(
                GOOD[0], ",1,2026-06-01,1,2.5,false", "  ,1,2026-06-01,1,2.5,false", GOOD[1]
            )
        },
        ["g1", "g2"],
        [(2, "required:transaction_id"), (3, "required:transaction_id")],
    ),
    "duplicate key in one file (staging keeps the last)": Case(
        {"pos/dup.csv": pos_file(pos_row("g1", qty="1"), pos_row("g1", qty="2"))},
        ["g1", "g1"],
    ),
    "timestamp in 1900": Case(
        {"pos/old.csv": pos_file(GOOD[0], pos_row("b1", when="1900-01-01 00:00:00"), GOOD[1])},
        ["g1", "g2"],
        [(2, "event_time_out_of_range:transacted_at")],
    ),
    "timestamp next year": Case(
        {"pos/future.csv": pos_file(GOOD[0], pos_row("b1", when="2027-06-01 00:00:00"), GOOD[1])},
        ["g1", "g2"],
        [(2, "event_time_out_of_range:transacted_at")],
    ),
    "timestamp that does not parse": Case(
        {"pos/badtime.csv": pos_file(GOOD[0], pos_row("b1", when="yesterday"), GOOD[1])},
        ["g1", "g2"],
        [(2, "type:transacted_at")],
    ),
    "negative price": Case(
        {"pos/negprice.csv": pos_file(GOOD[0], pos_row("b1", price="-3"), GOOD[1])},
        ["g1", "g2"],
        [(2, "pos_negative_price")],
    ),
    "negative quantity on a sale": Case(
        {"pos/negqty.csv": pos_file(GOOD[0], pos_row("b1", qty="-2"), GOOD[1])},
        ["g1", "g2"],
        [(2, "pos_return_sign")],
    ),
    "changed type: text in a number column": Case(
        {
            "pos/type.csv": pos_file(
                GOOD[0], pos_row("b1", qty="two"), pos_row("b2", price="1e999"), GOOD[1]
            )
        },
        ["g1", "g2"],
        [(2, "type:quantity"), (3, "type:unit_price")],
    ),
    "gzip bytes in a file named .csv": Case(
        {"pos/zipped.csv": gzip.compress(pos_file(*GOOD))}, ["g1", "g2", "g3"]
    ),
    "file name with spaces, unicode and quotes": Case(
        {'pos/it\'s "Q2" Ümsatz 2026.csv': pos_file(*GOOD)}, ["g1", "g2", "g3"]
    ),
    "file name with glob characters": Case(
        {"pos/[2026]*?.csv": pos_file(*GOOD)}, ["g1", "g2", "g3"]
    ),
    "file name that looks like SQL": Case(
        {"pos/x'; drop table raw.pos; --.csv": pos_file(*GOOD)}, ["g1", "g2", "g3"]
    ),
    "JSON lines: broken, array, wrong type, blank": Case(
        {
            "web/w.jsonl": "\n".join(
                [
                    web_line("e1"),
                    '{"event_id": "b1",',
                    "[1, 2]",
                    "",
                    web_line("b2", event_at="1900-01-01T00:00:00Z"),
                    web_line("b3", event_type="teleport"),
                    web_line("b4", anonymous_id=" "),
                    web_line("e2", revenue="n/a"),
                    web_line("e3"),
                ]
            ).encode()
            + b"\n"
        },
        ["e1", "e3"],
        [
            (2, "json_invalid"),
            (3, "json_invalid"),
            (5, "event_time_out_of_range:event_at"),
            (6, "value_not_allowed:event_type"),
            (7, "required:anonymous_id"),
            (8, "type:revenue"),
        ],
        source="web",
    ),
    "JSON lines: non-UTF-8 line and a BOM": Case(
        {
            "web/bom.jsonl": b"\xef\xbb\xbf"
            + web_line("e1").encode()
            + b"\n"
            + web_line("b1").encode().replace(b"b1", b"b\xff")
            + b"\n"
            + web_line("e2").encode()
            + b"\n"
        },
        ["e1", "e2"],
        [(2, "json_invalid")],
        source="web",
    ),
    "JSON lines: duplicated event (staging loads it once)": Case(
        {"web/dup.jsonl": (web_line("e1") + "\n" + web_line("e1") + "\n").encode()},
        ["e1", "e1"],
        source="web",
    ),
    "JSON lines: missing required key everywhere": Case(
        {
            "web/nokey.jsonl": (
                json.dumps(
                    {k: v for k, v in WEB_OK.items() if k != "anonymous_id"} | {"event_id": "e1"}
                )
                + "\n"
            ).encode()
        },
        [],
        rejected=["web/nokey.jsonl", "missing required column anonymous_id"],
        source="web",
    ),
}


def load(tmp_path: Path, case: Case):
    landing = tmp_path / "landing"
    for rel, content in case.files.items():
        path = landing / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    con = duckdb.connect()
    result = load_source(con, case.source, landing, RUN_DATE)
    return con, result


def key_column(source: str) -> str:
    return {"pos": "transaction_id", "web": "event_id"}[source]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_rejected_or_quarantined_and_no_good_row_is_lost(tmp_path, name):
    case = CASES[name]
    con, result = load(tmp_path, case)
    [rel] = case.files
    key = key_column(case.source)
    if case.rejected:
        [(path, message)] = result.files_rejected
        assert path == rel
        for part in case.rejected:
            assert part in message, message
        assert con.execute(f"select count(*) from raw.{case.source}").fetchone()[0] == 0
        status = con.execute("select status, message from raw.load_ledger").fetchall()
        assert status == [("rejected", message)]
        return
    assert result.files_rejected == []
    loaded = con.execute(
        f"select {key}, _file from raw.{case.source} order by _row_number"
    ).fetchall()
    assert [k for k, _ in loaded] == case.loaded
    assert all(f == rel for _, f in loaded)
    quarantined = con.execute(
        f"select _row_number, rule, _file, record is not null, quarantined_at is not null "
        f"from raw.{case.source}_quarantine order by _row_number"
    ).fetchall()
    assert [(r, rule) for r, rule, *_ in quarantined] == case.quarantined
    assert all(
        f == rel and has_record and has_time for _, _, f, has_record, has_time in quarantined
    )
    read, loaded_n, quarantined_n = con.execute(
        "select rows_read, rows_loaded, rows_quarantined from raw.load_ledger"
    ).fetchone()
    assert (loaded_n, quarantined_n) == (len(case.loaded), len(case.quarantined))
    assert read == loaded_n + quarantined_n


def test_empty_files_say_so_in_the_ledger(tmp_path):
    con, _ = load(tmp_path, CASES["file of only a BOM"])
    assert con.execute("select status, rows_read, message from raw.load_ledger").fetchall() == [
        ("loaded", 0, "empty file: no rows to load")
    ]


def test_quarantine_keeps_the_original_row_text(tmp_path):
    con, _ = load(tmp_path, CASES["unbalanced quote mid-file"])
    assert con.execute("select record from raw.pos_quarantine").fetchall() == [
        ('b1,1,"2026-06-01,1,2.5,false',)
    ]
    con, _ = load(tmp_path / "neg", CASES["negative price"])
    record = json.loads(con.execute("select record from raw.pos_quarantine").fetchone()[0])
    assert record["transaction_id"] == "b1" and record["unit_price"] == "-3"


def test_extra_and_renamed_optional_columns_are_kept_in_extra(tmp_path):
    con, _ = load(tmp_path, CASES["extra and renamed optional columns"])
    extra, store_id = con.execute("select _extra, store_id from raw.pos").fetchone()
    assert json.loads(extra) == {"promo": "VIP", "store": "S1"}
    assert store_id is None


def test_trailing_delimiter_adds_no_data(tmp_path):
    con, _ = load(tmp_path, CASES["trailing delimiter on every line"])
    assert con.execute("select count(*) from raw.pos where _extra is not null").fetchone() == (0,)


def test_a_10_mb_field_loads_whole(tmp_path):
    huge = "x" * (10 * 1024 * 1024)
    case = Case(
        {"pos/huge.csv": pos_file(GOOD[0] + ",", pos_row("g2") + "," + huge, header=POS + ",note")},
        [],
    )
    con, result = load(tmp_path, case)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    lengths = con.execute(
        "select transaction_id, length(json_extract_string(_extra, '$.note')) from raw.pos "
        "order by _row_number"
    ).fetchall()
    assert lengths == [("g1", None), ("g2", len(huge))]


def test_huge_sku_in_a_known_column(tmp_path):
    huge = "s" * (3 * 1024 * 1024)
    header = POS + ",sku"
    case = Case({"pos/sku.csv": pos_file(pos_row("g1") + "," + huge, header=header)}, [])
    con, _ = load(tmp_path, case)
    assert con.execute("select length(sku) from raw.pos").fetchone() == (len(huge),)


def test_sql_looking_values_and_headers_load_verbatim(tmp_path):
    evil = "x'); drop table raw.pos; --"
    header = POS + ',sku,"a""; drop schema raw cascade; --"'
    rows = [pos_row("g1") + f',"{evil}","\' or 1=1 --"', pos_row("'; delete from raw.pos; --")]
    case = Case({"pos/evil.csv": pos_file(rows[0], rows[1] + ",,", header=header)}, [])
    con, result = load(tmp_path, case)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    got = con.execute(
        "select transaction_id, sku, _extra from raw.pos order by _row_number"
    ).fetchall()
    assert got[0][:2] == ("g1", evil)
    assert json.loads(got[0][2]) == {'a"; drop schema raw cascade; --': "' or 1=1 --"}
    assert got[1][:2] == ("'; delete from raw.pos; --", None)
    tables = {
        t
        for (t,) in con.execute(
            "select table_name from duckdb_tables() where schema_name = 'raw'"
        ).fetchall()
    }
    assert {"pos", "pos_quarantine", "load_ledger"} <= tables


def test_glob_characters_in_a_name_read_that_file_only(tmp_path):
    landing = tmp_path / "landing"
    (landing / "pos" / "[x]").mkdir(parents=True)
    (landing / "pos" / "[x].csv").write_bytes(pos_file(GOOD[0]))
    (landing / "pos" / "x.csv").write_bytes(pos_file(GOOD[1]))
    (landing / "pos" / "y*.csv").write_bytes(pos_file(GOOD[2]))
    (landing / "pos" / "yy.csv").write_bytes(pos_file(pos_row("g4")))
    (landing / "pos" / "[x]" / "in.csv").write_bytes(pos_file(pos_row("g5")))
    con = duckdb.connect()
    result = load_source(con, "pos", landing, RUN_DATE)
    assert result.files_rejected == []
    got = con.execute("select _file, transaction_id from raw.pos order by 1").fetchall()
    assert got == [
        ("pos/[x].csv", "g1"),
        ("pos/[x]/in.csv", "g5"),
        ("pos/x.csv", "g2"),
        ("pos/y*.csv", "g3"),
        ("pos/yy.csv", "g4"),
    ]


def test_directory_named_like_a_file_is_walked_not_read(tmp_path):
    landing = tmp_path / "landing"
    (landing / "pos" / "day.csv").mkdir(parents=True)
    (landing / "pos" / "day.csv" / "inner.csv").write_bytes(pos_file(*GOOD))
    con = duckdb.connect()
    result = load_source(con, "pos", landing, RUN_DATE)
    assert result.files_rejected == []
    assert [f.path for f in result.files] == ["pos/day.csv/inner.csv"]
    assert con.execute("select count(*) from raw.pos").fetchone() == (3,)


def test_parquet_with_a_changed_column_type_quarantines_what_does_not_cast(tmp_path):
    landing = tmp_path / "landing"
    (landing / "pos").mkdir(parents=True)
    path = landing / "pos" / "typed.parquet"
    con = duckdb.connect()
    con.execute(
        """
        copy (
            select * from (values
                ('g1', '2026-06-01 10:00:00', '1', '2.5'),
                ('b1', '2026-06-01 10:00:00', 'one', '2.5'),
                ('g2', '2026-06-01 10:00:00', '3', '2.5')
            ) t(transaction_id, transacted_at, quantity, unit_price)
        ) to ? (format parquet)
        """,
        [str(path)],
    )
    result = load_source(con, "pos", landing, RUN_DATE)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    assert con.execute("select transaction_id, quantity from raw.pos order by 1").fetchall() == [
        ("g1", 1.0),
        ("g2", 3.0),
    ]
    assert con.execute("select _row_number, rule from raw.pos_quarantine").fetchall() == [
        (2, "type:quantity")
    ]


def test_redelivered_file_replaces_its_rows_and_a_bad_redelivery_keeps_them(tmp_path):
    landing = tmp_path / "landing"
    (landing / "pos").mkdir(parents=True)
    path = landing / "pos" / "day.csv"
    con = duckdb.connect()
    path.write_bytes(pos_file(GOOD[0], pos_row("b1", price="-1")))
    load_source(con, "pos", landing, RUN_DATE)
    path.write_bytes(pos_file(GOOD[1], GOOD[2]))
    result = load_source(con, "pos", landing, RUN_DATE)
    assert [f.replaced for f in result.files] == [True]
    assert con.execute("select transaction_id from raw.pos order by 1").fetchall() == [
        ("g2",),
        ("g3",),
    ]
    assert con.execute("select count(*) from raw.pos_quarantine").fetchone() == (0,)
    # a broken new version is rejected and the last good version's rows stay
    path.write_bytes(pos_file(*GOOD, header=POS.replace("quantity", "qty")))
    result = load_source(con, "pos", landing, RUN_DATE)
    assert result.files_rejected and "quantity" in result.files_rejected[0][1]
    assert con.execute("select transaction_id from raw.pos order by 1").fetchall() == [
        ("g2",),
        ("g3",),
    ]
    # and the same broken file is not rejected again on the next run (nothing changes)
    before = con.execute("select count(*) from raw.load_ledger").fetchone()
    assert load_source(con, "pos", landing, RUN_DATE).files_skipped_unchanged == 1
    assert con.execute("select count(*) from raw.load_ledger").fetchone() == before
