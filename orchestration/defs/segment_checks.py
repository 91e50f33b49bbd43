"""What the segment tables say after dbt builds them: sizes per segment (a plot each in the UI),
and warnings for a segment that moved more than the tolerance or is too small to publish."""

import dagster as dg
import duckdb

from orchestration.defs.layers import layer_key
from orchestration.defs.resources import WarehouseResource

SUMMARY_TABLE = "marts.segment_summary"
SUMMARY_KEY = layer_key("segments", "segment_summary")


def segment_summary_metadata(con: duckdb.DuckDBPyConnection) -> dict:
    """A table of the segments' sizes and one number per segment, plotted across runs."""
    rows = con.execute(
        "select segment_id, purpose, eligible, members, holdout_members, excluded_no_consent, "
        "published from marts.segment_summary order by segment_id"
    ).fetchall()
    columns = [
        ("segment", "string"),
        ("purpose", "string"),
        ("eligible", "int"),
        ("members", "int"),
        ("holdout", "int"),
        ("left_out_without_consent", "int"),
        ("published", "bool"),
    ]
    return {
        "segment_sizes": dg.MetadataValue.table(
            records=[
                dg.TableRecord(dict(zip([c for c, _ in columns], row, strict=True))) for row in rows
            ],
            schema=dg.TableSchema(columns=[dg.TableColumn(c, t) for c, t in columns]),
        ),
        **{f"members_{row[0]}": int(row[3]) for row in rows},
    }


@dg.asset_check(
    asset=SUMMARY_KEY,
    name="segment_size_drift",
    blocking=False,
    description=(
        "Warns when a segment's size moved by more than MICROSEG_SEGMENT_SIZE_TOLERANCE (a "
        "share, default 0.5) since the previous run, or when a segment is below its min_size "
        "and so not published, exported or served. It never blocks: read the listed segments "
        "in marts.segment_summary (entered, exited, size_change) and their definition's version; "
        "a jump after a changed file or a data outage is expected, one without is worth a look."
    ),
)
def segment_size_drift(warehouse: WarehouseResource):
    with warehouse.connect() as con:
        moved, small = size_findings(con, warehouse.segment_size_tolerance)
    findings = moved + small
    return dg.AssetCheckResult(
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(findings)[:2000] or "every segment within tolerance and published",
        metadata={"moved": len(moved), "not_published": len(small)},
    )


def size_findings(con: duckdb.DuckDBPyConnection, tolerance: float) -> tuple[list, list]:
    """Segments whose size moved more than `tolerance` since the previous run, and segments
    below their min_size, one line each."""
    moved = con.execute(
        "select segment_id, previous_members, members, size_change from "
        "marts.segment_summary where abs(size_change) > ? order by segment_id",
        [tolerance],
    ).fetchall()
    small = con.execute(
        "select segment_id, members, min_size from marts.segment_summary "
        "where not published order by segment_id"
    ).fetchall()
    return (
        [f"{s}: {p} -> {m} members ({c:+.0%}, tolerance {tolerance:.0%})" for s, p, m, c in moved],
        [f"{s}: {m} members, below min_size {n}: not published" for s, m, n in small],
    )


@dg.asset_check(
    asset=layer_key("segments", "segment_lift"),
    name="holdout_power",
    blocking=False,
    description=(
        "Warns for each published segment whose holdout is too small to detect a 10% lift in "
        "conversion (alpha 0.05, power 0.8; marts.segment_lift.underpowered). It never blocks: "
        "raise the segment's holdout_share, or wait for it to grow, before reading its lift; "
        "holdout_needed_for_10pct says how many holdout members it would take."
    ),
)
def holdout_power(warehouse: WarehouseResource):
    with warehouse.connect() as con:
        rows = con.execute(
            "select segment_id, holdout, holdout_needed_for_10pct from marts.segment_lift "
            "where underpowered order by segment_id"
        ).fetchall()
        total = con.execute("select count(*) from marts.segment_lift").fetchone()[0]
    findings = [
        f"{s}: holdout {h}, needs {n if n is not None else 'more outcomes to tell'}"
        for s, h, n in rows
    ]
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(findings)[:2000] or f"all {total} segments can detect a 10% lift",
        metadata={"underpowered": len(rows), "segments": total},
    )


segment_checks = [segment_size_drift, holdout_power]
