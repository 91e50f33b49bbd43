"""Membership API benchmark: requests per second and latency at 1M persons.

    .venv/bin/python -m bench.api [--persons N] [--segments S] [--seconds T] [--clients C]

Writes, with seeded SQL, a serving snapshot with the served tables and columns publish writes
(marts.customer_profiles, segment_definitions, segment_summary, segment_members) for N persons in
S segments into data/bench/api-<N>/serving.duckdb. Then:
- in-process, the answer to "which segments is this person in" three ways: the API's in-memory
  arrays, a query on the read-only snapshot file, and a query on an in-memory DuckDB copy with an
  index on person_id (the alternative design: a connection plus a cache);
- over HTTP, `microseg serve` in its own process, hit by C client threads with keep-alive
  connections for T seconds (80% person lookups, 10% segment descriptions, 10% member pages of
  100 following the cursor): requests per second, p50 and p99 per kind, the server's memory.
Writes data/bench/api-<N>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np

from orchestration.api import load_snapshot

REPO = Path(__file__).resolve().parent.parent

SNAPSHOT_SQL = """
select setseed(0.13);
create schema marts;
create table marts.customer_profiles as
select
    'p_k' || substr(md5(cast(i as varchar)), 1, 15) as person_id,
    'US' as country, random() < 0.6 as consent_personalization,
    random() < 0.5 as consent_ad_targeting
from range($persons) t(i);
create table marts.segment_definitions as
select
    'segment_' || lpad(cast(s as varchar), 2, '0') as segment_id,
    'Segment ' || s as name, 'rule' as kind, 'Benchmark segment ' || s as description,
    '{"where": {"attribute": "score", "above": ' || s || '}}' as definition,
    (['personalization', 'ad_targeting', 'analytics'])[1 + s % 3] as purpose,
    md5(cast(s as varchar)) as version, 50 as min_size, 0.1 as holdout_share,
    cast(null as varchar) as segment_group, 1 as priority, 'score' as rank_by,
    'desc' as rank_order, 'segments/bench.yml' as source_file, 1 + s as source_line,
    -- from half the persons down to a tenth: about four segments a person
    0.5 / sqrt(1 + s) as share
from range($segments) t(s);
create table marts.segment_members as
with picked as (
    select d.segment_id, p.person_id, round(random() * 1000, 2) as score
    from marts.customer_profiles as p
    cross join marts.segment_definitions as d
    -- a draw per (segment, person): random() here would be drawn once per segment
    where hash(d.segment_id || p.person_id) % 1000000 < d.share * 1000000
)
select
    segment_id, person_id, score,
    cast(row_number() over (
        partition by segment_id order by score desc, person_id
    ) as integer) as rank,
    hash(segment_id || person_id) % 10 = 0 as is_holdout,
    date '2026-06-30' as entered_on, date '2026-06-30' as as_of
from picked;
create table marts.segment_summary as
with counts as (
    select segment_id, count(*) as members, count(*) filter (where is_holdout) as holdout_members
    from marts.segment_members group by segment_id
)
select
    d.segment_id, d.name, d.kind, d.purpose, d.segment_group, d.version,
    date '2026-06-30' as as_of, c.members as eligible, 0 as excluded_no_consent,
    0 as excluded_by_group, c.members, c.holdout_members,
    c.members / $persons as share_of_persons, d.min_size, false as below_min_size,
    true as published
from marts.segment_definitions as d inner join counts as c on d.segment_id = c.segment_id;
alter table marts.segment_definitions drop column share;
"""


def build_snapshot(path: Path, persons: int, segments: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        # sizes are validated integers; DuckDB takes no parameters in DDL
        sql = SNAPSHOT_SQL.replace("$persons", str(int(persons)))
        con.execute(sql.replace("$segments", str(int(segments))))
        con.execute("checkpoint")
    finally:
        con.close()


def _rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    arr = np.array(values) * 1000
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
    }


def compare_designs(path: Path, sample: list[str]) -> dict:
    """Per-lookup latency of the in-memory arrays against DuckDB queries."""
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    snap = load_snapshot(path)
    load_s = time.perf_counter() - t0
    report = {"load_s": round(load_s, 2), "load_rss_mb": round(_rss_mb() - rss_before)}

    t0 = time.perf_counter()
    for person_id in sample:
        snap.person_segments(snap.person_index(person_id), None)
    report["memory_us_per_lookup"] = round((time.perf_counter() - t0) / len(sample) * 1e6, 1)

    query = (
        "select segment_id, rank, score from marts.segment_members "
        "where person_id = ? and is_holdout = false"
    )
    con = duckdb.connect(str(path), read_only=True)
    few = sample[:50]
    t0 = time.perf_counter()
    for person_id in few:
        con.execute(query, [person_id]).fetchall()
    report["duckdb_file_us_per_lookup"] = round((time.perf_counter() - t0) / len(few) * 1e6, 1)
    con.close()

    mem = duckdb.connect()
    mem.execute("attach ? as snap (read_only)", [str(path)])
    mem.execute("create schema marts")
    mem.execute("create table marts.segment_members as select * from snap.marts.segment_members")
    mem.execute("create index members_person on marts.segment_members (person_id)")
    some = sample[:200]
    t0 = time.perf_counter()
    for person_id in some:
        mem.execute(query, [person_id]).fetchall()
    report["duckdb_indexed_us_per_lookup"] = round((time.perf_counter() - t0) / len(some) * 1e6, 1)
    mem.close()
    return report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(port, token, persons, segments, deadline, out, errors) -> None:
    rng = random.Random(threading.get_ident())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    cursors: dict[str, str | None] = {}
    while time.perf_counter() < deadline:
        roll = rng.random()
        if roll < 0.8:
            kind, path = "person", f"/persons/{rng.choice(persons)}/segments"
        elif roll < 0.9:
            kind, path = "segment", f"/segments/{rng.choice(segments)}"
        else:
            segment = rng.choice(segments)
            cursor = cursors.get(segment)
            kind = "page"
            path = f"/segments/{segment}/members?limit=100" + (
                f"&cursor={cursor}" if cursor else ""
            )
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        out[kind].append(time.perf_counter() - started)
        if response.status != 200:
            errors.append(response.status)
        elif kind == "page":
            cursors[segment] = json.loads(body)["next_cursor"]
    conn.close()


def load_test(path: Path, persons: list[str], seconds: float, clients: int) -> dict:
    token = secrets.token_urlsafe(24)
    port = _free_port()
    env = {
        **os.environ,
        "MICROSEG_SERVING": str(path),
        "MICROSEG_API_TOKEN": token,
        "MICROSEG_API_HOST": "127.0.0.1",
        "MICROSEG_API_PORT": str(port),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.perf_counter()
        segments: list[str] = []
        while time.perf_counter() - started < 300:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    con = duckdb.connect(str(path), read_only=True)
                    segments = [
                        s
                        for (s,) in con.execute(
                            "select segment_id from marts.segment_summary"
                        ).fetchall()
                    ]
                    con.close()
                    break
            except OSError:
                pass
            if server.poll() is not None:
                raise RuntimeError(f"microseg serve exited with {server.returncode}")
            time.sleep(0.5)
        ready_s = time.perf_counter() - started
        kinds = ("person", "segment", "page")
        per_thread = [{k: [] for k in kinds} for _ in range(clients)]
        errors: list[int] = []
        deadline = time.perf_counter() + seconds
        threads = [
            threading.Thread(
                target=_client, args=(port, token, persons, segments, deadline, out, errors)
            )
            for out in per_thread
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        merged = {k: [v for out in per_thread for v in out[k]] for k in kinds}
        everything = [v for k in kinds for v in merged[k]]
        return {
            "ready_s": round(ready_s, 1),
            "server_rss_mb": round(_rss_mb(server.pid)),
            "clients": clients,
            "seconds": round(wall, 1),
            "requests": len(everything),
            "rps": round(len(everything) / wall),
            "errors": len(errors),
            "all": _percentiles(everything),
            **{k: _percentiles(merged[k]) for k in kinds},
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    path = REPO / "data" / "bench" / f"api-{args.persons}" / "serving.duckdb"
    t0 = time.perf_counter()
    build_snapshot(path, args.persons, args.segments)
    con = duckdb.connect(str(path), read_only=True)
    memberships = con.execute("select count(*) from marts.segment_members").fetchall()[0][0]
    persons = con.sql("select person_id from marts.customer_profiles").to_arrow_table()
    persons = persons.column("person_id").to_pylist()
    con.close()
    print(
        f"snapshot: {args.persons:,} persons, {args.segments} segments, {memberships:,} "
        f"memberships, built in {time.perf_counter() - t0:.0f}s",
        flush=True,
    )

    sample = random.Random(7).sample(persons, 20_000)
    designs = compare_designs(path, sample)
    print(
        f"load into memory: {designs['load_s']}s, +{designs['load_rss_mb']} MB; per lookup: "
        f"memory {designs['memory_us_per_lookup']} µs, DuckDB on the file "
        f"{designs['duckdb_file_us_per_lookup']} µs, DuckDB in memory with an index "
        f"{designs['duckdb_indexed_us_per_lookup']} µs",
        flush=True,
    )

    http_report = load_test(path, persons, args.seconds, args.clients)
    print(
        f"HTTP, {http_report['clients']} keep-alive clients for {http_report['seconds']}s: "
        f"{http_report['rps']:,} requests/s, p50 {http_report['all']['p50_ms']} ms, "
        f"p99 {http_report['all']['p99_ms']} ms, {http_report['errors']} errors; "
        f"server {http_report['server_rss_mb']} MB, ready in {http_report['ready_s']}s"
    )
    for kind in ("person", "segment", "page"):
        print(f"  {kind:<8} {http_report[kind]}")
    report = {
        "persons": args.persons,
        "segments": args.segments,
        "memberships": memberships,
        "designs": designs,
        "http": http_report,
    }
    out = REPO / "data" / "bench" / f"api-{args.persons}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
