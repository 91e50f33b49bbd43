"""scikit-learn scores and the segments built on them."""

import json

import dagster as dg

import ml
from orchestration.defs.layers import layer_key, table_spec_kwargs
from orchestration.defs.resources import WarehouseResource

SCORES_KEY = layer_key("models", "customer_scores")
FEATURES_KEY = layer_key("features", "customer_features")


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            **table_spec_kwargs("models", "customer_scores", "marts.customer_scores"),
            kinds={"scikitlearn", "duckdb"},
            description="Propensity, clusters and RFM cells per person as of the run date",
            deps=[FEATURES_KEY, layer_key("models", "propensity_training_examples")],
        ),
        dg.AssetSpec(
            **table_spec_kwargs("models", "model_runs", "ml.model_runs"),
            kinds={"duckdb"},
            description="One row per trained model: params, metrics, features",
            deps=[FEATURES_KEY],
        ),
    ],
)
def customer_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        # Re-runs on unchanged inputs reuse the stored model rows (idempotent runs).
        metrics = ml.score_customers(con, as_of, seed=warehouse.seed, skip_known_versions=True)
        persons = con.execute("select count(*) from marts.customer_scores").fetchone()[0]
    for warning in metrics.get("warnings", []):
        context.log.warning(warning)
    yield dg.MaterializeResult(
        asset_key=SCORES_KEY,
        metadata={
            "as_of": as_of.isoformat(),
            "rows_total": int(persons),
            "metrics": dg.MetadataValue.json(_json_safe(metrics)),
        },
    )
    yield dg.MaterializeResult(asset_key=layer_key("models", "model_runs"))


SEGMENT_TABLES = ["segment_definitions", "segment_members", "segment_membership_history"]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            **table_spec_kwargs("segments", name, f"marts.{name}"),
            kinds={"duckdb"},
            deps=[SCORES_KEY, layer_key("identity", "customer_profiles"), FEATURES_KEY],
        )
        for name in [*SEGMENT_TABLES, "segment_summary"]
    ],
)
def segments(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Segments declared as code (ml.SEGMENTS), consent-gated per purpose, with holdouts."""
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        result = ml.build_segments(
            con,
            as_of,
            holdout_share=warehouse.holdout_share,
            min_segment_size=warehouse.min_segment_size,
        )
        sizes = con.execute(
            "select segment_id, members, excluded_no_consent from marts.segment_summary "
            "order by segment_id"
        ).fetchall()
    for warning in result.get("warnings", []):
        context.log.warning(warning)
    for name in SEGMENT_TABLES:
        yield dg.MaterializeResult(asset_key=layer_key("segments", name))
    yield dg.MaterializeResult(
        asset_key=layer_key("segments", "segment_summary"),
        metadata={
            "as_of": as_of.isoformat(),
            "segments": dg.MetadataValue.md(
                "| segment | members | excluded (no consent) |\n|---|---|---|\n"
                + "\n".join(f"| {s} | {m} | {e} |" for s, m, e in sizes)
            ),
        },
    )


ml_assets = [customer_scores, segments]
