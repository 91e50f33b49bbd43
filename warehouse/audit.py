"""The audit log: an append-only record of runs, exports, erasures and access requests."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import duckdb

KINDS = ("run", "publish", "export", "erasure", "access_request", "retention")


def ensure_audit_log(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(
        """
        create table if not exists audit.events (
            event_id varchar primary key,
            recorded_at timestamp not null,
            kind varchar not null,
            subject varchar,
            rows bigint,
            run_id varchar,
            detail varchar
        )
        """
    )


def record(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    subject: str | None = None,
    rows: int | None = None,
    detail: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> str:
    """Append one event; the log is never updated or deleted from."""
    if kind not in KINDS:
        raise ValueError(f"audit kind {kind!r} not in {KINDS}")
    ensure_audit_log(con)
    event_id = uuid.uuid4().hex
    con.execute(
        "insert into audit.events values (?, ?, ?, ?, ?, ?, ?)",
        [
            event_id,
            datetime.now(UTC).replace(tzinfo=None),
            kind,
            subject,
            rows,
            run_id,
            json.dumps(detail, default=str, sort_keys=True) if detail else None,
        ],
    )
    return event_id
