"""DuckDB helpers shared by the ml modules: identifiers, schema discovery, chunked reads, writes."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "REAL",
    "DECIMAL",
)
KEY_COLUMNS = frozenset({"person_id", "as_of", "cutoff_date", "purchased_next_30d"})


def ident(name: str) -> str:
    """Quote a validated identifier; raise on anything that is not a plain name."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid SQL identifier: {name!r}")
    return f'"{name}"'


def table_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    """Column name -> data type, in table order; empty when the table does not exist."""
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(table_columns(con, schema, table))


def is_numeric(dtype: str) -> bool:
    return dtype.upper().split("(")[0] in _NUMERIC_TYPES


def numeric_features(columns: dict[str, str]) -> list[str]:
    """Every numeric column that is not a key or label, in table order."""
    return [c for c, t in columns.items() if is_numeric(t) and c not in KEY_COLUMNS and ident(c)]


def feature_select(features: Sequence[str], alias: str = "") -> str:
    """`cast(col as double)` list so every feature arrives as float (NULL -> NaN in numpy)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"cast({prefix}{ident(c)} as double) as {ident(c)}" for c in features)


def batch_to_matrix(batch: pa.RecordBatch, features: Sequence[str]) -> np.ndarray:
    """Arrow batch -> float32 matrix (rows x features), NULL as NaN."""
    out = np.empty((batch.num_rows, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        col = batch.column(name)
        out[:, j] = col.to_numpy(zero_copy_only=False)
    return out


def read_matrix_batches(
    con: duckdb.DuckDBPyConnection,
    query: str,
    params: dict | None,
    features: Sequence[str],
    batch_size: int = 131_072,
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Stream a query as Arrow batches, each with its float32 feature matrix."""
    reader = con.sql(query, params=params).to_arrow_reader(batch_size)
    for batch in reader:
        if batch.num_rows:
            yield batch, batch_to_matrix(batch, features)


def read_matrix(
    con: duckdb.DuckDBPyConnection,
    query: str,
    params: dict | None,
    features: Sequence[str],
    extra: Sequence[str] = (),
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Whole (already bounded) query as a float32 matrix plus extra columns as numpy arrays."""
    mats: list[np.ndarray] = []
    extras: dict[str, list[np.ndarray]] = {c: [] for c in extra}
    for batch, mat in read_matrix_batches(con, query, params, features):
        mats.append(mat)
        for c in extra:
            extras[c].append(batch.column(c).to_numpy(zero_copy_only=False))
    matrix = np.vstack(mats) if mats else np.empty((0, len(features)), dtype=np.float32)
    return matrix, {c: (np.concatenate(v) if v else np.empty(0)) for c, v in extras.items()}


def replace_table_from_arrow(
    con: duckdb.DuckDBPyConnection,
    target: str,
    data: pa.Table,
    select_sql: str,
    params: dict | None = None,
    view_name: str = "_ml_arrow_input",
) -> None:
    """`create or replace table target as <select_sql>` over a registered Arrow table, in one
    transaction; select_sql reads the Arrow table by view_name."""
    con.register(view_name, data)
    try:
        con.execute("begin transaction")
        try:
            con.execute(f"create or replace table {target} as {select_sql}", params or {})
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
    finally:
        con.unregister(view_name)


def analytics_consented(con: duckdb.DuckDBPyConnection, column: str = "person_id") -> str:
    """SQL condition: the person consented to `analytics`, the purpose models serve.

    Scores and the data models learn from are limited to those persons; without a profiles
    table (a bare feature table) every person counts.
    """
    if "consent_analytics" not in table_columns(con, "marts", "customer_profiles"):
        return "true"
    return f"{column} in (select person_id from marts.customer_profiles where consent_analytics)"
