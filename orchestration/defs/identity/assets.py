"""Probabilistic matching and identity evaluation assets (see issue: identity resolution).

Order in the graph: staging (dbt) -> identity rules + match edges (here, with checks) -> the
dbt identity layer (reads them as sources) -> identity evaluation (here) against ground truth.
"""

import json
from pathlib import Path

import dagster as dg

from ml import identity_eval, matching
from orchestration.defs.layers import layer_key, table_metadata, table_spec_kwargs
from orchestration.defs.resources import WarehouseResource

GROUP = "identity"
# Pairwise precision below this on generated ground truth blocks the run: over-merging is the
# failure that harms people (wrong consent, wrong profile), and it must not creep in unnoticed.
PRECISION_FLOOR = 0.99


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            **table_spec_kwargs(GROUP, "identity_overrides", "intermediate.identity_overrides"),
            kinds={"duckdb"},
            description="Manual never-merge / always-merge record pairs from the overrides CSV "
            "(MICROSEG_IDENTITY_OVERRIDES; a missing file means none), reloaded every run.",
        ),
        dg.AssetSpec(
            **table_spec_kwargs(GROUP, "identity_parameters", "intermediate.identity_parameters"),
            kinds={"duckdb"},
            description="Identity guard settings the dbt identity layer reads.",
        ),
        dg.AssetSpec(
            **table_spec_kwargs(GROUP, "identity_blocklist", "intermediate.identity_blocklist"),
            kinds={"duckdb"},
            description="Extra junk identifier values (MICROSEG_IDENTITY_BLOCKLIST).",
        ),
    ],
)
def identity_rules(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.connect() as con:
        overrides = matching.write_overrides(con, warehouse.identity_overrides)
        matching.write_identity_parameters(
            con,
            max_cluster_size=warehouse.identity_max_cluster_size,
            max_values_per_type=warehouse.identity_max_values_per_type,
            match_threshold=warehouse.identity_match_threshold,
            blocklist=warehouse.identity_blocklist,
        )
        counts = {
            name: table_metadata(con, f"intermediate.{name}")
            for name in ("identity_overrides", "identity_parameters", "identity_blocklist")
        }
    source = warehouse.identity_overrides
    present = bool(source) and Path(source).is_file()
    yield dg.MaterializeResult(
        asset_key=layer_key(GROUP, "identity_overrides"),
        metadata={
            **counts["identity_overrides"],
            "rows": overrides,
            "file": source or "",
            "file_present": present,
        },  # fmt: skip
    )
    yield dg.MaterializeResult(
        asset_key=layer_key(GROUP, "identity_parameters"),
        metadata={
            **counts["identity_parameters"],
            "max_cluster_size": warehouse.identity_max_cluster_size,
            "max_values_per_type": warehouse.identity_max_values_per_type,
            "match_threshold": warehouse.identity_match_threshold,
        },
    )
    yield dg.MaterializeResult(
        asset_key=layer_key(GROUP, "identity_blocklist"),
        metadata={**counts["identity_blocklist"], "values": len(set(warehouse.identity_blocklist))},
    )


@dg.asset(
    **table_spec_kwargs(GROUP, "identity_match_edges", "intermediate.identity_match_edges"),
    kinds={"splink", "duckdb"},
    deps=[["staging", "stg_crm__customers"]],
    description="Splink matches between CRM records that share no exact key (names, birth "
    "date, address, fuzzy email/phone), above MICROSEG_IDENTITY_MATCH_THRESHOLD, with their "
    "evidence. The model is stored in ml.model_runs (identity_matching) and reused until the "
    "settings change or MICROSEG_IDENTITY_RETRAIN is set. Data too small to train falls back to "
    "the last trained model (else the starting parameters), warns, and records a fallback row.",
)
def identity_match_edges(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        result = matching.match_records(
            con,
            threshold=warehouse.identity_match_threshold,
            retrain=warehouse.identity_retrain,
            seed=warehouse.seed,
            as_of=as_of,
        )
        conflicts = con.execute(
            "select count(*) filter (where is_conflict) from intermediate.identity_match_edges"
        ).fetchall()[0][0]
        counts = table_metadata(con, "intermediate.identity_match_edges")
    for warning in result.warnings:
        context.log.warning(warning)
    meta = result.as_metadata()
    return dg.MaterializeResult(
        metadata={
            **counts,
            "records": result.records,
            "edges": result.edges,
            "conflicting_edges": int(conflicts),
            "model_version": result.model_version or "",
            "trained": result.trained,
            # trained, reused (the stored model of these settings), fallback (too little data
            # to train: the last trained model, else the starting parameters) or skipped
            "status": result.status,
            "reason": result.reason,
            "warnings": dg.MetadataValue.json(list(result.warnings)),
            "matching": dg.MetadataValue.json(_json_safe(meta)),
        }
    )


@dg.asset_check(
    asset=identity_match_edges,
    blocking=True,
    description="Match edges are well formed: distinct pairs of two different CRM records "
    "that exist in staging, each with a probability between the threshold and 1.",
)
def identity_match_edges_valid(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        row = con.execute(
            """
            select
                count(*) filter (where left_record_node >= right_record_node),
                count(*) - count(distinct left_record_node || '>' || right_record_node),
                count(*) filter (where match_probability < ? or match_probability > 1),
                count(*) filter (where l.record_node is null or r.record_node is null),
                count(*)
            from intermediate.identity_match_edges as e
            left join staging.stg_crm__customers as l on e.left_record_node = l.record_node
            left join staging.stg_crm__customers as r on e.right_record_node = r.record_node
            """,
            [warehouse.identity_match_threshold],
        ).fetchall()[0]
    unordered, duplicates, out_of_range, unknown, total = (int(v) for v in row)
    return dg.AssetCheckResult(
        passed=unordered == duplicates == out_of_range == unknown == 0,
        metadata={
            "edges": total,
            "unordered_or_self_pairs": unordered,
            "duplicate_pairs": duplicates,
            "probability_out_of_range": out_of_range,
            "unknown_records": unknown,
        },
    )


@dg.asset(
    **table_spec_kwargs(GROUP, "identity_evaluation", None),
    kinds={"duckdb"},
    deps=[layer_key(GROUP, "identity_map")],
    description="Pairwise precision, recall, F1 and cluster metrics of marts.identity_map "
    "against the generator's ground truth (<landing>/_truth/identity.csv) when present, over "
    "CRM records (the target's scope) and over all records with an identifier. Recorded in "
    "ml.model_runs (identity_resolution).",
)
def identity_evaluation(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    truth = Path(warehouse.landing_dir) / "_truth" / "identity.csv"
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
        outcome = identity_eval.evaluate_identity_map(con, truth, as_of)
    if not outcome["truth_present"]:
        context.log.info("no ground truth: identity evaluation skipped")
    metadata = {"truth_present": outcome["truth_present"], "note": outcome["note"]}
    for scope, metrics in outcome["scopes"].items():
        for name in ("pairwise_precision", "pairwise_recall", "pairwise_f1"):
            metadata[f"{scope}_{name}"] = float(metrics[name])
        metadata[f"{scope}_metrics"] = dg.MetadataValue.json(_json_safe(metrics))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=identity_evaluation,
    blocking=True,
    description=f"Where ground truth is present, pairwise precision over CRM records is at "
    f"least {PRECISION_FLOOR}; passes with a note when there is no ground truth.",
)
def identity_precision_floor(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        latest = identity_eval.latest_evaluation(con)
    if latest is None or "crm" not in latest:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no ground truth"})
    precision = float(latest["crm"]["pairwise_precision"])
    return dg.AssetCheckResult(
        passed=precision >= PRECISION_FLOOR,
        metadata={"crm_pairwise_precision": precision, "floor": PRECISION_FLOOR},
    )


identity_assets: list[dg.AssetsDefinition] = [
    identity_rules,
    identity_match_edges,
    identity_evaluation,
]
identity_checks: list[dg.AssetChecksDefinition] = [
    identity_match_edges_valid,
    identity_precision_floor,
]
