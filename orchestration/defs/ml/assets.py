"""scikit-learn scores and the segments built on them."""

import base64
import json
from pathlib import Path

import dagster as dg

import ml
from ml.campaign_measurement import build_campaign_comparison
from ml.lookalike import TABLE as LOOKALIKE_TABLE
from ml.lookalike import score_lookalikes
from ml.registry import ArtifactError
from ml.scoring import PinError
from ml.segment_lift import build_segment_lift
from orchestration.defs.layers import ROW_COUNT, layer_key, table_metadata, table_spec_kwargs
from orchestration.defs.ml.lookalike_assets import LOOKALIKE_SPEC, lookalike_metadata
from orchestration.defs.resources import WarehouseResource
from warehouse.audiences import (
    AudienceError,
    compile_audiences,
    load_audiences,
    write_audience_tables,
)

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
    ("clusters", "placed_persons"): "clusters_placed_persons",
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
    personas = (metrics.get("clusters") or {}).get("personas") or []
    if personas:
        metadata["personas"] = dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "cluster_id": int(p["cluster_id"]),
                        "persona": str(p["persona_name"]),
                        "description": str(p["description"]),
                        "sample_share": float(p["share"]),
                    }
                )
                for p in personas
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("cluster_id", "int"),
                    dg.TableColumn("persona", "string"),
                    dg.TableColumn("description", "string"),
                    dg.TableColumn("sample_share", "float"),
                ]
            ),
        )
    svg = metrics.get("projection_svg")
    if svg:
        encoded = base64.b64encode(svg.encode()).decode()
        metadata["cluster_map"] = dg.MetadataValue.md(
            "Clusters on the first two principal components of their behaviour features "
            f"(a sample):\n\n![cluster map](data:image/svg+xml;base64,{encoded})"
        )
    cells = (metrics.get("rfm") or {}).get("cells") or {}
    if cells:
        metadata["rfm_cells"] = _counts_table(cells, "rfm_cell", persons)
    metadata["metrics"] = dg.MetadataValue.json(
        _json_safe({k: v for k, v in metrics.items() if k != "projection_svg"})
    )
    return metadata


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            **table_spec_kwargs("models", "customer_scores", "marts.customer_scores"),
            kinds={"scikitlearn", "duckdb"},
            description="Propensity, persona clusters, lifetime value and RFM cells per person as "
            "of the run date, each naming the model version it came from",
            deps=[
                FEATURES_KEY,
                layer_key("models", "cluster_features"),
                layer_key("models", "propensity_training_examples"),
                layer_key("models", "clv_inputs"),
            ],
        ),
        dg.AssetSpec(
            **table_spec_kwargs("models", "model_runs", "ml.model_runs"),
            kinds={"duckdb"},
            description="One row per model run: version, params, metrics, features, status and "
            "the saved artifact",
            deps=[FEATURES_KEY],
        ),
        LOOKALIKE_SPEC,
        dg.AssetSpec(
            **table_spec_kwargs("models", "cluster_personas", "ml.cluster_personas"),
            kinds={"scikitlearn", "duckdb"},
            description="One row per persona cluster of the run: name, description in words, "
            "size, distinguishing traits and feature means",
            deps=[layer_key("models", "cluster_features")],
        ),
    ],
)
def customer_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        # Re-runs on unchanged inputs reuse the stored model rows (idempotent runs).
        try:
            metrics = ml.score_customers(
                con,
                as_of,
                seed=warehouse.seed,
                skip_known_versions=True,
                clv_time_unit=warehouse.clv_time_unit,
                cluster_min_events=warehouse.cluster_min_events,
                model_dir=warehouse.model_dir,
                pinned_versions=warehouse.model_versions,
            )
        except (ArtifactError, PinError) as exc:
            raise dg.Failure(
                description=f"MICROSEG_MODEL_VERSIONS: {exc}", allow_retries=False
            ) from exc
        # lookalikes learn from the scores' inputs and write the registry too: in this step, so
        # ml.model_runs has one writer per run step and its row count is the run's
        lookalikes = score_lookalikes(
            con,
            as_of,
            seed_segment=warehouse.lookalike_seed or None,
            seed=warehouse.seed,
            skip_known_versions=True,
            model_dir=warehouse.model_dir,
        )
        lookalike_meta = lookalike_metadata(lookalikes, as_of, table_metadata(con, LOOKALIKE_TABLE))
        scores_meta = table_metadata(con, "marts.customer_scores")
        runs_meta = table_metadata(con, "ml.model_runs")
        personas_meta = table_metadata(con, "ml.cluster_personas")
    for warning in metrics.get("warnings", []) + lookalikes["warnings"]:
        context.log.warning(warning)
    persons = scores_meta[ROW_COUNT]
    yield dg.MaterializeResult(
        asset_key=SCORES_KEY,
        metadata={
            "as_of": as_of.isoformat(),
            **scores_meta,
            **score_metadata(metrics, persons),
            "model_versions": dg.MetadataValue.json(metrics.get("versions") or {}),
        },
    )
    yield dg.MaterializeResult(asset_key=LOOKALIKE_SPEC.key, metadata=lookalike_meta)
    yield dg.MaterializeResult(asset_key=layer_key("models", "model_runs"), metadata=runs_meta)
    yield dg.MaterializeResult(
        asset_key=layer_key("models", "cluster_personas"), metadata=personas_meta
    )


AUDIENCE_TABLES = {
    "audience_segments": "One row per segment of the audience files (MICROSEG_SEGMENTS_DIR)",
    "audience_conditions": "The segments' conditions, one typed row per node, read as data by SQL",
    "audience_sql": "The SQL compiled from the audience files, run by the segment models",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            **table_spec_kwargs("segments", name, f"raw.{name}"),
            kinds={"yaml", "duckdb"},
            description=description,
        )
        for name, description in AUDIENCE_TABLES.items()
    ],
)
def audience_files(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """The audience files, validated (file, line and a suggestion for every problem, before any
    SQL runs) and compiled: segments, typed condition rows and the SQL over them."""
    folder = Path(warehouse.segments_dir)
    try:
        audiences = load_audiences(folder, root=folder.parent)
    except AudienceError as exc:
        raise dg.Failure(
            description=f"invalid audience files in {folder}: {exc.problems[0]} "
            f"({len(exc.problems)} problem(s) in all)\n{exc}",
            allow_retries=False,
        ) from exc
    if not audiences.segments:
        context.log.warning(f"no segments: no audience file under {folder}")
    compiled = compile_audiences(audiences)
    with warehouse.connect() as con:
        write_audience_tables(
            con, audiences, compiled, warehouse.min_segment_size, warehouse.holdout_share
        )
        metas = {name: table_metadata(con, f"raw.{name}") for name in AUDIENCE_TABLES}
    metas["audience_segments"].update(
        {
            "files": dg.MetadataValue.json(audiences.files),
            "segments": len(audiences.segments),
        }
    )
    metas["audience_sql"]["matches_sql"] = dg.MetadataValue.md(
        f"```sql\n{compiled.matches_sql}\n```"
    )
    for name in AUDIENCE_TABLES:
        yield dg.MaterializeResult(asset_key=layer_key("segments", name), metadata=metas[name])


SUMMARY_KEY = layer_key("segments", "segment_summary")
LIFT_KEY = layer_key("segments", "segment_lift")


@dg.asset(
    **table_spec_kwargs("segments", "segment_lift", "marts.segment_lift"),
    kinds={"scipy", "duckdb"},
    deps=[layer_key("segments", "segment_outcomes")],
)
def segment_lift(warehouse: WarehouseResource):
    """Lift of members over holdout per segment (conversion and revenue after entry) with
    confidence intervals, p-values and the holdout needed to detect a 10% lift."""
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        build_segment_lift(con, as_of)
        underpowered = con.execute(
            "select count(*) from marts.segment_lift where underpowered"
        ).fetchone()[0]
        meta = table_metadata(con, "marts.segment_lift")
    return dg.MaterializeResult(
        metadata={"as_of": as_of.isoformat(), **meta, "underpowered": int(underpowered)}
    )


@dg.asset(
    **table_spec_kwargs("segments", "campaign_comparison", "marts.campaign_comparison"),
    kinds={"scipy", "duckdb"},
    deps=[layer_key("segments", "campaign_performance")],
)
def campaign_comparison(warehouse: WarehouseResource):
    """Each campaign's conversion lift over its holdout or control, and A/B comparisons of the
    campaigns of one randomised experiment, with intervals, p-values and sample sizes."""
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        table = build_campaign_comparison(con, as_of)
        meta = table_metadata(con, "marts.campaign_comparison")
    significant = sum(bool(v) for v in table.column("significant").to_pylist())
    return dg.MaterializeResult(
        metadata={"as_of": as_of.isoformat(), **meta, "significant": significant}
    )


ml_assets = [customer_scores, audience_files, segment_lift, campaign_comparison]
