"""Personalisation feeds: marts.personalization_feed written per channel and run date, a CSV for
DCO tools and JSON Lines for e-mail, each with a manifest.

The feed table (dbt, `personalization_feed`) already holds only persons with personalization
consent who are targeted members of a published segment declaring `personalization`; this module
writes each channel's rows and proves it again from the files (`verify_feeds`).
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.csv as pacsv

from warehouse.audiences import FEED_CHANNELS, feed_variables
from warehouse.ingest import file_sha256

FEED_FORMAT_VERSION = "1"
FEED_TABLE = "marts.personalization_feed"
FORMATS = {"dco": "csv", "email": "jsonl"}
MANIFEST_FILE = "manifest.json"
_BATCH = 100_000


def _columns() -> list[str]:
    return ["person_id", "segment_id", "offer", "message_template", *feed_variables()]


def _query(channel: str) -> str:
    select = ", ".join(f'"{c}"' for c in _columns())
    if FORMATS[channel] == "jsonl":
        select = f"to_json(struct_pack({select})) as line"
    return (
        f"select {select} from {FEED_TABLE} "
        "where list_contains(feed_channels, ?) order by person_id"
    )


def _write(con: duckdb.DuckDBPyConnection, channel: str, path: Path) -> int:
    # a cursor of its own: the streamed result never blocks the connection's next statement
    with con.cursor() as cursor:
        return _write_from(
            cursor.sql(_query(channel), params=[channel]).to_arrow_reader(_BATCH), channel, path
        )


def _write_from(reader, channel: str, path: Path) -> int:
    rows = 0
    if FORMATS[channel] == "csv":
        with pacsv.CSVWriter(str(path), reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    with open(path, "w", encoding="utf-8") as handle:
        for batch in reader:
            if batch.num_rows:
                handle.write("\n".join(batch.column("line").to_pylist()) + "\n")
                rows += batch.num_rows
    return rows


def write_feeds(con: duckdb.DuckDBPyConnection, export_dir: str | Path, as_of: date) -> dict:
    """Write `<export_dir>/feeds/<channel>/<as_of>/feed.<csv|jsonl>` and its manifest for every
    channel (an empty feed still gets its file: the channel then shows nobody). A folder is
    written beside and swapped in whole, so a reader never sees half a feed; the feeds of other
    dates are then removed. Returns rows per channel and segment."""
    report: dict = {}
    for channel in FEED_CHANNELS:
        folder = Path(export_dir) / "feeds" / channel / as_of.isoformat()
        staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}")
        staging.mkdir(parents=True)
        try:
            name = f"feed.{FORMATS[channel]}"
            rows = _write(con, channel, staging / name)
            segments = dict(
                con.execute(
                    f"select segment_id, count(*) from {FEED_TABLE} "
                    "where list_contains(feed_channels, ?) group by 1 order by 1",
                    [channel],
                ).fetchall()
            )
            manifest = {
                "channel": channel,
                "purpose": "personalization",
                "as_of": as_of.isoformat(),
                "format": FORMATS[channel],
                "format_version": FEED_FORMAT_VERSION,
                "file": name,
                "rows": rows,
                "sha256": file_sha256(staging / name),
                "columns": _columns(),
                "rows_per_segment": segments,
            }
            (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
            if folder.exists():
                shutil.rmtree(folder)
            staging.rename(folder)
            # a feed is the current state: earlier runs' feeds go, and with them anyone erased,
            # revoked or no longer targeted since
            for older in folder.parent.iterdir():
                if older != folder and not older.name.startswith("."):
                    shutil.rmtree(older)
        except Exception:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        report[channel] = {"rows": rows, "segments": segments}
    return report


def verify_feeds(con: duckdb.DuckDBPyConnection, export_dir: str | Path, as_of: date) -> list:
    """Problems with the written feeds: a file that does not match its manifest, or a person in
    a file without personalization consent, or held out of the segment named."""
    problems = []
    for channel in FEED_CHANNELS:
        folder = Path(export_dir) / "feeds" / channel / as_of.isoformat()
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.exists():
            problems.append({"channel": channel, "problem": f"no feed for {as_of}"})
            continue
        manifest = json.loads(manifest_path.read_text())
        path = folder / manifest["file"]
        if not path.exists() or file_sha256(path) != manifest["sha256"]:
            problems.append({"channel": channel, "problem": f"{path.name} differs from manifest"})
            continue
        if FORMATS[channel] == "csv":
            relation = "read_csv(?, header = true, all_varchar = true)"
        else:
            relation = "read_json(?, format = 'newline_delimited', columns = " + (
                "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in _columns()) + "})"
            )
        if manifest["rows"] == 0:
            continue
        rows, unconsented, held_out = con.execute(
            f"""
            with feed as (select person_id, segment_id from {relation})
            select
                count(*),
                count(*) filter (where not coalesce(p.consent_personalization, false)),
                count(*) filter (where m.person_id is null)
            from feed
            left join marts.customer_profiles as p using (person_id)
            left join marts.segment_members as m
                on m.person_id = feed.person_id and m.segment_id = feed.segment_id
                and not m.is_holdout
            """,
            [str(path)],
        ).fetchall()[0]
        if rows != manifest["rows"]:
            problems.append(
                {"channel": channel, "problem": f"{rows} rows, manifest says {manifest['rows']}"}
            )
        if unconsented:
            problems.append({"channel": channel, "problem": f"{unconsented} rows without consent"})
        if held_out:
            problems.append(
                {"channel": channel, "problem": f"{held_out} rows not targeted members"}
            )
    return problems
