"""Activation exports: one folder per segment and run date, an audience file and a manifest.

Ad platforms match on plain SHA-256 of the normalised email or E.164 phone; this module is the
only place those unkeyed hashes are computed, and they are written only to export files.
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

# Analytics consent covers measurement only; every other purpose is an activation channel.
ACTIVATION_PURPOSES = ("personalization", "ad_targeting", "third_party_sharing")
CONSENT_COLUMNS = {p: f"consent_{p}" for p in ACTIVATION_PURPOSES}
AUDIENCE_FILE = "audience.csv"
MANIFEST_FILE = "manifest.json"
_SEGMENT_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

_AUDIENCE_SQL = """
select
    case when p.email is not null then sha256(p.email) end as hashed_email,
    case when p.phone is not null then sha256(p.phone) end as hashed_phone,
    m.rank,
    round(m.score, 6) as score
from marts.segment_members as m
join marts.customer_profiles as p on p.person_id = m.person_id
where m.segment_id = ?
  and not m.is_holdout
  and coalesce(p.{consent}, false)
  and (p.email is not null or p.phone is not null)
order by m.rank, hashed_email, hashed_phone
"""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _write_audience(
    con: duckdb.DuckDBPyConnection, segment_id: str, purpose: str, path: Path
) -> int:
    sql = _AUDIENCE_SQL.format(consent=CONSENT_COLUMNS[purpose])
    reader = con.sql(sql, params=[segment_id]).to_arrow_reader(100_000)
    rows = 0
    with pacsv.CSVWriter(str(path), reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def export_segments(con: duckdb.DuckDBPyConnection, export_dir: str | Path, as_of: date) -> dict:
    """Write every activation segment's audience for `as_of`, replacing that date's folder.

    Holdout members stay out (they measure lift); so does anyone without consent for the
    segment's purpose or without an email or phone to match on.
    """
    root = Path(export_dir)
    exported: dict[str, int] = {}
    for segment_id, name, purpose in _activation_segments(con):
        segment_dir = root / segment_id
        segment_dir.mkdir(parents=True, exist_ok=True)
        staging = segment_dir / f".{as_of.isoformat()}.{uuid.uuid4().hex}.tmp"
        staging.mkdir()
        try:
            rows = _write_audience(con, segment_id, purpose, staging / AUDIENCE_FILE)
            manifest = {
                "segment_id": segment_id,
                "name": name,
                "purpose": purpose,
                "as_of": as_of.isoformat(),
                "row_count": rows,
                "file": AUDIENCE_FILE,
                "sha256": _sha256_file(staging / AUDIENCE_FILE),
                "columns": ["hashed_email", "hashed_phone", "rank", "score"],
                "hashing": "sha256 of trimmed lower-case email; sha256 of E.164 phone",
                "excludes": ["holdout members", f"persons without {purpose} consent"],
            }
            (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
            final = segment_dir / as_of.isoformat()
            if final.exists():
                retired = segment_dir / f".{as_of.isoformat()}.{uuid.uuid4().hex}.old"
                final.rename(retired)
                staging.rename(final)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        exported[segment_id] = rows
    return {"export_dir": str(root), "as_of": as_of.isoformat(), "segments": exported}


def verify_exports(
    con: duckdb.DuckDBPyConnection, export_dir: str | Path, as_of: date
) -> list[dict]:
    """Problems with the `as_of` exports: checksum or count drift, or a row without consent."""
    problems: list[dict] = []
    for manifest_path in sorted(Path(export_dir).glob(f"*/{as_of.isoformat()}/{MANIFEST_FILE}")):
        manifest = json.loads(manifest_path.read_text())
        audience = manifest_path.parent / manifest["file"]
        segment_id, purpose = manifest["segment_id"], manifest["purpose"]
        if purpose not in CONSENT_COLUMNS:
            problems.append({"segment_id": segment_id, "problem": f"purpose {purpose!r}"})
            continue
        if _sha256_file(audience) != manifest["sha256"]:
            problems.append({"segment_id": segment_id, "problem": "checksum differs"})
        rows, without_consent = con.execute(
            f"""
            with audience as (
                select *, coalesce(hashed_email, hashed_phone) as match_key
                from read_csv(?, header = true, all_varchar = true)
            ),
            profile_keys as (
                select
                    coalesce(sha256(email), sha256(phone)) as match_key,
                    bool_or(coalesce({CONSENT_COLUMNS[purpose]}, false)) as consented
                from marts.customer_profiles
                where email is not null or phone is not null
                group by 1
            )
            select count(*), count(*) filter (where not coalesce(k.consented, false))
            from audience as a
            left join profile_keys as k on k.match_key = a.match_key
            """,
            [str(audience)],
        ).fetchall()[0]
        if rows != manifest["row_count"]:
            problems.append(
                {
                    "segment_id": segment_id,
                    "problem": f"{rows} rows, manifest says {manifest['row_count']}",
                }
            )
        if without_consent:
            problems.append(
                {
                    "segment_id": segment_id,
                    "problem": f"{without_consent} rows without {purpose} consent",
                }
            )
    return problems
