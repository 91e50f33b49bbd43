"""The layers of the flow: each is one Dagster group and the key prefix of its assets.

dbt models take their layer from `meta.layer`, set per folder in dbt_project.yml (the translator in
transform/assets.py reads it); Python assets name theirs with `layer_key`. Groups depend on each
other in this order only, so the lineage graph reads left to right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg

LAYERS: dict[str, str] = {
    "raw": "Landing-zone files loaded as typed rows, bad rows quarantined, per source",
    "staging": "One cleaned, de-duplicated view or table per source (dbt)",
    "identity": "Records stitched into persons: exact keys, Splink matches, guards, stable "
    "person ids, the profile per person",
    "privacy": "Data-subject requests resolved to persons; erasures applied before anything "
    "is computed from events",
    "features": "Events attributed to persons and aggregated into features as of the run date",
    "models": "scikit-learn models: propensity, clusters, RFM cells and their training data",
    "segments": "Consent-gated segments, their members, history and campaign results",
    "publish": "What leaves the warehouse: the serving snapshot, activation exports and access "
    "responses",
}

# Who answers for each layer's assets (shown as owners in the UI).
LAYER_OWNERS: dict[str, str] = {
    "raw": "team:data-engineering",
    "staging": "team:data-engineering",
    "identity": "team:data-engineering",
    "privacy": "team:privacy",
    "features": "team:data-engineering",
    "models": "team:data-science",
    "segments": "team:marketing-analytics",
    "publish": "team:data-engineering",
}

TABLE_NAME = "dagster/table_name"
ROW_COUNT = "dagster/row_count"


def layer_key(layer: str, name: str) -> dg.AssetKey:
    """The asset key of `name` in `layer` (the layer is also its group)."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; layers: {', '.join(LAYERS)}")
    return dg.AssetKey([layer, name])


def table_spec_kwargs(layer: str, name: str, table: str | None) -> dict:
    """Key, group and table metadata of an asset of `layer` that writes warehouse table `table`."""
    kwargs: dict = {"key": layer_key(layer, name), "group_name": layer}
    if table:
        kwargs["metadata"] = {TABLE_NAME: table}
    return kwargs


def layer_tags(layer: str, columns: Iterable[str] = ()) -> dict[str, str]:
    """Tags of an asset: its layer, and `pii` when it holds a direct identifier or a source key
    in clear (the columns the serving snapshot drops or keys)."""
    from warehouse.publish import DIRECT_IDENTIFIER_COLUMNS, SOURCE_KEY_COLUMNS

    tags = {"layer": layer}
    if any(c.lower() in DIRECT_IDENTIFIER_COLUMNS | SOURCE_KEY_COLUMNS for c in columns):
        tags["pii"] = "true"
    return tags


def with_layer_owners_and_tags(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The spec with its layer's owner and its layer / pii tags (from its column schema)."""
    layer = spec.group_name or spec.key.path[0]
    schema = (spec.metadata or {}).get("dagster/column_schema")
    columns = [c.name for c in getattr(schema, "columns", None) or []]
    return spec.merge_attributes(
        owners=[LAYER_OWNERS[layer]] if layer in LAYER_OWNERS else [],
        tags=layer_tags(layer, columns),
    )


def table_keys(assets: Iterable[dg.AssetsDefinition]) -> Mapping[str, dg.AssetKey]:
    """schema.table -> the key of the asset that writes it, from each asset's table metadata."""
    keys: dict[str, dg.AssetKey] = {}
    for asset in assets:
        for spec in asset.specs:
            table = (spec.metadata or {}).get(TABLE_NAME)
            if table is not None:
                keys[str(getattr(table, "value", table))] = spec.key
    return keys


def table_metadata(con, table: str) -> dict:
    """Row count of a warehouse table (schema.table) as the Dagster UI shows and plots it."""
    schema, name = table.split(".")
    (count,) = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()
    return {ROW_COUNT: int(count)}
