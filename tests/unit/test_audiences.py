"""Audience files: every error a marketer can make is named with file, line and a suggestion,
and every operator selects exactly the persons it should (compiled SQL on hand-made tables)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import pytest

from warehouse.audiences import (
    AudienceError,
    attribute_catalog,
    compile_audiences,
    load_audiences,
    render,
    segment_rows,
    write_audience_tables,
)

REPO = Path(__file__).resolve().parents[2]
AS_OF = "2026-06-30"


@pytest.fixture(scope="module")
def catalog():
    return attribute_catalog()


def _write(folder: Path, text: str, name: str = "audience.yml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _problems(tmp_path: Path, text: str, catalog) -> list[str]:
    _write(tmp_path, text)
    with pytest.raises(AudienceError) as info:
        load_audiences(tmp_path, catalog, root=tmp_path)
    return [str(p) for p in info.value.problems]


def _segment(where: str, extra: str = "", seg_id: str = "s") -> str:
    body = textwrap.indent(textwrap.dedent(where).strip(), " " * 6)
    return f"""\
  - id: {seg_id}
    name: S
    purpose: analytics{extra}
    where:
{body}
"""


ERRORS = [
    # (where, expected line, expected fragments)
    (
        "event: {type: purchase, within_day: 7}",
        6,
        ["unknown key `within_day` in an event condition", "did you mean `within_days`?"],
    ),
    (
        "attribute: recency_days\ngte: 30",
        7,
        ["unknown operator `gte` for attribute `recency_days`", "did you mean `ge`?"],
    ),
    (
        "attribute: recency_day\ngt: 30",
        6,
        ["unknown attribute `recency_day`", "did you mean `recency_days`?"],
    ),
    (
        "attribute: recency_days\ngt: thirty",
        7,
        ["`recency_days` is a number; 'thirty' is not one"],
    ),
    (
        "attribute: urbanicity\neq: urbn",
        7,
        ["`urbanicity` is one of", "did you mean `urban`?"],
    ),
    (
        "attribute: top_category_365d\nlt: garden",
        7,
        ["operator `lt` does not apply to `top_category_365d`, a text attribute"],
    ),
    (
        "attribute: postcode\nin: [02134]",
        7,
        ["`postcode` is text; 1116 is not (YAML read it as a int): quote it"],
    ),
    (
        "attribute: country\neq: NO",
        7,
        ["`country` is text; False is not (YAML read it as a bool): quote it"],
    ),
    (
        "attribute: is_known\neq: 1",
        7,
        ["`is_known` is true or false; 1 is not"],
    ),
    (
        "attribute: recency_days\nbetween: [30]",
        7,
        ["`between` takes two values [low, high]"],
    ),
    (
        "attribute: recency_days\nbetween: [60, 30]",
        7,
        ["`between` of `recency_days`: 60 is above 30"],
    ),
    (
        "attribute: recency_days\nin: []",
        7,
        ["`in` takes a non-empty list of values"],
    ),
    (
        "attribute: recency_days\nis_null: maybe",
        7,
        ["`is_null` takes true or false"],
    ),
    (
        "event: {type: purchse}",
        6,
        ["unknown event type `purchse`", "did you mean `purchase`?"],
    ),
    (
        "event: {type: purchase, channel: shop}",
        6,
        ["`channel` of an event condition is `shop`, not one of"],
    ),
    (
        "event: {type: purchase, at_least: 3, at_most: 1}",
        6,
        ["`at_most` (1) is below `at_least` (3)"],
    ),
    (
        "event: {type: purchase, at_least: -1}",
        6,
        ["`at_least` of an event condition must be a whole number >= 0, got -1"],
    ),
    (
        "event: {type: purchase, within_days: 7, between: [2026-01-01, 2026-02-01]}",
        6,
        ["takes `within_days` or `between`, not both"],
    ),
    (
        "event: {type: purchase, between: [2026-02-01, 2026-01-01]}",
        6,
        ["2026-02-01 is after 2026-01-01"],
    ),
    (
        "session: {events: [{type: purchase, at_most: 0}]}",
        6,
        ["needs at least one event with `at_least` >= 1"],
    ),
    (
        "session: {events: [{type: product_view, within_days: 3}]}",
        6,
        ["unknown key `within_days` in an event of a session"],
    ),
    (
        "alll:\n  - attribute: recency_days\n    gt: 1",
        6,
        ["unknown condition `alll`", "did you mean `all`?"],
    ),
    (
        "all: []",
        6,
        ["`all` takes a non-empty list of conditions"],
    ),
    (
        "all:\n  - event: {type: purchase}\n    attribute: recency_days",
        7,
        ["one condition per list item", "wrap them in `all:` or `any:`"],
    ),
    (
        "in_segment: nowhere",
        6,
        ["`in_segment: nowhere` names no segment"],
    ),
]


@pytest.mark.parametrize(("where", "line", "fragments"), ERRORS)
def test_each_error_names_file_line_and_a_suggestion(tmp_path, catalog, where, line, fragments):
    problems = _problems(tmp_path, "segments:\n" + _segment(where), catalog)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"audience.yml:{line}: "), problems
    for fragment in fragments:
        assert fragment in problems[0], problems


def test_segment_level_errors(tmp_path, catalog):
    text = """\
    segments:
      - id: Bad-Id
        name: S
        purpose: analytics
        where: {event: {type: purchase}}
      - id: ok
        name: S
        purpose: marketing
        min_size: 0
        holdout_share: 0.9
        priority: 2
        rank_by: top_category_365d
        colour: blue
        where: {event: {type: purchase}}
      - id: no_where
        name: S
        purpose: analytics
    """
    problems = "\n".join(_problems(tmp_path, text, catalog))
    for fragment in (
        "audience.yml:2: segment `id` must match",
        "audience.yml:8: `purpose` of segment `ok` is `marketing`, not one of",
        "audience.yml:9: `min_size` of segment `ok` must be a whole number >= 1",
        "audience.yml:10: `holdout_share` of segment `ok` must be a number from 0 to 0.5",
        "audience.yml:11: `priority` of segment `ok` orders segments within a `group`",
        "audience.yml:12: `rank_by` of segment `ok` must name a numeric attribute",
        "audience.yml:13: unknown key `colour` in a segment",
        "audience.yml:15: segment `no_where` needs `where`",
    ):
        assert fragment in problems, problems


def test_cycles_duplicates_and_group_priorities_are_refused(tmp_path, catalog):
    text = (
        "segments:\n"
        + _segment("in_segment: b", seg_id="a")
        + _segment("in_segment: c", seg_id="b")
        + _segment("in_segment: a", seg_id="c")
        + _segment("event: {type: purchase}", seg_id="a")
        + _segment("event: {type: purchase}", "\n    group: g\n    priority: 1", seg_id="d")
        + _segment("event: {type: purchase}", "\n    group: g\n    priority: 1", seg_id="e")
    )
    problems = "\n".join(_problems(tmp_path, text, catalog))
    assert "segments form a cycle: a -> b -> c -> a" in problems
    assert "segment id `a` is already defined at" in problems
    assert "segments `d` and `e` of group `g` share priority 1" in problems


def test_a_missing_folder_is_an_error_and_drafts_are_skipped(tmp_path, catalog):
    with pytest.raises(AudienceError, match="no such folder"):
        load_audiences(tmp_path / "nowhere", catalog)
    _write(tmp_path / "live", "segments:\n" + _segment("event: {type: purchase}"))
    _write(tmp_path / "live" / "_drafts", "segments:\n" + _segment("oops: 1"))
    _write(tmp_path / "live", "segments:\n" + _segment("oops: 1"), name=".wip.yml")
    audiences = load_audiences(tmp_path / "live", catalog, root=tmp_path)
    assert [s.segment_id for s in audiences.segments] == ["s"]
    assert audiences.files == ["live/audience.yml"]


def test_yaml_errors_name_their_line(tmp_path, catalog):
    problems = _problems(tmp_path, "segments:\n  - id: a\n    id: b\n", catalog)
    assert problems == ["audience.yml:3: key `id` appears twice"]
    problems = _problems(tmp_path, "segments:\n  - id: [a\n", catalog)
    assert problems[0].startswith("audience.yml:3: not valid YAML")
    problems = _problems(tmp_path, "- id: a\n", catalog)
    assert "a mapping with a `segments:` list" in problems[0]


def test_shipped_audience_files_are_valid_and_compile():
    audiences = load_audiences(REPO / "segments", root=REPO)
    ids = {s.segment_id for s in audiences.segments}
    # the examples the format promises, and the segments campaigns target
    assert {
        "product_viewers_no_purchase_7d",
        "engaged_session_shoppers",
        "purchased_30d",
        "urban_mobile_high_intent",
        "suburban_desktop_cart_abandoners",
        "rfm_champions",
        "rfm_at_risk",
        "propensity_top_decile",
    } <= ids
    compiled = compile_audiences(audiences)
    assert compiled.matches_sql.count("'segment_id':") == len(ids)


# ---------------------------------------------------------------------------------------------
# Semantics: each operator on hand-made persons and events.

PERSONS = [
    # person_id, recency_days, rfm_cell, is_known, urbanicity, first_seen_at, propensity_30d
    ("p1", 5, "champions", True, "urban", "2026-01-10", 0.9),
    ("p2", 40, "at_risk", True, "suburban", "2025-06-01", 0.5),
    ("p3", None, "no_purchase", False, None, "2026-06-01", 0.1),
    ("p4", 200, "Hibernating", True, "rural", "2024-02-02", 0.3),
]
# person, type, channel, device, session, sku, category, page, at
EVENTS = [
    ("p1", "product_view", "web", "mobile", "s1", "SKU-1", "garden", "/p/1?email=x", "2026-06-29"),
    ("p1", "product_view", "web", "mobile", "s1", "SKU-1", "garden", "/p/1", "2026-06-29"),
    ("p1", "product_view", "web", "mobile", "s1", "SKU-1", "garden", "/p/1", "2026-06-29"),
    ("p1", "add_to_cart", "web", "mobile", "s1", "SKU-1", "garden", "/cart", "2026-06-29"),
    ("p1", "purchase", "store", None, "pos:t1", "SKU-9", "toys", None, "2026-06-30"),
    ("p2", "product_view", "web", "desktop", "s2", "SKU-1", "garden", "/p/1", "2026-06-20"),
    ("p2", "product_view", "web", "desktop", "s3", "SKU-1", "garden", "/p/1", "2026-06-21"),
    ("p2", "product_view", "web", "desktop", "s3", "SKU-1", "garden", "/p/1", "2026-06-21"),
    ("p2", "add_to_cart", "web", "desktop", "s3", "SKU-2", "garden", "/cart", "2026-06-21"),
    ("p2", "purchase", "web", "desktop", "s3", "SKU-2", "garden", "/checkout", "2026-05-01"),
    ("p3", "email_click", "email", None, None, None, None, "/promo", "2026-06-30"),
    ("p4", "purchase", "store", None, "pos:t2", "SKU-3", "tools", None, "2026-01-15"),
    ("p4", "purchase", "store", None, "pos:t3", "SKU-3", "tools", None, "2026-07-02"),  # future
]


@pytest.fixture(scope="module")
def tables():
    con = duckdb.connect()
    con.execute(
        "create table attrs (person_id varchar, recency_days bigint, rfm_cell varchar, "
        "is_known boolean, urbanicity varchar, first_seen_at timestamp, propensity_30d double)"
    )
    con.executemany("insert into attrs values (?, ?, ?, ?, ?, ?, ?)", PERSONS)
    con.execute(
        "create table events (person_id varchar, event_type varchar, channel varchar, "
        "device varchar, session_id varchar, sku varchar, category varchar, page varchar, "
        "event_at timestamp, event_key varchar)"
    )
    con.executemany(
        "insert into events values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*e, f"e{i}") for i, e in enumerate(EVENTS)],
    )
    yield con
    con.close()


def _members(tmp_path: Path, con, catalog, where: str, *, others: str = "") -> set[str]:
    text = "segments:\n" + _segment(where) + others
    _write(tmp_path, text)
    audiences = load_audiences(tmp_path, catalog, root=tmp_path)
    compiled = compile_audiences(audiences, catalog)
    write_audience_tables(con, audiences, compiled, 1, 0.0)
    sql = render(
        compiled.matches_sql,
        attributes="attrs",
        events="events",
        conditions="raw.audience_conditions",
        as_of=f"cast('{AS_OF}' as date)",
    )
    rows = con.execute(f"select segment_id, person_id from ({sql})").fetchall()
    return {p for s, p in rows if s == "s"}


SEMANTICS = [
    ("attribute: recency_days\neq: 40", {"p2"}),
    ("attribute: recency_days\nne: 40", {"p1", "p4"}),  # null never matches ne
    ("attribute: recency_days\nlt: 40", {"p1"}),
    ("attribute: recency_days\nle: 40", {"p1", "p2"}),
    ("attribute: recency_days\ngt: 40", {"p4"}),
    ("attribute: recency_days\nge: 40", {"p2", "p4"}),
    ("attribute: recency_days\nbetween: [5, 40]", {"p1", "p2"}),
    ("attribute: recency_days\nin: [5, 200]", {"p1", "p4"}),
    ("attribute: recency_days\nnot_in: [5, 200]", {"p2"}),
    ("attribute: recency_days\nis_null: true", {"p3"}),
    ("attribute: recency_days\nis_null: false", {"p1", "p2", "p4"}),
    ("attribute: rfm_cell\neq: HIBERNATING", {"p4"}),  # text compares case-insensitively
    ("attribute: rfm_cell\nin: [champions, at_risk]", {"p1", "p2"}),
    ("attribute: rfm_cell\nnot_in: [champions]", {"p2", "p3", "p4"}),
    ("attribute: is_known\neq: false", {"p3"}),
    ("attribute: urbanicity\nne: urban", {"p2", "p4"}),
    ("attribute: first_seen_at\nge: 2026-01-01", {"p1", "p3"}),
    ("attribute: first_seen_at\nbetween: [2025-01-01, 2026-01-31]", {"p1", "p2"}),
    ("event: {type: product_view}", {"p1", "p2"}),
    ("event: {type: product_view, at_least: 3}", {"p1", "p2"}),
    ("event: {type: product_view, at_least: 3, within_days: 7}", {"p1"}),
    ("event: {type: product_view, at_most: 2}", {"p3", "p4"}),  # zero events count
    ("event: {type: product_view, at_least: 1, at_most: 2, within_days: 12}", set()),
    ("event: {type: [add_to_cart, email_click], within_days: 1}", {"p3"}),
    ("event: {type: purchase, channel: store}", {"p1", "p4"}),  # the future one is out
    ("event: {type: purchase, channel: web}", {"p2"}),
    ("event: {type: product_view, device: desktop}", {"p2"}),
    ("event: {type: add_to_cart, sku: SKU-2}", {"p2"}),
    ("event: {type: purchase, category: TOYS}", {"p1"}),
    ("event: {type: product_view, page_contains: 'EMAIL='}", {"p1"}),  # query string kept here
    ("event: {type: purchase, between: [2026-01-01, 2026-05-01]}", {"p2", "p4"}),
    ("none:\n  - event: {type: purchase}", {"p3"}),
    (
        "all:\n  - event: {type: product_view, at_least: 3}\n"
        "  - none:\n      - event: {type: purchase, within_days: 30}",
        {"p2"},
    ),
    (
        "any:\n  - attribute: urbanicity\n    eq: rural\n"
        "  - all:\n      - attribute: is_known\n        eq: true\n"
        "      - event: {type: add_to_cart, device: mobile}",
        {"p1", "p4"},
    ),
    # one session with 3+ views and a cart add: p1 (s1); p2 spread them over two sessions
    (
        "session:\n  events:\n    - {type: product_view, at_least: 3}\n    - {type: add_to_cart}",
        {"p1"},
    ),
    (
        "session:\n  events:\n    - {type: product_view, at_least: 2}\n"
        "    - {type: purchase, at_most: 0}",
        {"p1"},  # p2's s3 had a purchase
    ),
    ("session:\n  within_days: 5\n  events:\n    - {type: product_view, at_least: 2}", {"p1"}),
    ("session:\n  events:\n    - {type: product_view}\n  at_least: 2", {"p2"}),
]


@pytest.mark.parametrize(("where", "expected"), SEMANTICS)
def test_operator_selects_exactly_the_right_persons(tmp_path, tables, catalog, where, expected):
    assert _members(tmp_path, tables, catalog, where) == expected


def test_in_segment_reuses_another_segments_condition(tmp_path, tables, catalog):
    other = _segment("event: {type: purchase, channel: store}", seg_id="store_buyers")
    where = "all:\n  - in_segment: store_buyers\n  - attribute: urbanicity\n    eq: urban"
    assert _members(tmp_path, tables, catalog, where, others=other) == {"p1"}


def test_values_never_reach_the_sql_text(tmp_path, catalog):
    text = "segments:\n" + _segment(
        'all:\n  - attribute: rfm_cell\n    eq: "x\'; drop table attrs; --"\n'
        '  - event: {type: product_view, sku: "SKU-\'1", page_contains: "\';--"}'
    )
    _write(tmp_path, text)
    compiled = compile_audiences(load_audiences(tmp_path, catalog, root=tmp_path), catalog)
    for sql in (compiled.matches_sql, compiled.leaves_sql):
        assert "drop table" not in sql and "SKU-'1" not in sql and "';--" not in sql


def test_commands_refuse_an_invalid_folder_before_anything_runs(tmp_path, capsys, monkeypatch):
    from orchestration.cli import main
    from orchestration.runner import run_refresh
    from orchestration.settings import load_settings

    folder = tmp_path / "segments"
    _write(folder, "segments:\n" + _segment("event: {type: purchase, within_day: 7}"))
    env = {
        "MICROSEG_SEGMENTS_DIR": str(folder),
        "MICROSEG_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "MICROSEG_HMAC_KEY": "k",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["segments", "validate"]) == 1
    err = capsys.readouterr().err
    assert "segments/audience.yml:6: unknown key `within_day`" in err
    assert run_refresh(load_settings(env)) == 2
    assert "did you mean `within_days`?" in capsys.readouterr().err
    assert not (tmp_path / "warehouse.duckdb").exists()  # nothing ran
    (folder / "audience.yml").write_text("segments:\n" + _segment("event: {type: purchase}"))
    assert main(["segments", "validate"]) == 0
    assert "1 segment(s) in 1 file(s)" in capsys.readouterr().out


def test_personalization_block_is_validated_and_stored(tmp_path, catalog):
    bad = "segments:\n" + _segment(
        "attribute: recency_days\nle: 7",
        extra="\n    personalization:\n      template: Not An Id\n"
        "      variables: [loyalty_teir]\n      channels: [sms]",
    )
    problems = "\n".join(_problems(tmp_path, bad, catalog))
    assert "needs `offer`" in problems
    assert "unknown template variable 'loyalty_teir'" in problems
    assert "did you mean `loyalty_tier`?" in problems
    assert "unknown channel 'sms'" in problems
    assert "`template` of segment `s` must be an id" in problems

    good = "segments:\n" + _segment(
        "attribute: recency_days\nle: 7",
        extra="\n    personalization:\n      offer: Ten percent off\n"
        "      variables: [discount_level, discount_level]\n      priority: 2",
    )
    _write(tmp_path, good)
    audiences = load_audiences(tmp_path, catalog, root=tmp_path)
    row = segment_rows(audiences, 50, 0.1)[0]
    assert row["offer"] == "Ten percent off" and row["feed_priority"] == 2
    assert row["template_variables"] == ["discount_level"]
    assert row["feed_channels"] == ["dco", "email"]
