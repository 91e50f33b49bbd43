"""Lookalike scores: resemblance of every consented person to a seed segment (ml/lookalike.py)."""

import dagster as dg

from ml._db import analytics_consented
from ml.lookalike import TABLE
from orchestration.defs.layers import layer_key, table_spec_kwargs
from orchestration.defs.resources import WarehouseResource

LOOKALIKE_KEY = layer_key("models", "lookalike_scores")


LOOKALIKE_SPEC = dg.AssetSpec(
    **table_spec_kwargs("models", "lookalike_scores", TABLE),
    kinds={"scikitlearn", "duckdb"},
    description="How much each analytics-consented person outside the seed resembles it (0 to "
    "1) and their rank; the seed is MICROSEG_LOOKALIKE_SEED's members on the previous segment "
    "run, else the top 5% by expected_spend_365d",
    deps=[layer_key("features", "customer_features")],
)


def lookalike_metadata(metrics: dict, as_of, meta: dict) -> dict:
    """The lookalike run's numbers where the UI shows them."""
    numbers = {
        f"lookalike_{k}": float(metrics[k])
        for k in ("seed_size", "scored_persons", "holdout_auc")
        if isinstance(metrics.get(k), int | float)
    }
    return {
        "as_of": as_of.isoformat(),
        **meta,
        **numbers,
        "status": str(metrics["status"]),
        "seed_segment": str(metrics["seed_segment"]),
        "reason": str(metrics.get("reason") or ""),
        "metrics": dg.MetadataValue.json({k: v for k, v in metrics.items() if k != "warnings"}),
    }


@dg.asset_check(
    asset=LOOKALIKE_KEY,
    name="lookalike_scores_consented",
    blocking=True,
    description=(
        "Blocks the segments when a person without analytics consent has a lookalike score or "
        "seed flag, a seed member has a rank, or a score or rank lies outside 0 to 1: such a "
        "person would reach a lookalike tier. Re-run after fixing ml/lookalike.py."
    ),
)
def lookalike_scores_consented(warehouse: WarehouseResource):
    with warehouse.connect() as con:
        consented = analytics_consented(con, "l.person_id")
        bad_consent, seed_ranked, out_of_range, total = con.execute(
            f"""
            select
                count(*) filter (
                    where (lookalike_score is not null or is_lookalike_seed) and not ({consented})
                ),
                count(*) filter (where is_lookalike_seed and lookalike_rank_pct is not null),
                count(*) filter (
                    where lookalike_score not between 0 and 1
                        or lookalike_rank_pct < 0 or lookalike_rank_pct >= 1
                ),
                count(*)
            from {TABLE} as l
            """
        ).fetchone()
    return dg.AssetCheckResult(
        passed=not (bad_consent or seed_ranked or out_of_range),
        description=(
            f"{bad_consent} scored without analytics consent, {seed_ranked} seed members ranked, "
            f"{out_of_range} scores or ranks outside 0 to 1, of {total} rows"
        ),
        metadata={
            "without_consent": int(bad_consent),
            "seed_ranked": int(seed_ranked),
            "out_of_range": int(out_of_range),
            "rows": int(total),
        },
    )


lookalike_checks = [lookalike_scores_consented]
