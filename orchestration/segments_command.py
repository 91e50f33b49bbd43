"""`microseg segments validate | preview FILE | explain PERSON_ID`: audience files checked and
tried on the last published data (the serving snapshot, read-only: never waits on a refresh)."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

from orchestration.settings import Settings
from warehouse.audience_tools import Relations, explain_person, format_explanation, preview_segments
from warehouse.audiences import (
    AudienceError,
    Audiences,
    compile_audiences,
    load_audiences,
    segment_rows,
    write_audience_tables,
)
from warehouse.connection import configure_connection

EXIT_OK, EXIT_INVALID, EXIT_CANNOT_RUN = 0, 1, 2


def _load(settings: Settings, extra: Path | None = None) -> Audiences | None:
    folder = settings.segments_dir
    try:
        audiences = load_audiences(folder, root=folder.parent, extra=extra)
    except AudienceError as exc:
        print(f"invalid audience files ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None
    return audiences


def _snapshot(settings: Settings) -> duckdb.DuckDBPyConnection | None:
    if not settings.serving.exists():
        print(
            f"no published snapshot at {settings.serving} yet: run `microseg run` to see sizes",
            file=sys.stderr,
        )
        return None
    con = duckdb.connect()
    configure_connection(con, settings.hmac_key.encode(), settings.phone_region)
    con.execute("attach ? as snap (read_only)", [str(settings.serving)])
    return con


def _stage(con: duckdb.DuckDBPyConnection, audiences: Audiences, settings: Settings):
    """The compiled audiences as temp tables beside the attached snapshot."""
    compiled = compile_audiences(audiences)
    write_audience_tables(
        con, audiences, compiled, settings.min_segment_size, settings.holdout_share
    )
    relations = Relations(
        attributes="snap.marts.segment_attributes",
        events="snap.marts.segment_events",
        conditions="memory.raw.audience_conditions",
        as_of="(select max(as_of) from snap.marts.segment_attributes)",
    )
    return compiled, relations


def validate(settings: Settings) -> int:
    audiences = _load(settings)
    if audiences is None:
        return EXIT_INVALID
    print(
        f"{len(audiences.segments)} segment(s) in {len(audiences.files)} file(s) under "
        f"{settings.segments_dir}: valid"
    )
    for seg in audiences.segments:
        print(f"  {seg.segment_id:<36} {seg.purpose:<16} {seg.file}:{seg.line}")
    return EXIT_OK


def preview(settings: Settings, file: Path) -> int:
    file = file.resolve()
    if not file.is_file():
        print(f"no such audience file: {file}", file=sys.stderr)
        return EXIT_INVALID
    audiences = _load(settings, extra=file)
    if audiences is None:
        return EXIT_INVALID
    mine = [s for s in audiences.segments if s.path == file]
    if not mine:
        print(f"{file} declares no segment", file=sys.stderr)
        return EXIT_INVALID
    con = _snapshot(settings)
    compiled = compile_audiences(audiences)
    if con is not None:
        compiled, rel = _stage(con, audiences, settings)
        as_of = con.execute(f"select {rel.as_of}").fetchone()[0]
        rows = {
            r["segment_id"]: r
            for r in segment_rows(audiences, settings.min_segment_size, settings.holdout_share)
        }
        # groups are resolved among every segment, as the run does; the file's are printed
        sizes = preview_segments(
            con,
            compiled.matches_sql,
            rel,
            [rows[s.segment_id] for s in audiences.segments],
            profiles="snap.marts.customer_profiles",
            published_members="snap.marts.segment_members",
        )
        by_id = {size["segment_id"]: size for size in sizes}
        sizes = [by_id[s.segment_id] for s in mine]
        print(f"sizes on the serving snapshot as of {as_of}:")
        for seg, size in zip(mine, sizes, strict=True):
            print(
                f"  {seg.segment_id}: {size['meets_condition']} meet the condition, "
                f"{size['after_consent']} after consent ({seg.purpose}), {size['members']} "
                f"after exclusive groups, {size['holdout']} held out, {size['targetable']} "
                f"targetable"
                + ("" if size["publishable"] else f" (below min_size {size['min_size']})")
            )
            for overlap in size["overlaps"][:5]:
                print(f"      overlaps {overlap['segment_id']}: {overlap['overlap']}")
    print("\ncompiled SQL (all segments of the folder and the file; values are read from the")
    print("condition rows, raw.audience_conditions):")
    print(compiled.matches_sql)
    return EXIT_OK


def explain(settings: Settings, person_id: str) -> int:
    audiences = _load(settings)
    if audiences is None:
        return EXIT_INVALID
    con = _snapshot(settings)
    if con is None:
        return EXIT_CANNOT_RUN
    compiled, rel = _stage(con, audiences, settings)
    explained = explain_person(con, person_id, compiled.leaves_sql, rel)
    if not explained:
        print(f"no person {person_id} in the serving snapshot", file=sys.stderr)
        return EXIT_INVALID
    memberships = {
        seg: ("member (held out)" if holdout else f"member, rank {rank}")
        for seg, rank, holdout in con.execute(
            "select segment_id, rank, is_holdout from snap.marts.segment_members "
            "where person_id = ?",
            [person_id],
        ).fetchall()
    }
    summary = con.execute(
        "select segment_id, purpose, published, min_size from snap.marts.segment_summary"
    ).fetchall()
    consents = dict(
        con.execute(
            "unpivot (select columns('^consent_') from snap.marts.customer_profiles "
            "where person_id = ?) on columns('^consent_') into name purpose value granted",
            [person_id],
        ).fetchall()
    )
    for seg_id, purpose, published, min_size in summary:
        meets = next((s["meets_condition"] for s in explained if s["segment_id"] == seg_id), False)
        if seg_id in memberships or not meets:
            continue
        if not consents.get(f"consent_{purpose}"):
            memberships[seg_id] = f"meets the condition; out: no consent to {purpose}"
        elif not published:
            memberships[seg_id] = f"meets the condition; segment not published (< {min_size})"
        else:
            memberships[seg_id] = "meets the condition; out: a segment of its group comes first"
    print(format_explanation(explained, memberships))
    return EXIT_OK
