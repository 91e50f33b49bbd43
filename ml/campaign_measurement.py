"""marts.campaign_comparison: each campaign's lift over its control, and A/B comparisons of the
campaigns of one randomised experiment, from the per-arm counts of marts.campaign_performance
(docs/measurement.md; ml.stats does the arithmetic)."""

from __future__ import annotations

import math
from datetime import date
from itertools import combinations
from typing import Any

import duckdb
import pyarrow as pa

from ml.stats import (
    minimum_detectable_lift,
    power_two_proportions,
    proportion_lift,
    sample_size_two_proportions,
)

ALPHA = 0.05
POWER = 0.8

# Cumulative counts on each campaign's last reported day: buyers from launch through that day.
_INPUTS_SQL = """
    select
        campaign_id,
        segment_id,
        max(split_salt) as split_salt,
        max(arm_from) as arm_from,
        max(arm_to) as arm_to,
        min(launched_on) as launched_on,
        max(date) as measured_through,
        arg_max(members, date) as n_t,
        arg_max(member_buyers, date) as conv_t,
        arg_max(holdout_members, date) as n_c,
        arg_max(holdout_buyers, date) as conv_c
    from marts.campaign_performance
    group by campaign_id, segment_id
    order by segment_id, campaign_id
"""

_FLOAT = pa.float64()
SCHEMA = pa.schema(
    [
        ("comparison", pa.string()),  # 'lift' (campaign over its control) or 'ab'
        ("segment_id", pa.string()),
        ("campaign_id", pa.string()),
        ("baseline", pa.string()),  # 'holdout' / 'control', or the other campaign of the A/B
        ("launched_on", pa.date32()),
        ("measured_through", pa.date32()),
        ("n_treatment", pa.int64()),
        ("buyers_treatment", pa.int64()),
        ("n_baseline", pa.int64()),
        ("buyers_baseline", pa.int64()),
        ("rate_treatment", _FLOAT),
        ("rate_baseline", _FLOAT),
        ("relative_lift", _FLOAT),
        ("relative_lift_ci_low", _FLOAT),
        ("relative_lift_ci_high", _FLOAT),
        ("p_value", _FLOAT),
        ("significant", pa.bool_()),
        ("power_at_observed", _FLOAT),
        ("n_per_arm_for_observed", pa.int64()),
        ("n_per_arm_for_target", pa.int64()),
        ("minimum_detectable_lift", _FLOAT),
    ]
)


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def compare(
    conv_t: int,
    n_t: int,
    conv_c: int,
    n_c: int,
    alpha: float = ALPHA,
    power: float = POWER,
    target_lift: float = 0.10,
) -> dict[str, Any]:
    """Conversion of a treatment arm over a baseline arm: rates, relative lift with its Katz
    interval, pooled z-test p-value, significance at `alpha`, the power the observed lift has
    at these sizes, and persons per arm (equal arms) needed to detect the observed lift and
    `target_lift` over the baseline rate with `power`; None where undefined."""
    result = proportion_lift(conv_t, n_t, conv_c, n_c, alpha)
    base = result.rate_c
    lift = result.relative_lift
    usable = n_t > 0 and n_c > 0 and 0.0 < base < 1.0
    observed_ok = usable and not math.isnan(lift) and lift != 0.0 and base * (1 + lift) <= 1.0
    n_observed = n_target = None
    power_observed = mdl = math.nan
    if observed_ok:
        power_observed = power_two_proportions(base, lift, n_t, n_c, alpha)
        n_observed = sample_size_two_proportions(base, lift, alpha, power).n_control
    if usable:
        mdl = minimum_detectable_lift(base, n_t, n_c, alpha, power)
        if base * (1 + target_lift) <= 1.0:
            n_target = sample_size_two_proportions(base, target_lift, alpha, power).n_control
    return {
        "n_treatment": result.n_t,
        "buyers_treatment": result.conv_t,
        "n_baseline": result.n_c,
        "buyers_baseline": result.conv_c,
        "rate_treatment": _clean(result.rate_t),
        "rate_baseline": _clean(result.rate_c),
        "relative_lift": _clean(lift),
        "relative_lift_ci_low": _clean(result.relative_lift_ci_low),
        "relative_lift_ci_high": _clean(result.relative_lift_ci_high),
        "p_value": _clean(result.p_value),
        "significant": bool(result.p_value < alpha) if not math.isnan(result.p_value) else None,
        "power_at_observed": _clean(power_observed),
        "n_per_arm_for_observed": n_observed,
        "n_per_arm_for_target": n_target,
        "minimum_detectable_lift": _clean(mdl),
    }


def comparison_table(
    campaigns: list[dict[str, Any]], alpha: float = ALPHA, power: float = POWER
) -> pa.Table:
    """One 'lift' row per campaign (its members over its holdout, or its reached persons over
    its experiment's control) and one 'ab' row per pair of campaigns of one experiment (same
    split_salt and segment, disjoint arms), the first campaign id over the second."""
    out: list[dict[str, Any]] = []
    for row in campaigns:
        stats = compare(row["conv_t"], row["n_t"], row["conv_c"], row["n_c"], alpha, power)
        baseline = "control" if row.get("split_salt") else "holdout"
        out.append(_row("lift", row, row, baseline, stats))
    experiments: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in campaigns:
        if row.get("split_salt") and row.get("arm_from") is not None:
            experiments.setdefault((row["segment_id"], row["split_salt"]), []).append(row)
    for (_segment, _salt), arms in sorted(experiments.items()):
        for a, b in combinations(sorted(arms, key=lambda r: r["campaign_id"]), 2):
            if a["arm_from"] < b["arm_to"] and b["arm_from"] < a["arm_to"]:
                continue  # overlapping arms share persons: not two independent samples
            stats = compare(a["conv_t"], a["n_t"], b["conv_t"], b["n_t"], alpha, power)
            out.append(_row("ab", a, b, b["campaign_id"], stats))
    return pa.Table.from_pylist(out, schema=SCHEMA)


def _row(kind: str, a: dict, b: dict, baseline: str, stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "comparison": kind,
        "segment_id": a["segment_id"],
        "campaign_id": a["campaign_id"],
        "baseline": baseline,
        "launched_on": max(a.get("launched_on"), b.get("launched_on"), key=lambda d: d or date.min),
        "measured_through": min(
            a.get("measured_through"), b.get("measured_through"), key=lambda d: d or date.max
        ),
        **stats,
    }


def build_campaign_comparison(
    con: duckdb.DuckDBPyConnection, as_of: date, alpha: float = ALPHA, power: float = POWER
) -> pa.Table:
    """Replace marts.campaign_comparison and return it."""
    cursor = con.execute(_INPUTS_SQL)
    names = [d[0] for d in cursor.description]
    campaigns = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    table = comparison_table(campaigns, alpha, power)
    table = table.append_column("as_of", pa.array([as_of] * table.num_rows, type=pa.date32()))
    con.register("_campaign_comparison", table)
    try:
        con.execute(
            "create or replace table marts.campaign_comparison as select * "
            "from _campaign_comparison order by comparison desc, segment_id, campaign_id, baseline"
        )
    finally:
        con.unregister("_campaign_comparison")
    return table
