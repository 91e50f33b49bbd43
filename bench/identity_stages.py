"""Where true CRM pairs are lost, stage by stage, on a warehouse the identity bench has built.

    .venv/bin/python -m bench.identity_stages WAREHOUSE TRUTH_CSV

For every true pair of CRM records (same true person): is it a candidate of the prediction
blocking rules, does the stored model score it at or above the threshold (scored with a blocking
rule on the truth itself, so the score does not depend on blocking), is it an edge in
`intermediate.identity_match_edges`, a conflict, cut by a guard, and finally in one person in
`marts.identity_map`. Prints counts per stage and a sample of the lost pairs with their levels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import duckdb

from ml import identity_eval, matching
from ml.matching import model as matching_model
from warehouse.connection import configure_connection

SCRATCH = "stages_scratch"


def _stored_model(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    row = con.execute(
        "select params from ml.model_runs where model_name = ? order by trained_at desc limit 1",
        [matching.MODEL_NAME],
    ).fetchall()
    if not row:
        raise SystemExit("no stored identity_matching model in ml.model_runs")
    return json.loads(row[0][0])


def stages(
    con: duckdb.DuckDBPyConnection, truth_csv: Path, threshold: float, show: int = 15
) -> dict[str, Any]:
    identity_eval.load_truth(con, truth_csv, "stage_truth")
    matching.prepare_input(con, scratch_schema=SCRATCH)
    con.execute(
        f"""
        create or replace table {SCRATCH}.truth_nodes as
        select crm_record_node(source_system, source_key) as record_node, true_person_id
        from stage_truth where source_system not in ('pos', 'web')
        """
    )
    con.execute(
        f"""
        create or replace table {SCRATCH}.true_pairs as
        select l.record_node as left_node, r.record_node as right_node
        from {SCRATCH}.truth_nodes as l
        inner join {SCRATCH}.truth_nodes as r
            on l.true_person_id = r.true_person_id and l.record_node < r.record_node
        """
    )
    blocked = " or ".join(f"({rule})" for rule in matching.PREDICTION_BLOCKING_RULES)
    con.execute(
        f"""
        create or replace table {SCRATCH}.candidates as
        select p.left_node, p.right_node, coalesce({blocked}, false) as is_blocked
        from {SCRATCH}.true_pairs as p
        inner join {SCRATCH}.match_input as l on p.left_node = l.record_node
        inner join {SCRATCH}.match_input as r on p.right_node = r.record_node
        """
    )
    # score every true pair: the truth itself as the only blocking rule
    con.execute(
        f"create or replace table {SCRATCH}.match_input as select m.*, t.true_person_id "
        f"from {SCRATCH}.match_input as m inner join {SCRATCH}.truth_nodes as t using "
        "(record_node)"
    )
    model = _stored_model(con)
    model = {
        **model,
        "blocking_rules_to_generate_predictions": [
            {"blocking_rule": "l.true_person_id = r.true_person_id", "sql_dialect": "duckdb"}
        ],
        "retain_matching_columns": True,
    }
    linker = matching_model._linker(con, model, SCRATCH)
    scored = linker.inference.predict(warning_mode="never")
    con.execute(
        f"""
        create or replace table {SCRATCH}.scored as
        select
            least(record_node_l, record_node_r) as left_node,
            greatest(record_node_l, record_node_r) as right_node,
            match_probability, match_weight, *
        from {SCRATCH}.{scored.physical_name}
        """
    )
    con.execute("set schema 'main'")
    con.execute(
        f"""
        create or replace table {SCRATCH}.stages as
        select
            c.left_node, c.right_node, c.is_blocked,
            coalesce(s.match_probability >= ?, false) as is_scored_above,
            s.match_probability, s.match_weight,
            e.left_record_node is not null as is_edge,
            coalesce(e.is_conflict, false) as is_conflict,
            cut.cut_reason,
            lm.person_id = rm.person_id as is_same_person
        from {SCRATCH}.candidates as c
        left join {SCRATCH}.scored as s using (left_node, right_node)
        left join intermediate.identity_match_edges as e
            on c.left_node = e.left_record_node and c.right_node = e.right_record_node
        left join (
            select source_node, target_node, min(cut_reason) as cut_reason
            from intermediate.int_identity_edges_cut group by all
        ) as cut
            on c.left_node = least(cut.source_node, cut.target_node)
            and c.right_node = greatest(cut.source_node, cut.target_node)
        left join marts.identity_map as lm
            on c.left_node = crm_record_node(lm.source_system, lm.source_key)
        left join marts.identity_map as rm
            on c.right_node = crm_record_node(rm.source_system, rm.source_key)
        """,
        [threshold],
    )
    counts = con.execute(
        f"""
        select
            count(*),
            count(*) filter (where is_blocked),
            count(*) filter (where is_scored_above),
            count(*) filter (where is_blocked and is_scored_above),
            count(*) filter (where is_edge),
            count(*) filter (where is_edge and not is_conflict),
            count(*) filter (where is_edge and cut_reason is not null),
            count(*) filter (where is_same_person)
        from {SCRATCH}.stages
        """
    ).fetchall()[0]
    names = [
        "true_pairs",
        "blocked",
        "scored_at_or_above_threshold",
        "blocked_and_scored",
        "match_edges",
        "edges_not_conflict",
        "edges_cut",
        "same_person_in_identity_map",
    ]
    report = dict(zip(names, (int(v) for v in counts), strict=True))
    level_columns = [
        c
        for c in con.sql(f"select * from {SCRATCH}.scored limit 0").columns
        if c.startswith("gamma_") or c.endswith("_l") or c.endswith("_r")
    ]
    columns = ", ".join(f"sc.{c}" for c in level_columns if c not in ("true_person_id_l",))
    lost = con.execute(
        f"""
        select st.is_blocked, round(st.match_weight, 1) as weight, st.is_edge, st.is_conflict,
            st.cut_reason, {columns}
        from {SCRATCH}.stages as st
        inner join {SCRATCH}.scored as sc using (left_node, right_node)
        where not coalesce(st.is_same_person, false)
        order by st.match_weight desc
        limit ?
        """,
        [show],
    ).df()
    report["lost_sample"] = lost
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--show", type=int, default=15)
    args = parser.parse_args(argv)
    import pandas as pd

    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 60)
    pd.set_option("display.max_colwidth", 18)
    con = duckdb.connect(str(args.warehouse))
    # the identity macros (record node formats) need normalize_phone, which configure_connection
    # registers with them; no keyed hash is computed here, so any key will do
    configure_connection(con, b"identity-stages")
    try:
        report = stages(con, args.truth, args.threshold, args.show)
    finally:
        con.execute("set schema 'main'")
        con.execute(f"drop schema if exists {SCRATCH} cascade")
        con.close()
    lost = report.pop("lost_sample")
    print(json.dumps(report, indent=2))
    print(lost.to_string())
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
