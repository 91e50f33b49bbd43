"""Lookalike lift against the generator's ground truth.

    .venv/bin/python -m bench.lookalike WAREHOUSE LANDING [--seed-segment ID]

WAREHOUSE is a warehouse after `microseg run` over LANDING, a folder written by `microseg
generate` (its `_truth/` holds each person's true persona and purchase probability). Scores the
lookalikes again on a copy of the warehouse (the run's own file is left as it was), maps each
person to a true person as the identity tests do (the most frequent true person among their
records), and prints, per tier of 1, 2, 5 and 10%, the lift over random of reaching the seed's
most common true persona and a person of the top 10% by true purchase probability: the share of
tier members who are one divided by that share among all scored persons. The persona lift can be
at most 1 / its share, printed beside it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import duckdb

from bench.truth import TRUTH_CTES, truth_params
from ml.lookalike import TIERS, score_lookalikes

_TRUTH_SQL = f"""
create or replace temp table lookalike_truth as
with {TRUTH_CTES}
select l.*, p.persona, cast(p.p_purchase_30d as double) as p30
from marts.lookalike_scores as l
left join mapped using (person_id)
left join persons as p using (true_person_id)
where l.is_lookalike_seed or l.lookalike_score is not null
"""


def evaluate(con: duckdb.DuckDBPyConnection, landing: Path, seed_segment: str | None) -> dict:
    as_of = con.execute("select max(as_of) from marts.customer_features").fetchall()[0][0]
    metrics = score_lookalikes(con, as_of, seed_segment=seed_segment)
    report = {k: metrics.get(k) for k in ("status", "reason", "seed_segment", "seed_size")}
    report.update(holdout_auc=metrics.get("holdout_auc"), warnings=metrics["warnings"])
    if metrics["status"] != "trained":
        return report
    con.execute(_TRUTH_SQL, truth_params(landing))
    mix = con.execute(
        "select persona, count(*) from lookalike_truth where is_lookalike_seed "
        "group by 1 order by 2 desc, 1"
    ).fetchall()
    persona = mix[0][0]
    high = con.execute("select quantile_cont(p30, 0.9) from lookalike_truth").fetchall()[0][0]
    params = {"persona": persona, "high": high}
    base_persona, base_high, scored = con.execute(
        "select avg(cast(persona = $persona as integer)), avg(cast(p30 >= $high as integer)), "
        "count(*) from lookalike_truth where not is_lookalike_seed",
        params,
    ).fetchall()[0]
    report.update(
        seed_personas=dict(mix),
        seed_persona=persona,
        persona_base_share=round(base_persona, 4),
        persona_lift_cap=round(1 / base_persona, 2),
        high_value_p30_threshold=round(high, 4),
        high_value_base_share=round(base_high, 4),
        scored=scored,
        tiers={},
    )
    for tier in TIERS:
        members, in_persona, in_high = con.execute(
            "select count(*), avg(cast(persona = $persona as integer)), "
            "avg(cast(p30 >= $high as integer)) from lookalike_truth "
            "where not is_lookalike_seed and lookalike_rank_pct < $tier",
            {**params, "tier": tier},
        ).fetchall()[0]
        report["tiers"][f"{round(tier * 100)}%"] = {
            "members": members,
            "persona_lift": round(in_persona / base_persona, 2),
            "high_value_lift": round(in_high / base_high, 2),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("landing", type=Path)
    parser.add_argument("--seed-segment", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "warehouse.duckdb"
        shutil.copyfile(args.warehouse, copy)
        with duckdb.connect(str(copy)) as con:
            report = evaluate(con, args.landing, args.seed_segment)
    tiers = report.pop("tiers", {})
    for key, value in report.items():
        print(f"{key}: {value}")
    for tier, row in tiers.items():
        print(
            f"tier {tier}: {row['members']} persons, persona lift {row['persona_lift']}x, "
            f"high-value lift {row['high_value_lift']}x"
        )


if __name__ == "__main__":
    main()
