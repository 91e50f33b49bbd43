"""Writing landing files (CSV, JSON Lines, Parquet) with injected faults recorded as truth."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from synthetic._text import iso

INVALID_JSON = '{"event_id": "ev-broken", "event_type": "page_view", "anonymous_id": '


class Sink:
    """Writes files under the landing root and tallies files, rows and faults per source."""

    def __init__(self, root: Path, large: bool) -> None:
        self.root = root
        self.large = large
        self.files: dict[str, int] = defaultdict(int)
        self.rows: dict[str, int] = defaultdict(int)
        self.faults: list[tuple[str, str, int, str]] = []

    def ts(self, seconds: np.ndarray) -> pa.Array:
        """Timestamps: naive UTC Parquet timestamps in large runs, ISO-8601 text otherwise."""
        if self.large:
            return pa.array(np.asarray(seconds, dtype=np.int64).astype("datetime64[s]"))
        return iso(seconds)

    def write(
        self,
        source: str,
        stem: str,
        table: pa.Table,
        faults: list[tuple[str, int, dict]] = (),
        invalid_json_at: int | None = None,
        fmt: str | None = None,
    ) -> None:
        """Write `table` to `source/stem.<ext>` with fault rows (rule, copied row, changes)."""
        if fmt is None:
            fmt = "parquet" if self.large else ("jsonl" if source == "web" else "csv")
        rel = f"{source}/{stem}.{fmt}"
        table, fault_rows = _insert_faults(table, faults)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        n = table.num_rows
        if fmt == "csv":
            pacsv.write_csv(table, path)
        elif fmt == "parquet":
            pq.write_table(table, path, compression="zstd")
        else:
            text = table.to_pandas().to_json(orient="records", lines=True, date_format="iso")
            lines = text.splitlines()
            if invalid_json_at is not None:
                pos = min(invalid_json_at, len(lines))
                lines.insert(pos, INVALID_JSON)
                fault_rows = [r + 1 if r > pos else r for r in fault_rows]
                self.faults.append((source, rel, pos + 1, "invalid_json"))
                n += 1
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for (rule, _, _), row in zip(faults, fault_rows, strict=True):
            self.faults.append((source, rel, row, rule))
        self.files[source] += 1
        self.rows[source] += n


def _insert_faults(table: pa.Table, faults) -> tuple[pa.Table, list[int]]:
    """Insert a modified copy of row `k` right after row `k` for each fault; 1-based rows back."""
    if not faults or table.num_rows == 0:
        return table, []
    order = sorted(range(len(faults)), key=lambda i: faults[i][1])
    pieces, rows, prev, inserted = [], [0] * len(faults), 0, 0
    for i in order:
        rule, k, changes = faults[i]
        k = min(k, table.num_rows - 1)
        pieces.append(table.slice(prev, k + 1 - prev))
        row = table.slice(k, 1)
        for col, value in changes.items():
            idx = row.schema.get_field_index(col)
            typ = row.schema.field(idx).type
            row = row.set_column(idx, col, pa.array([value], type=typ))
        pieces.append(row)
        inserted += 1
        rows[i] = k + 1 + inserted  # after k+1 original rows and `inserted` fault rows
        prev = k + 1
    pieces.append(table.slice(prev))
    return pa.concat_tables(pieces), rows
