"""Checks on the persona clusters: who was placed (blocking) and whether the clusters changed
(warning)."""

from __future__ import annotations

import json

import dagster as dg
import duckdb

from ml._db import analytics_consented, table_exists
from orchestration.defs.layers import layer_key
from orchestration.defs.resources import WarehouseResource

PERSONAS_KEY = layer_key("models", "cluster_personas")


def placement_problems(con: duckdb.DuckDBPyConnection, min_events: int) -> dict[str, int]:
    """Counts of persons placed against the rules, and clusters without a persona."""
    if not table_exists(con, "ml", "cluster_personas") or not table_exists(
        con, "ml", "cluster_features"
    ):
        return {}
    consented = analytics_consented(con, "s.person_id")
    row = con.execute(
        f"""
        select
            count(*) filter (where s.cluster_id is not null and not ({consented})),
            count(*) filter (
                where s.cluster_id is not null
                    and coalesce(f.activity_events_365d, 0) < $min_events
            ),
            count(*) filter (where s.cluster_id is not null and c.cluster_id is null),
            count(*) filter (where s.persona_name is distinct from c.persona_name)
        from marts.customer_scores as s
        left join ml.cluster_features as f on f.person_id = s.person_id
        left join ml.cluster_personas as c on c.cluster_id = s.cluster_id
        """,
        {"min_events": min_events},
    ).fetchall()[0]
    names = ("placed_without_analytics_consent", "placed_below_min_events",
             "cluster_without_persona", "persona_name_mismatch")  # fmt: skip
    return dict(zip(names, (int(v) for v in row), strict=True))


@dg.asset_check(
    asset=PERSONAS_KEY,
    name="clusters_place_only_eligible_persons",
    blocking=True,
    description=(
        "Blocks the segments when a person without analytics consent, or with fewer than "
        "MICROSEG_CLUSTER_MIN_EVENTS baskets and web events, has a cluster, or a cluster has no "
        "persona row: such a person would reach a persona segment."
    ),
)
def clusters_place_only_eligible_persons(warehouse: WarehouseResource):
    with warehouse.connect() as con:
        problems = placement_problems(con, warehouse.cluster_min_events)
    bad = {k: v for k, v in problems.items() if v}
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR,
        description=", ".join(f"{k}: {v}" for k, v in bad.items())
        or "only consented, active persons are placed, each cluster has its persona",
        metadata={k: int(v) for k, v in problems.items()},
    )


def stability_findings(con: duckdb.DuckDBPyConnection) -> list[str]:
    """What changed in the latest clusters run: skipped, or clusters not matched to the
    previous run's (their ids are new, segments on the old ids stop matching)."""
    if not table_exists(con, "ml", "model_runs"):
        return []
    rows = con.execute(
        "select version, status, reason, metrics from ml.model_runs "
        "where model_name = 'behavioural_clusters' order by trained_at desc, version desc limit 2"
    ).fetchall()
    if not rows:
        return []
    version, status, reason, metrics_json = rows[0]
    if status != "trained":
        return [f"clusters {version} not trained ({status}): {reason}"]
    if len(rows) < 2 or rows[1][1] != "trained":
        return []
    metrics = json.loads(metrics_json or "{}")
    previous_k = json.loads(rows[1][3] or "{}").get("k")
    kept = metrics.get("ids_kept_from_previous")
    if previous_k and kept is not None and kept < min(previous_k, metrics.get("k", 0)):
        return [
            f"clusters {version}: {kept} of {metrics.get('k')} clusters kept the previous "
            f"run's ids (previous k {previous_k}); segments naming a cluster id may change"
        ]
    return []


@dg.asset_check(
    asset=PERSONAS_KEY,
    name="clusters_stable",
    blocking=False,
    description=(
        "Warns when the clusters were not trained (with the reason), or when fewer clusters "
        "than before matched the previous run's centroids and kept their ids."
    ),
)
def clusters_stable(warehouse: WarehouseResource):
    with warehouse.connect() as con:
        findings = stability_findings(con)
    return dg.AssetCheckResult(
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(findings) or "clusters kept their ids",
    )


cluster_checks = [clusters_place_only_eligible_persons, clusters_stable]
