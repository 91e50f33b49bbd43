"""Assembles the one Definitions object from the defs folder."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.automation import build_automation, refresh_job
from orchestration.defs.identity.assets import identity_assets, identity_checks
from orchestration.defs.ingest.assets import ingest_assets
from orchestration.defs.layers import TABLE_NAME, table_keys, with_layer_owners_and_tags
from orchestration.defs.ml.assets import ml_assets
from orchestration.defs.ml.cluster_checks import cluster_checks
from orchestration.defs.ml.lookalike_assets import lookalike_checks
from orchestration.defs.model_checks import model_checks
from orchestration.defs.privacy.assets import privacy_assets
from orchestration.defs.publish.assets import serving_snapshot
from orchestration.defs.publish.exports import (
    activation_exports,
    exports_consented,
    exports_minimum_audience,
)
from orchestration.defs.publish.feeds import feeds_consented, personalization_feeds
from orchestration.defs.quality.checks import build_gx_checks
from orchestration.defs.resources import build_resources
from orchestration.defs.segment_checks import segment_checks
from orchestration.defs.transform.assets import build_dbt_assets, source_column_schemas
from orchestration.settings import Settings, load_settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    resources = build_resources(settings)
    resources["serving"] = str(settings.serving)
    resources["export_dir"] = str(settings.export_dir)
    resources["privacy_dir"] = str(settings.privacy_dir)
    schedules, sensors = build_automation(settings)
    python_assets = [
        *ingest_assets,
        *identity_assets,
        *ml_assets,
        activation_exports,
        personalization_feeds,
        *privacy_assets,
        serving_snapshot,
    ]
    # Tables Python writes are documented as dbt sources: their columns show on the asset page.
    columns = source_column_schemas(settings.dbt_executable)

    def with_columns(spec: dg.AssetSpec) -> dg.AssetSpec:
        table = (spec.metadata or {}).get(TABLE_NAME)
        if table not in columns:
            return spec
        return spec.merge_attributes(metadata={"dagster/column_schema": columns[table]})

    assets = dg.map_asset_specs(
        with_layer_owners_and_tags,
        [
            *dg.map_asset_specs(with_columns, python_assets),
            *build_dbt_assets(settings.dbt_executable),
        ],
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=[
            *build_gx_checks(table_keys(assets)),
            *identity_checks,
            exports_consented,
            feeds_consented,
            exports_minimum_audience,
            *segment_checks,
            *model_checks,
            *cluster_checks,
            *lookalike_checks,
        ],
        jobs=[refresh_job],
        schedules=schedules,
        sensors=sensors,
        resources=resources,
        executor=dg.in_process_executor,
    )


defs = build_definitions()
