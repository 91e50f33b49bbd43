"""Activation exports: per segment, run date and platform, a full file, its deltas and a manifest.

Layout: `<export_dir>/<segment_id>/<as_of>/<platform>/` with `full.<ext>`, `adds.<ext>`,
`removes.<ext>` and `manifest.json` (docs/activation.md). Platform formats and their
normalisations live in warehouse/platforms.py; this module decides who is in a file and keeps
the deltas. Deltas compare each new full file with the previous export of the same segment and
platform (the newest folder on disk, the day being replaced included): a row is identified by all
of its hashed identifiers (person_id for our own channels), so a revoked consent, an erasure or a
person leaving the segment shows up as a remove of the very row the platform holds. Once a new
export is in place the segment's earlier run-date folders are deleted: a superseded file would
keep hashes of persons who have since left.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from warehouse.platforms import (
    PLATFORMS,
    PLATFORMS_BY_PURPOSE,
    Platform,
    csv_columns_sql,
    quoted,
    register_platform_macros,
    select_sql,
)

# Analytics consent covers measurement only; every other purpose is an activation channel.
ACTIVATION_PURPOSES = tuple(PLATFORMS_BY_PURPOSE)
CONSENT_COLUMNS = {p: f"consent_{p}" for p in ACTIVATION_PURPOSES}
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 2
DEFAULT_MIN_AUDIENCE = 100
EXPORTED, BELOW_MINIMUM, RETIRED = "exported", "below_minimum", "retired"
_SEGMENT_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BATCH = 100_000

# Consented, non-holdout current members of one segment (bound: segment_id).
_MEMBERS_SQL = """
    select m.person_id, m.rank, m.score
    from marts.segment_members as m
    join marts.customer_profiles as p on p.person_id = m.person_id
    where m.segment_id = ? and not m.is_holdout and coalesce(p.{consent}, false)
"""


def _rows_sql(platform: Platform, consent: str) -> str:
    """Distinct matchable rows of the platform's file for one segment (bound: segment_id)."""
    return f"""
        with members as ({_MEMBERS_SQL.format(consent=consent)}),
        shaped as (
            select {select_sql(platform)}
            from members as m
            join marts.customer_profiles as p on p.person_id = m.person_id
        )
        select distinct * from shaped where {platform.matchable}
    """


def _stats_sql(platform: Platform, consent: str) -> str:
    """Eligible members, rows without a matchable identifier and, per column, values present
    in the profile that do not normalise (bound: segment_id)."""
    flags = [
        f"(nullif(trim(cast(p.{c.source} as varchar)), '') is not null and ({c.sql}) is null)"
        f" as invalid_{i}"
        for i, c in enumerate(platform.columns)
        if c.source
    ]
    sums = "".join(
        f", count(*) filter (where invalid_{i})" for i, c in enumerate(platform.columns) if c.source
    )
    return f"""
        with members as ({_MEMBERS_SQL.format(consent=consent)}),
        shaped as (
            select {select_sql(platform)}{"".join(", " + f for f in flags)}
            from members as m
            join marts.customer_profiles as p on p.person_id = m.person_id
        )
        select count(*), count(*) filter (where not ({platform.matchable})){sums}
        from shaped
    """


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_sql(platform: Platform) -> str:
    """A table function over one of the platform's files (bound: path)."""
    if platform.file_format == "parquet":
        return "read_parquet(?)"
    return f"read_csv(?, header = true, columns = {csv_columns_sql(platform)})"


def _write(reader, path: Path, file_format: str) -> int:
    rows = 0
    if file_format == "parquet":
        with pq.ParquetWriter(str(path), reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    with pacsv.CSVWriter(str(path), reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def _write_query(con, sql: str, params: list, path: Path, file_format: str) -> dict:
    rows = _write(con.sql(sql, params=params).to_arrow_reader(_BATCH), path, file_format)
    return {"name": path.name, "rows": rows, "sha256": _sha256_file(path)}


def _activation_segments(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    rows = con.execute(
        "select segment_id, name, purpose from marts.segment_definitions "
        "where purpose in (select unnest(?)) order by segment_id",
        [list(ACTIVATION_PURPOSES)],
    ).fetchall()
    for segment_id, _, _ in rows:
        if not _SEGMENT_ID.match(segment_id):
            raise ValueError(f"segment_id {segment_id!r} cannot name an export folder")
    return rows


def _latest_folder(segment_dir: Path, as_of: date) -> Path | None:
    """The segment's newest run-date folder on or before `as_of`."""
    if not segment_dir.is_dir():
        return None
    dates = sorted(
        p.name
        for p in segment_dir.iterdir()
        if p.is_dir() and _DATE.match(p.name) and p.name <= as_of.isoformat()
    )
    return segment_dir / dates[-1] if dates else None


def _previous(folder: Path | None) -> dict[str, dict]:
    """platform -> manifest of the previous export (only manifests of this format)."""
    out: dict[str, dict] = {}
    if folder is None:
        return out
    for path in folder.glob(f"*/{MANIFEST_FILE}"):
        manifest = json.loads(path.read_text())
        if manifest.get("format_version") == FORMAT_VERSION and manifest["platform"] in PLATFORMS:
            manifest["_folder"] = path.parent
            out[manifest["platform"]] = manifest
    return out


def _baseline(previous: dict | None) -> Path | None:
    """The full file the platform holds now, or None when it holds nothing of ours."""
    if not previous or previous["status"] != EXPORTED:
        return None
    return previous["_folder"] / previous["files"]["full"]["name"]


def _write_deltas(
    con, platform: Platform, out: Path, full: Path | None, baseline: Path | None
) -> dict:
    """adds: rows of the new full file whose key the baseline lacks; removes: keys of the
    baseline the new file lacks. Null equals null here (a row without a phone is one row)."""
    read = _read_sql(platform)
    key, cols = quoted(platform.key), quoted(platform.headers)
    same_key = " and ".join(f"n.{k} is not distinct from o.{k}" for k in map(_quote1, platform.key))
    if full and baseline:
        adds = (
            f"select {cols} from {read} as n where not exists "
            f"(select 1 from {read} as o where {same_key})",
            [str(full), str(baseline)],
        )
        removes = (
            f"select {key} from {read} except select {key} from {read}",
            [str(baseline), str(full)],
        )
    elif full:
        adds = (f"select {cols} from {read}", [str(full)])
        removes = (f"select {key} from {read} limit 0", [str(full)])
    else:
        adds = (f"select {cols} from {read} limit 0", [str(baseline)])
        removes = (f"select distinct {key} from {read}", [str(baseline)])
    return {
        kind: _write_query(con, sql, params, out / platform.delta_file(kind), platform.file_format)
        for kind, (sql, params) in (("adds", adds), ("removes", removes))
    }


def _quote1(identifier: str) -> str:
    return quoted([identifier])


def _export_platform(
    con,
    platform: Platform,
    segment: dict,
    out: Path,
    previous: dict | None,
    min_audience: int,
) -> dict:
    baseline = _baseline(previous)
    manifest: dict = {
        "format_version": FORMAT_VERSION,
        "segment_id": segment["segment_id"],
        "name": segment["name"],
        "purpose": segment["purpose"],
        "platform": platform.name,
        "as_of": segment["as_of"],
        "columns": platform.headers,
        "key": list(platform.key),
        "format": platform.description,
        "excludes": ["holdout members", f"persons without {segment['purpose']} consent"],
        "min_audience": min_audience,
        "baseline": (
            {"as_of": previous["as_of"], "sha256": previous["files"]["full"]["sha256"]}
            if baseline
            else None
        ),
    }
    out.mkdir()
    full: Path | None = None
    files: dict = {}
    if segment["purpose"] is None or platform.name not in PLATFORMS_BY_PURPOSE.get(
        segment["purpose"], ()
    ):
        manifest.update(status=RETIRED, row_count=0, reason="segment no longer exported")
    else:
        consent = CONSENT_COLUMNS[segment["purpose"]]
        full = out / platform.full_file
        files["full"] = _write_query(
            con, _rows_sql(platform, consent) + f" order by {quoted(platform.key)}",
            [segment["segment_id"]], full, platform.file_format,
        )  # fmt: skip
        members, unmatchable, *invalid = con.execute(
            _stats_sql(platform, consent), [segment["segment_id"]]
        ).fetchall()[0]
        manifest["eligible_members"] = members
        manifest["dropped"] = {
            "no_identifier": unmatchable,
            "invalid_values": dict(
                zip([c.header for c in platform.columns if c.source], invalid, strict=False)
            ),
        }
        rows = files["full"]["rows"]
        manifest["audience_rows"] = rows
        if rows < min_audience:
            full.unlink()
            full = None
            del files["full"]
            manifest.update(
                status=BELOW_MINIMUM,
                row_count=0,
                reason=f"{rows} rows, below the {platform.name} minimum of {min_audience}",
            )
        else:
            manifest.update(status=EXPORTED, row_count=rows)
    if full is not None or baseline is not None:
        files.update(_write_deltas(con, platform, out, full, baseline))
    manifest["files"] = files
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def _replace_folder(segment_dir: Path, as_of: date, staging: Path) -> None:
    final = segment_dir / as_of.isoformat()
    if final.exists():
        retired = segment_dir / f".{as_of.isoformat()}.{uuid.uuid4().hex}.old"
        final.rename(retired)
        staging.rename(final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(final)
    for folder in segment_dir.iterdir():
        if folder.is_dir() and _DATE.match(folder.name) and folder.name < as_of.isoformat():
            shutil.rmtree(folder)


def export_segments(
    con: duckdb.DuckDBPyConnection,
    export_dir: str | Path,
    as_of: date,
    min_audience: dict[str, int] | None = None,
) -> dict:
    """Write every activation segment's platform files for `as_of`, replacing that date's folder.

    A segment no longer exported (gone from the audience files, or its purpose changed) gets a
    final folder whose removes delta withdraws everything the platform holds; so does a
    segment that fell below a platform's minimum audience. Returns per segment and platform the
    status and row count.
    """
    register_platform_macros(con)
    minimums = min_audience or {}
    root = Path(export_dir)
    segments = {
        sid: {"segment_id": sid, "name": name, "purpose": purpose}
        for sid, name, purpose in _activation_segments(con)
    }
    if root.is_dir():  # segments exported before that are no longer activation segments
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and _SEGMENT_ID.match(folder.name) and folder.name not in segments:
                segments[folder.name] = {"segment_id": folder.name, "name": None, "purpose": None}
    report: dict[str, dict[str, dict]] = {}
    for segment_id, segment in sorted(segments.items()):
        segment["as_of"] = as_of.isoformat()
        segment_dir = root / segment_id
        previous = _previous(_latest_folder(segment_dir, as_of))
        wanted = set(PLATFORMS_BY_PURPOSE.get(segment["purpose"], ()))
        held = {name for name, m in previous.items() if m["status"] == EXPORTED}
        if not wanted | held:
            continue
        if segment["name"] is None:
            segment["name"] = next(iter(previous.values()))["name"]
        segment_dir.mkdir(parents=True, exist_ok=True)
        staging = segment_dir / f".{as_of.isoformat()}.{uuid.uuid4().hex}.tmp"
        staging.mkdir()
        try:
            manifests = {
                name: _export_platform(
                    con,
                    PLATFORMS[name],
                    segment,
                    staging / name,
                    previous.get(name),
                    minimums.get(name, DEFAULT_MIN_AUDIENCE),
                )  # fmt: skip
                for name in sorted(wanted | held)
            }
            _replace_folder(segment_dir, as_of, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        report[segment_id] = {
            name: {
                "status": m["status"],
                "rows": m["row_count"],
                "adds": m["files"].get("adds", {}).get("rows", 0),
                "removes": m["files"].get("removes", {}).get("rows", 0),
            }
            for name, m in manifests.items()
        }
    return {"export_dir": str(root), "as_of": as_of.isoformat(), "segments": report}


def export_manifests(export_dir: str | Path, as_of: date) -> list[dict]:
    """The manifests of the `as_of` exports, each with its folder (key `_folder`)."""
    out = []
    for path in sorted(Path(export_dir).glob(f"*/{as_of.isoformat()}/*/{MANIFEST_FILE}")):
        manifest = json.loads(path.read_text())
        manifest["_folder"] = path.parent
        out.append(manifest)
    return out


def below_minimum(export_dir: str | Path, as_of: date) -> list[dict]:
    """Segments and platforms not exported on `as_of` because the audience was too small."""
    return [
        {
            "segment_id": m["segment_id"],
            "platform": m["platform"],
            "rows": m.get("audience_rows", 0),
            "min_audience": m["min_audience"],
        }
        for m in export_manifests(export_dir, as_of)
        if m.get("status") == BELOW_MINIMUM
    ]


def verify_exports(
    con: duckdb.DuckDBPyConnection, export_dir: str | Path, as_of: date
) -> list[dict]:
    """Problems with the `as_of` exports: a file that differs from its manifest (checksum, row
    count), a full-file row that no consented non-holdout member of the segment produces, a
    hashed column holding anything but a SHA-256 digest, or deltas that contradict the file.
    `con` is configured as every warehouse connection is (`configure_connection`)."""
    register_platform_macros(con)
    problems: list[dict] = []

    def problem(manifest: dict, text: str) -> None:
        problems.append(
            {"segment_id": manifest["segment_id"], "platform": manifest.get("platform"),
             "problem": text}
        )  # fmt: skip

    for manifest in export_manifests(export_dir, as_of):
        platform = PLATFORMS.get(manifest.get("platform"))
        if platform is None or manifest.get("format_version") != FORMAT_VERSION:
            problem(manifest, f"unknown format {manifest.get('platform')!r}")
            continue
        folder: Path = manifest["_folder"]
        read = _read_sql(platform)
        paths = {}
        for kind, entry in manifest["files"].items():
            path = folder / entry["name"]
            if not path.exists():
                problem(manifest, f"{kind} file missing")
                continue
            paths[kind] = path
            if _sha256_file(path) != entry["sha256"]:
                problem(manifest, f"{kind} checksum differs")
            rows = con.execute(f"select count(*) from {read}", [str(path)]).fetchall()[0][0]
            if rows != entry["rows"]:
                problem(manifest, f"{kind}: {rows} rows, manifest says {entry['rows']}")
            present = platform.key if kind == "removes" else platform.headers
            unhashed = " or ".join(
                f"not regexp_full_match({_quote1(c.header)}, '[0-9a-f]{{64}}')"
                for c in platform.columns
                if c.hashed and c.header in present
            )
            if unhashed:
                n = con.execute(
                    f"select count(*) from {read} where {unhashed}", [str(path)]
                ).fetchall()[0][0]
                if n:
                    problem(manifest, f"{kind}: {n} rows with an unhashed identifier")
        if manifest["status"] == EXPORTED:
            if manifest["row_count"] != manifest["files"]["full"]["rows"]:
                problem(manifest, "row_count differs from the full file's")
            if "full" not in paths:
                continue
            purpose = manifest["purpose"]
            if purpose not in CONSENT_COLUMNS:
                problem(manifest, f"purpose {purpose!r}")
                continue
            cols = quoted(platform.headers)
            stray = con.execute(
                f"select count(*) from (select {cols} from {read} except "
                f"select {cols} from ({_rows_sql(platform, CONSENT_COLUMNS[purpose])}))",
                [str(paths["full"]), manifest["segment_id"]],
            ).fetchall()[0][0]
            if stray:
                problem(
                    manifest,
                    f"{stray} rows not from a non-holdout member with {purpose} consent",
                )
            key = quoted(platform.key)
            for kind, sql in (
                ("adds", f"select {cols} from {read} except select {cols} from {read}"),
                ("removes", f"select {key} from {read} intersect select {key} from {read}"),
            ):
                if kind in paths:
                    n = con.execute(
                        f"select count(*) from ({sql})",
                        [str(paths[kind]), str(paths["full"])],
                    ).fetchall()[0][0]
                    if n:
                        verb = "not in" if kind == "adds" else "still in"
                        problem(manifest, f"{n} {kind} rows {verb} the full file")
        elif "full" in manifest["files"]:
            problem(manifest, f"a full file although {manifest['status']}")
    return problems
