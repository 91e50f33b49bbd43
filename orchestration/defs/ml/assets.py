"""scikit-learn scores and the segments built on them."""

import json

import dagster as dg

import ml
from orchestration.defs.layers import ROW_COUNT, layer_key, table_metadata, table_spec_kwargs
from orchestration.defs.resources import WarehouseResource

SCORES_KEY = layer_key("models", "customer_scores")
FEATURES_KEY = layer_key("features", "customer_features")


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


# Model metrics shown as numbers (plotted across runs in the UI): (section, metric) -> label.
PLOTTED_METRICS = {
    ("propensity", "roc_auc"): "propensity_roc_auc",
    ("propensity", "average_precision"): "propensity_pr_auc",
    ("propensity", "brier"): "propensity_brier",
    ("propensity", "top_decile_lift"): "propensity_top_decile_lift",
    ("propensity", "base_rate"): "propensity_base_rate",
    ("clusters", "silhouette"): "clusters_silhouette",
    ("clusters", "davies_bouldin"): "clusters_davies_bouldin",
    ("clusters", "k"): "clusters_k",
}


def _counts_table(counts: dict, label: str, total: int) -> dg.MetadataValue:
    """A count per value (cluster, RFM cell) as a table, largest first; None reads 'none'."""
    rows = sorted(counts.items(), key=lambda kv: -int(kv[1]))
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    label: str(k) if k not in (None, "None") else "none (not placed)",
                    "persons": int(v),
                    "share": round(int(v) / total, 4) if total else 0.0,
                }
            )
            for k, v in rows
        ],  # fmt: skip
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn(label, "string"),
                dg.TableColumn("persons", "int"),
                dg.TableColumn("share", "float"),
            ]
        ),
    )


def score_metadata(metrics: dict, persons: int) -> dict:
    """Numbers of a scoring run where the UI shows them: floats, tables, the rest as JSON."""
    metadata: dict = {}
    for (section, name), label in PLOTTED_METRICS.items():
        value = (metrics.get(section) or {}).get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            metadata[label] = float(value)
    for section in ("propensity", "clusters"):
        status = (metrics.get(section) or {}).get("status")
        if status:
            metadata[f"{section}_status"] = str(status)
    sizes = (metrics.get("clusters") or {}).get("sizes") or {}
    if sizes:
        metadata["cluster_sizes"] = _counts_table(sizes, "cluster", persons)
    cells = (metrics.get("rfm") or {}).get("cells") or {}
    if cells:
        metadata["rfm_cells"] = _counts_table(cells, "rfm_cell", persons)
    metadata["metrics"] = dg.MetadataValue.json(_json_safe(metrics))
    return metadata


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
        scores_meta = table_metadata(con, "marts.customer_scores")
        runs_meta = table_metadata(con, "ml.model_runs")
    for warning in metrics.get("warnings", []):
        context.log.warning(warning)
    persons = scores_meta[ROW_COUNT]
    yield dg.MaterializeResult(
        asset_key=SCORES_KEY,
        metadata={"as_of": as_of.isoformat(), **scores_meta, **score_metadata(metrics, persons)},
    )
    yield dg.MaterializeResult(asset_key=layer_key("models", "model_runs"), metadata=runs_meta)


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
            "select segment_id, purpose, members, excluded_no_consent from marts.segment_summary "
            "order by segment_id"
        ).fetchall()
        counts = {name: table_metadata(con, f"marts.{name}") for name in SEGMENT_TABLES}
        summary_meta = table_metadata(con, "marts.segment_summary")
    for warning in result.get("warnings", []):
        context.log.warning(warning)
    for name in SEGMENT_TABLES:
        yield dg.MaterializeResult(asset_key=layer_key("segments", name), metadata=counts[name])
    yield dg.MaterializeResult(
        asset_key=layer_key("segments", "segment_summary"),
        metadata={
            "as_of": as_of.isoformat(),
            **summary_meta,
            "segment_sizes": dg.MetadataValue.table(
                records=[
                    dg.TableRecord(
                        {
                            "segment": s,
                            "purpose": p,
                            "members": int(m),
                            "left_out_without_consent": int(e),
                        }
                    )
                    for s, p, m, e in sizes
                ],  # fmt: skip
                schema=dg.TableSchema(
                    columns=[
                        dg.TableColumn("segment", "string"),
                        dg.TableColumn("purpose", "string"),
                        dg.TableColumn("members", "int"),
                        dg.TableColumn("left_out_without_consent", "int"),
                    ]
                ),
            ),
            # one number per segment, plotted over runs on the asset's page
            **{f"members_{s}": int(m) for s, _, m, _ in sizes},
        },
    )


ml_assets = [customer_scores, segments]
