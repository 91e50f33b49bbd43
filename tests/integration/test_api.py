"""The membership API over HTTP (uvicorn on a free port), on snapshots publish really wrote."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import duckdb
import pytest
import uvicorn

from orchestration import cli
from orchestration.api import ApiSettingsError, create_app, encode_cursor
from warehouse.connection import configure_connection
from warehouse.publish import DIRECT_IDENTIFIER_COLUMNS, SOURCE_KEY_COLUMNS, publish_snapshot

TOKEN = "test-token-4f9a"
EMAIL_DOMAIN = "example.org"

WAREHOUSE_SQL = f"""
create schema marts;
create schema ml;
create table marts.customer_profiles as
select
    'p_k' || substr(md5(cast(i as varchar)), 1, 15) as person_id,
    'person' || i || '@{EMAIL_DOMAIN}' as email,
    'First' || i as first_name,
    i || ' Main Street' as street_address,
    date '1980-01-01' + cast(i as integer) as date_of_birth,
    'Springfield' as city,
    i % 2 = 0 as consent_personalization
from range(300) t(i);
create table marts.segment_definitions as
select * from (values
    ('big', 'Big spenders', 'rule', 'Spent the most.', '{{"rank_by": "spend"}}', 'ad_targeting'),
    ('small', 'Small set', 'rule', 'A few.', '{{"rank_by": "x"}}', 'personalization'),
    ('ties', 'Tied ranks', 'rule', 'Equal scores.', '{{"rank_by": "y"}}', 'analytics'),
    ('tiny', 'Too small', 'rule', 'Below min size.', '{{"rank_by": "z"}}', 'ad_targeting')
) t(segment_id, name, kind, description, definition, purpose);
create table marts.segment_members as
with persons as (
    select person_id, row_number() over (order by person_id) as i
    from marts.customer_profiles
),
picked as (
    select 'big' as segment_id, person_id, 1000.0 - i as score, i as position from persons
    where i <= 200
    union all
    select 'small', person_id, i * 0.5, i from persons where i between 150 and 186
    union all
    -- three members share each rank: pages must split and resume inside a tie
    select 'ties', person_id, cast(i // 3 as double), i // 3 from persons where i between 10 and 70
)
select
    segment_id, person_id, score,
    cast(case when segment_id = 'ties' then position else row_number() over (
        partition by segment_id order by score desc, person_id
    ) end as integer) as rank,
    hash(segment_id || person_id) % 7 = 0 as is_holdout,
    date '2026-06-30' as entered_on, date '2026-06-30' as as_of
from picked;
"""

SUMMARY_SQL = """
create or replace table marts.segment_summary as
select
    d.segment_id, d.name, d.kind, d.purpose, 'v1' as version, date '2026-06-30' as as_of,
    coalesce(m.members, 0) as members, coalesce(m.holdout_members, 0) as holdout_members,
    coalesce(m.members, 0) >= 5 as published, 0.1 as mean_propensity_30d
from marts.segment_definitions as d
left join (
    select segment_id, count(*) as members, count(*) filter (where is_holdout) as holdout_members
    from marts.segment_members group by segment_id
) as m on d.segment_id = m.segment_id
"""

# Every key a response may carry.
SERVED_KEYS = {
    "error",
    "status",
    "person_id",
    "as_of",
    "segments",
    "segment_id",
    "name",
    "kind",
    "description",
    "purpose",
    "definition",
    "version",
    "members",
    "holdout_members",
    "targetable_members",
    "updated",
    "rank",
    "score",
    "next_cursor",
    # the keys of a segment's definition as written in its audience file
    "rank_by",
}
IDENTIFIER_KEYS = (
    DIRECT_IDENTIFIER_COLUMNS
    | SOURCE_KEY_COLUMNS
    | {"address", "city", "postcode", "email_key", "phone_key", "names"}
)


def _publish(warehouse: Path, serving: Path) -> None:
    con = duckdb.connect(str(warehouse))
    try:
        configure_connection(con, b"api-test-key")
        con.execute(SUMMARY_SQL)
        publish_snapshot(con, serving)
    finally:
        con.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    warehouse, serving = root / "warehouse.duckdb", root / "serving.duckdb"
    con = duckdb.connect(str(warehouse))
    con.execute(WAREHOUSE_SQL)
    con.close()
    _publish(warehouse, serving)
    return {"warehouse": warehouse, "serving": serving}


@pytest.fixture(scope="module")
def server(published):
    app, store = create_app(published["serving"], TOKEN, poll_s=0.1)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.started, "the API did not start"
    yield {"base": f"http://127.0.0.1:{port}", "store": store}
    instance.should_exit = True
    thread.join(timeout=10)


seen_bodies: list[str] = []


def _get(server, path: str, token: str | None = TOKEN) -> tuple[int, dict]:
    request = urllib.request.Request(server["base"] + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    seen_bodies.append(body)
    return status, json.loads(body)


def _snapshot_rows(serving: Path, sql: str, params: list) -> list[tuple]:
    con = duckdb.connect(str(serving), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _all_members(server, segment_id: str, limit: int) -> list[dict]:
    members, cursor, pages = [], None, 0
    while True:
        query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        status, body = _get(
            server, f"/segments/{segment_id}/members?{urllib.parse.urlencode(query)}"
        )
        assert status == 200, body
        assert len(body["members"]) <= limit
        members += body["members"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return members
        assert pages < 1000


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
)
def test_every_answer_needs_the_bearer_token(server, published, header):
    person = _snapshot_rows(
        published["serving"], "select person_id from marts.segment_members limit 1", []
    )[0][0]
    for path in (f"/persons/{person}/segments", "/segments/big", "/segments/big/members"):
        request = urllib.request.Request(server["base"] + path)
        if header is not None:
            request.add_header("Authorization", header)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 401
        assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
        assert "person_id" not in caught.value.read().decode()
    status, body = _get(server, "/health", token=None)
    assert (status, body["status"]) == (200, "ok")


def test_a_persons_segments_are_their_targetable_memberships(server, published):
    rows = _snapshot_rows(
        published["serving"],
        "select person_id, segment_id, rank, score, is_holdout from marts.segment_members",
        [],
    )
    persons = {r[0] for r in rows}
    assert any(r[4] for r in rows), "the fixture plants holdout members"
    for person in sorted(persons):
        status, body = _get(server, f"/persons/{person}/segments")
        assert status == 200
        assert body["person_id"] == person and body["as_of"] == "2026-06-30"
        served = {(s["segment_id"], s["rank"], s["score"]) for s in body["segments"]}
        expected = {(r[1], r[2], r[3]) for r in rows if r[0] == person and not r[4]}
        assert served == expected
        purposes = {s["segment_id"]: s["purpose"] for s in body["segments"]}
        assert all(purposes[s] == "ad_targeting" for s in purposes if s == "big")
    # a filter on the channel's purpose
    member_of_big = next(r[0] for r in rows if r[1] == "big" and not r[4])
    status, body = _get(server, f"/persons/{member_of_big}/segments?purpose=ad_targeting")
    assert status == 200 and {s["segment_id"] for s in body["segments"]} == {"big"}


def test_holdout_members_are_not_in_their_segment(server, published):
    holdout = _snapshot_rows(
        published["serving"],
        "select person_id, segment_id from marts.segment_members where is_holdout",
        [],
    )
    assert holdout
    for person, segment_id in holdout:
        _, body = _get(server, f"/persons/{person}/segments")
        assert segment_id not in {s["segment_id"] for s in body["segments"]}


def test_a_person_in_no_segment_gets_an_empty_list_and_an_unknown_one_404(server, published):
    outsider = _snapshot_rows(
        published["serving"],
        """
        select person_id from marts.customer_profiles
        where person_id not in (select person_id from marts.segment_members)
        order by person_id limit 1
        """,
        [],
    )[0][0]
    assert _get(server, f"/persons/{outsider}/segments")[1]["segments"] == []
    for unknown in ("p_knotaperson0000", "x" * 300, outsider + "%00", outsider[:-1]):
        status, body = _get(server, f"/persons/{unknown}/segments")
        assert status == 404 and "error" in body


def test_segment_sizes_are_the_summary(server, published):
    summary = _snapshot_rows(
        published["serving"],
        "select segment_id, members, holdout_members, published from marts.segment_summary",
        [],
    )
    assert {s for s, *_, published_ in summary if not published_} == {"tiny"}
    for segment_id, members, holdout, is_published in summary:
        status, body = _get(server, f"/segments/{segment_id}")
        if not is_published:
            assert status == 404
            continue
        assert status == 200
        assert (body["members"], body["holdout_members"]) == (members, holdout)
        assert body["targetable_members"] == members - holdout
        assert body["as_of"] == "2026-06-30" and body["updated"]
        assert isinstance(body["definition"], dict)
    assert _get(server, "/segments/no_such_segment")[0] == 404
    assert _get(server, "/segments/no_such_segment/members")[0] == 404


@pytest.mark.parametrize("limit", [1, 3, 7, 10_000])
def test_pages_cover_every_targetable_member_exactly_once(server, published, limit):
    for segment_id in ("big", "small", "ties"):
        expected = _snapshot_rows(
            published["serving"],
            """
            select person_id, rank from marts.segment_members
            where segment_id = ? and not is_holdout order by rank, person_id
            """,
            [segment_id],
        )
        members = _all_members(server, segment_id, limit)
        assert [(m["person_id"], m["rank"]) for m in members] == expected


def test_bad_cursors_and_limits_are_400(server):
    first = _get(server, "/segments/big/members?limit=2")[1]
    foreign = urllib.parse.quote(first["next_cursor"])
    assert _get(server, f"/segments/small/members?cursor={foreign}")[0] == 400
    for cursor in ("not-base64!", "AAAA", encode_cursor("big", "1", "p"), "%20"):
        query = urllib.parse.urlencode({"cursor": cursor})
        status, body = _get(server, f"/segments/big/members?{query}")
        assert status == 400 and "cursor" in body["error"]
    for limit in ("0", "-1", "abc", "10001"):
        assert _get(server, f"/segments/big/members?limit={limit}")[0] == 400


def test_no_response_carries_a_direct_identifier(server, published):
    # answers of every endpoint, errors included (the tests above add theirs)
    person = _snapshot_rows(
        published["serving"], "select person_id from marts.segment_members limit 1", []
    )[0][0]
    _get(server, f"/persons/{person}/segments")
    _get(server, "/segments/big")
    _all_members(server, "big", 50)
    _get(server, "/segments/big/members?cursor=bad")

    def keys(value) -> set[str]:
        if isinstance(value, dict):
            return set(value) | {k for v in value.values() for k in keys(v)}
        if isinstance(value, list):
            return {k for v in value for k in keys(v)}
        return set()

    served = set().union(*(keys(json.loads(body)) for body in seen_bodies))
    assert served <= SERVED_KEYS
    assert not served & IDENTIFIER_KEYS
    text = "\n".join(seen_bodies)
    assert EMAIL_DOMAIN not in text and "Main Street" not in text and "First1" not in text


def test_a_replaced_snapshot_is_served_without_a_restart(server, published):
    before = os.stat(published["serving"]).st_ino
    _, old = _get(server, "/segments/big")
    con = duckdb.connect(str(published["warehouse"]))
    con.execute(
        """
        delete from marts.segment_members
        where segment_id = 'big' and person_id in (
            select person_id from marts.segment_members
            where segment_id = 'big' and not is_holdout order by rank limit 10
        )
        """
    )
    con.execute(
        "insert into marts.segment_definitions values "
        "('fresh', 'Fresh', 'rule', 'New today.', '{}', 'personalization')"
    )
    con.execute(
        """
        insert into marts.segment_members
        select 'fresh', person_id, 1.0, cast(row_number() over (order by person_id) as integer),
               false, date '2026-07-01', date '2026-07-01'
        from marts.customer_profiles order by person_id limit 20
        """
    )
    con.close()
    _publish(published["warehouse"], published["serving"])
    assert os.stat(published["serving"]).st_ino != before  # swapped, not rewritten in place

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, fresh = _get(server, "/segments/fresh")
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200 and fresh["targetable_members"] == 20
    _, big = _get(server, "/segments/big")
    assert big["members"] == old["members"] - 10
    members = _all_members(server, "big", 25)
    assert len(members) == big["targetable_members"]


def test_serve_refuses_to_start_without_a_token(tmp_path, monkeypatch, capsys):
    with pytest.raises(ApiSettingsError, match="MICROSEG_API_TOKEN"):
        create_app(tmp_path / "serving.duckdb", "")
    monkeypatch.chdir(tmp_path)  # no .env file
    monkeypatch.setenv("MICROSEG_API_TOKEN", "")
    monkeypatch.setenv("MICROSEG_SERVING", str(tmp_path / "serving.duckdb"))
    assert cli.main(["serve"]) == cli.EXIT_CANNOT_RUN
    assert "MICROSEG_API_TOKEN is empty" in capsys.readouterr().err


def test_no_snapshot_yet_is_503_until_one_is_published(tmp_path, published):
    serving = tmp_path / "serving.duckdb"
    app, store = create_app(serving, TOKEN, poll_s=0.1)
    port = _free_port()
    instance = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not instance.started and time.monotonic() < deadline:
            time.sleep(0.05)
        local = {"base": f"http://127.0.0.1:{port}"}
        assert _get(local, "/segments/big")[0] == 503
        assert _get(local, "/health", token=None)[0] == 503
        _publish(published["warehouse"], serving)
        deadline = time.monotonic() + 20
        with contextlib.suppress(AssertionError):
            while time.monotonic() < deadline and _get(local, "/segments/big")[0] != 200:
                time.sleep(0.1)
        assert _get(local, "/segments/big")[0] == 200
    finally:
        instance.should_exit = True
        thread.join(timeout=10)
