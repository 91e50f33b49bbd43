"""marts.segment_lift: lift of each segment's members over its holdout, from the per-arm
sufficient statistics dbt aggregates in marts.segment_outcomes (ml.stats does the arithmetic)."""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa

from ml.stats import lift_table

_INPUTS_SQL = """
    select
        segment_id,
        coalesce(sum(persons) filter (where not is_holdout), 0) as n_t,
        coalesce(sum(converters) filter (where not is_holdout), 0) as conv_t,
        coalesce(sum(persons) filter (where is_holdout), 0) as n_c,
        coalesce(sum(converters) filter (where is_holdout), 0) as conv_c,
        coalesce(sum(revenue_sum) filter (where not is_holdout), 0) as rev_sum_t,
        coalesce(sum(revenue_sumsq) filter (where not is_holdout), 0) as rev_sumsq_t,
        coalesce(sum(revenue_sum) filter (where is_holdout), 0) as rev_sum_c,
        coalesce(sum(revenue_sumsq) filter (where is_holdout), 0) as rev_sumsq_c
    from marts.segment_outcomes
    group by segment_id
    order by segment_id
"""


def build_segment_lift(
    con: duckdb.DuckDBPyConnection, as_of: date, alpha: float = 0.05, power: float = 0.8
) -> pa.Table:
    """Replace marts.segment_lift (one row per segment with members) and return it."""
    cursor = con.execute(_INPUTS_SQL)
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    table = lift_table(rows, alpha=alpha, power=power)
    table = table.append_column("as_of", pa.array([as_of] * table.num_rows, type=pa.date32()))
    con.register("_segment_lift", table)
    try:
        con.execute(
            "create or replace table marts.segment_lift as "
            "select * from _segment_lift order by segment_id"
        )
    finally:
        con.unregister("_segment_lift")
    return table
