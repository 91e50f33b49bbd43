"""Scored pairs as `intermediate.identity_match_edges`: per-comparison weights, the level each
came from (evidence), agreeing fields, the conflict flag and the model version."""

from __future__ import annotations

import math
from typing import Any

import duckdb

from ml.matching.inputs import _check_identifier, _count
from ml.matching.model import COMPARISON_COLUMNS

EDGES_TABLE = "intermediate.identity_match_edges"

# A pair whose first names disagree outright while birth dates are not the same is two people
# (a family sharing an address, email or phone), whatever else agrees: the model's independence
# assumption fails exactly there.
CONFLICT_RULE = (
    "first_name_level = 'else' and date_of_birth_level not in ('exact', 'day and month swapped')"
)


def create_edges_table(con: duckdb.DuckDBPyConnection) -> None:
    """The (possibly empty) edges table, so the identity layer can always read it."""
    con.execute("create schema if not exists intermediate")
    weights = ", ".join(f"mw_{c} double" for c in COMPARISON_COLUMNS)
    con.execute(
        f"""
        create or replace table {EDGES_TABLE} (
            left_record_node varchar not null,
            right_record_node varchar not null,
            match_probability double not null,
            match_weight double not null,
            {weights},
            evidence varchar,
            agreeing_fields varchar,
            blocking_rule integer,
            is_conflict boolean not null,
            model_version varchar
        )
        """
    )


def _level_weights(model: dict[str, Any]) -> dict[str, list[tuple[float, str]]]:
    """(match weight, label) of each non-null level per comparison of a (trained) model."""
    out: dict[str, list[tuple[float, str]]] = {}
    for comparison in model["comparisons"]:
        levels = []
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            if m and u:
                levels.append((math.log2(m / u), level.get("label_for_charts", "")))
        out[comparison["output_column_name"]] = levels
    return out


def _evidence_case(column: str, levels: list[tuple[float, str]]) -> str:
    """SQL naming the level a per-comparison weight came from (weights are model numbers)."""
    whens = " ".join(
        f"when abs(mw_{column} - ({weight!r})) < 1e-9 then '{_label(label)}'"
        for weight, label in levels
    )
    return f"case when mw_{column} = 0 then 'null' {whens} else 'other' end"


def _label(text: str) -> str:
    if not all(ch.isalnum() or ch in " <>=./-" for ch in text):
        raise ValueError(f"unexpected character in a level label: {text!r}")
    return text


def _write_edges(
    con: duckdb.DuckDBPyConnection,
    predictions_table: str,
    model: dict[str, Any],
    model_version: str,
) -> int:
    _check_identifier(predictions_table)
    levels = _level_weights(model)
    level_columns = ", ".join(
        f"{_evidence_case(c, levels.get(c, []))} as {c}_level" for c in COMPARISON_COLUMNS
    )
    evidence = ", ".join(f"'{c}', {c}_level" for c in COMPARISON_COLUMNS)
    agreeing = " || ".join(
        f"case when mw_{c} > 0 then '{c},' else '' end" for c in COMPARISON_COLUMNS
    )
    # A comparison's weight as scored: its level's weight (which names the level) plus the
    # term-frequency adjustment Splink adds for the value, so the mw_* and the prior sum to
    # match_weight.
    schema, _, table = predictions_table.rpartition(".")
    columns = {
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    }
    weights = ", ".join(
        f"mw_{c} + coalesce(mw_tf_adj_{c}, 0)" if f"mw_tf_adj_{c}" in columns else f"mw_{c}"
        for c in COMPARISON_COLUMNS
    )
    create_edges_table(con)
    con.execute(
        f"""
        insert into {EDGES_TABLE}
        with scored as (
            select *, {level_columns} from {predictions_table}
        )
        select
            least(record_node_l, record_node_r),
            greatest(record_node_l, record_node_r),
            match_probability,
            match_weight,
            {weights},
            json_object({evidence})::varchar,
            rtrim({agreeing}, ','),
            try_cast(match_key as integer),
            coalesce({CONFLICT_RULE}, false),
            ?
        from scored
        """,
        [model_version],
    )
    return _count(con, EDGES_TABLE)
