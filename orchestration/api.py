"""The membership API: a read-only HTTP service over the serving snapshot (Starlette on uvicorn).

It answers from memory. The snapshot's persons and targetable memberships are loaded into numpy
arrays (person ids sorted for binary search; each segment's members in rank order) and replaced
whole, in one reference swap, when the publish step replaces the snapshot file. Holdout members
are never served: a channel must not treat a held-out person as in the segment.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import logging
import math
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger("microseg.api")

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000
RELOAD_POLL_S = 1.0
MAX_ID_LENGTH = 256

# The only columns the API reads; everything it serves is built from these.
_SEGMENTS_SQL = """
select
    summary.segment_id,
    summary.name,
    summary.kind,
    definitions.description,
    definitions.definition,
    summary.purpose,
    summary.version,
    cast(summary.as_of as varchar) as as_of,
    summary.members,
    summary.holdout_members
from snap.marts.segment_summary as summary
left join snap.marts.segment_definitions as definitions
    on summary.segment_id = definitions.segment_id
where summary.published
order by summary.segment_id
"""

# Every person of the snapshot, numbered in person id order (the order of the in-memory index).
_PERSONS_SQL = """
create table persons as
select person_id, cast(row_number() over (order by person_id) - 1 as integer) as person
from (
    select person_id from snap.marts.customer_profiles
    union
    select person_id from snap.marts.segment_members
) as ids
where person_id is not null
"""

# Targetable members only: a holdout member (or one whose flag is unknown) is not in the segment
# for any channel.
_MEMBERS_SQL = """
create table served as
select
    persons.person,
    cast(list_position(?, members.segment_id) - 1 as smallint) as segment,
    cast(members.rank as integer) as rank,
    cast(members.score as double) as score
from snap.marts.segment_members as members
inner join persons on members.person_id = persons.person_id
where members.is_holdout = false and list_contains(?, members.segment_id)
"""


class ApiSettingsError(ValueError):
    """The API cannot start with these settings."""


@dataclass(frozen=True)
class Segment:
    segment_id: str
    name: str | None
    kind: str | None
    description: str | None
    definition: Any
    purpose: str | None
    version: str | None
    as_of: str | None
    members: int
    holdout_members: int
    # targetable members in (rank, person_id) order
    ranks: np.ndarray
    persons: np.ndarray  # index into Snapshot.person_ids
    scores: np.ndarray

    def describe(self, published_at: str) -> dict:
        return {
            "segment_id": self.segment_id,
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "purpose": self.purpose,
            "definition": self.definition,
            "version": self.version,
            "members": self.members,
            "holdout_members": self.holdout_members,
            "targetable_members": len(self.ranks),
            "as_of": self.as_of,
            "updated": published_at,
        }


@dataclass(frozen=True)
class Snapshot:
    identity: tuple[int, int, int, int]
    published_at: str
    as_of: str | None
    person_ids: np.ndarray  # sorted bytes: every person of customer_profiles or segment_members
    offsets: np.ndarray  # person i's memberships: member_*[offsets[i]:offsets[i + 1]]
    member_segment: np.ndarray
    member_rank: np.ndarray
    member_score: np.ndarray
    segments: tuple[Segment, ...]
    by_id: dict[str, Segment]

    def person_index(self, person_id: str) -> int | None:
        key = person_id.encode()
        # fixed-width bytes drop trailing NULs: such a key could match a shorter id
        if b"\x00" in key or len(key) > self.person_ids.dtype.itemsize:
            return None
        i = int(np.searchsorted(self.person_ids, key))
        if i < len(self.person_ids) and self.person_ids[i] == key:
            return i
        return None

    def person_segments(self, index: int, purpose: str | None) -> list[dict]:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        out = []
        for seg, rank, score in zip(
            self.member_segment[start:end].tolist(),
            self.member_rank[start:end].tolist(),
            self.member_score[start:end].tolist(),
            strict=True,
        ):
            segment = self.segments[seg]
            if purpose is not None and segment.purpose != purpose:
                continue
            out.append(
                {
                    "segment_id": segment.segment_id,
                    "name": segment.name,
                    "purpose": segment.purpose,
                    "rank": rank,
                    "score": _number(score),
                }
            )
        return out

    def page(
        self, segment: Segment, after: tuple[int, str] | None, limit: int
    ) -> tuple[list[dict], tuple[int, str] | None]:
        start = 0
        if after is not None:
            rank, person_id = after
            lo = int(np.searchsorted(segment.ranks, rank, "left"))
            start = int(np.searchsorted(segment.ranks, rank, "right"))
            if start > lo:  # equal ranks: ordered by person id
                tied = self.person_ids[segment.persons[lo:start]]
                start = lo + int(np.searchsorted(tied, person_id.encode(), "right"))
        end = min(start + limit, len(segment.ranks))
        ids = [p.decode() for p in self.person_ids[segment.persons[start:end]].tolist()]
        ranks = segment.ranks[start:end].tolist()
        scores = segment.scores[start:end].tolist()
        rows = [
            {"person_id": p, "rank": r, "score": _number(s)}
            for p, r, s in zip(ids, ranks, scores, strict=True)
        ]
        following = (ranks[-1], ids[-1]) if rows and end < len(segment.ranks) else None
        return rows, following


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def _file_identity(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _fixed_width(column: pa.ChunkedArray) -> np.ndarray:
    """Strings as numpy fixed-width bytes, from Arrow's buffers (no Python object per row)."""
    values = pc.cast(column, pa.binary()).combine_chunks()
    n = len(values)
    if n == 0:
        return np.array([], dtype="S1")
    _, offset_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int32)[values.offset : values.offset + n + 1]
    lengths = np.diff(offsets)
    width = max(int(lengths.max()), 1)
    total = int(offsets[-1] - offsets[0])
    out = np.zeros((n, width), dtype=np.uint8)
    if total:
        data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
        rows = np.repeat(np.arange(n), lengths)
        cols = np.arange(total) - np.repeat(offsets[:-1] - offsets[0], lengths)
        out[rows, cols] = data
    return out.view(f"S{width}").ravel()


def _column(table: pa.Table, name: str, dtype) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(), dtype=dtype)


def load_snapshot(path: str | Path) -> Snapshot:
    """Read the served columns of the snapshot at `path` (read-only) into memory."""
    path = Path(path)
    identity = _file_identity(path)
    con = duckdb.connect()
    try:
        con.execute("attach ? as snap (read_only)", [str(path)])
        segment_rows = con.execute(_SEGMENTS_SQL).fetchall()
        ids = [row[0] for row in segment_rows]
        con.execute(_PERSONS_SQL)
        # a bound empty list has no element type: no segment, no member to read
        con.execute(_MEMBERS_SQL + (" and false" if not ids else ""), [ids or [""]] * 2)
        persons = con.sql("select person_id from persons order by person").to_arrow_table()
        by_person = con.sql(
            "select person, segment, rank, score from served order by person, segment"
        ).to_arrow_table()
        by_segment = con.sql(
            "select segment, rank, person, score from served order by segment, rank, person"
        ).to_arrow_table()
        con.execute("detach snap")
    finally:
        con.close()

    person_ids = _fixed_width(persons.column("person_id"))
    # binary search needs numpy's byte order; DuckDB's string order is the same for ids without NUL
    if len(person_ids) > 1 and not bool(np.all(person_ids[1:] > person_ids[:-1])):
        raise ValueError(f"{path}: person ids are not unique under byte order")

    counts = np.bincount(_column(by_person, "person", np.int64), minlength=len(person_ids))
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)

    paged_segment = _column(by_segment, "segment", np.int16)
    paged_rank = _column(by_segment, "rank", np.int64)
    paged_person = _column(by_segment, "person", np.int32)
    paged_score = _column(by_segment, "score", np.float64)
    bounds = np.searchsorted(paged_segment, np.arange(len(ids) + 1))

    segments = []
    for i, row in enumerate(segment_rows):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        definition = row[4]
        with contextlib.suppress(TypeError, ValueError):
            definition = json.loads(definition)
        segments.append(
            Segment(
                segment_id=row[0],
                name=row[1],
                kind=row[2],
                description=row[3],
                definition=definition,
                purpose=row[5],
                version=row[6],
                as_of=row[7],
                members=int(row[8] or 0),
                holdout_members=int(row[9] or 0),
                ranks=paged_rank[lo:hi],
                persons=paged_person[lo:hi],
                scores=paged_score[lo:hi],
            )
        )
    as_of = max((s.as_of for s in segments if s.as_of), default=None)
    published_at = datetime.fromtimestamp(identity[2] / 1e9, UTC).isoformat(timespec="seconds")
    return Snapshot(
        identity=identity,
        published_at=published_at,
        as_of=as_of,
        person_ids=person_ids,
        offsets=offsets,
        member_segment=_column(by_person, "segment", np.int16),
        member_rank=_column(by_person, "rank", np.int64),
        member_score=_column(by_person, "score", np.float64),
        segments=tuple(segments),
        by_id={s.segment_id: s for s in segments},
    )


class SnapshotStore:
    """The snapshot in memory, reloaded when the file at `path` is replaced."""

    def __init__(self, path: str | Path, poll_s: float = RELOAD_POLL_S):
        self.path = Path(path)
        self.poll_s = poll_s
        self.current: Snapshot | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load the file if it is not the one in memory; True when a new snapshot was swapped in."""
        try:
            identity = _file_identity(self.path)
        except FileNotFoundError:
            return False
        current = self.current
        if current is not None and current.identity == identity:
            return False
        try:
            snapshot = load_snapshot(self.path)
        except (duckdb.Error, OSError, KeyError, ValueError) as exc:
            # keep serving the previous snapshot; the next poll tries again
            log.error("could not load the serving snapshot %s: %s", self.path, exc)
            return False
        self.current = snapshot  # one reference swap: requests see the old or the new, whole
        log.info(
            "serving snapshot as of %s: %d persons, %d segments",
            snapshot.as_of,
            len(snapshot.person_ids),
            len(snapshot.segments),
        )
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def start(self) -> None:
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="snapshot-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class BearerAuth:
    """ASGI middleware: every path but /health needs `Authorization: Bearer <token>`."""

    def __init__(self, app, token: str, open_paths: frozenset[str] = frozenset({"/health"})):
        self.app = app
        self._token = token.encode()
        self._open = open_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in self._open:
            supplied = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    supplied = value
                    break
            scheme, _, credential = supplied.partition(b" ")
            # compare_digest in any case: the time taken says nothing about the token
            valid = hmac.compare_digest(credential.strip(), self._token)
            if not (valid and scheme.lower() == b"bearer"):
                response = _error(401, "a valid bearer token is required")
                response.headers["WWW-Authenticate"] = 'Bearer realm="microseg"'
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def encode_cursor(segment_id: str, rank: int, person_id: str) -> str:
    raw = json.dumps([segment_id, rank, person_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, segment_id: str) -> tuple[int, str]:
    """(rank, person_id) after which the next page starts; ValueError for a bad cursor."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        seg, rank, person_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("the cursor is not one this API returned") from exc
    if not (isinstance(rank, int) and not isinstance(rank, bool) and isinstance(person_id, str)):
        raise ValueError("the cursor is not one this API returned")
    if seg != segment_id:
        raise ValueError("the cursor belongs to another segment")
    return rank, person_id


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def create_app(
    serving: str | Path, token: str, poll_s: float = RELOAD_POLL_S
) -> tuple[Starlette, SnapshotStore]:
    """The API over the snapshot at `serving`; the store reloads it while the app runs."""
    if not token:
        raise ApiSettingsError(
            "MICROSEG_API_TOKEN is empty: set it to the bearer token clients must send "
            "(the membership API does not run without one)"
        )
    store = SnapshotStore(serving, poll_s)

    def snapshot() -> Snapshot | None:
        return store.current

    def unavailable() -> JSONResponse:
        return _error(503, "no serving snapshot has been published yet")

    async def health(request: Request) -> JSONResponse:
        snap = snapshot()
        return JSONResponse(
            {"status": "ok" if snap else "no_snapshot", "as_of": snap.as_of if snap else None},
            status_code=200 if snap else 503,
        )

    async def person_segments(request: Request) -> JSONResponse:
        snap = snapshot()
        if snap is None:
            return unavailable()
        person_id = request.path_params["person_id"]
        index = snap.person_index(person_id) if len(person_id) <= MAX_ID_LENGTH else None
        if index is None:
            return _error(404, "no such person in the serving snapshot")
        purpose = request.query_params.get("purpose")
        return JSONResponse(
            {
                "person_id": person_id,
                "as_of": snap.as_of,
                "segments": snap.person_segments(index, purpose),
            }
        )

    async def segment(request: Request) -> JSONResponse:
        snap = snapshot()
        if snap is None:
            return unavailable()
        found = snap.by_id.get(request.path_params["segment_id"])
        if found is None:
            return _error(404, "no such published segment")
        return JSONResponse(found.describe(snap.published_at))

    async def segment_members(request: Request) -> JSONResponse:
        snap = snapshot()
        if snap is None:
            return unavailable()
        found = snap.by_id.get(request.path_params["segment_id"])
        if found is None:
            return _error(404, "no such published segment")
        try:
            limit = _page_size(request.query_params.get("limit"))
            cursor = request.query_params.get("cursor")
            after = decode_cursor(cursor, found.segment_id) if cursor else None
        except ValueError as exc:
            return _error(400, str(exc))
        rows, following = snap.page(found, after, limit)
        return JSONResponse(
            {
                "segment_id": found.segment_id,
                "as_of": found.as_of,
                "members": rows,
                "next_cursor": encode_cursor(found.segment_id, *following) if following else None,
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store.start()
        if store.current is None:
            log.warning("no serving snapshot at %s yet: answering 503 until one appears", serving)
        try:
            yield
        finally:
            store.stop()

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/persons/{person_id}/segments", person_segments),
            Route("/segments/{segment_id}", segment),
            Route("/segments/{segment_id}/members", segment_members),
        ],
        middleware=[Middleware(BearerAuth, token=token)],
        lifespan=lifespan,
    )
    return app, store


def serve(settings) -> None:
    """Run the API on the settings' host and port until interrupted (`microseg serve`)."""
    import uvicorn

    app, _ = create_app(settings.serving, settings.api_token)
    # no access log: it would cost more than the answers and write person ids to the console
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        access_log=False,
        server_header=False,
        log_level="info",
    )
