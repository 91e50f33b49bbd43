"""dbt models as assets, split by layer so a blocking check can stop the next layer."""

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from orchestration.defs.layers import LAYERS, TABLE_NAME, layer_key, table_metadata
from orchestration.defs.resources import WarehouseResource
from orchestration.defs.segment_checks import SUMMARY_TABLE, segment_summary_metadata
from orchestration.settings import DBT_PROJECT_DIR

# dbt invocations, in order, by the layers (meta.layer) of the models each builds: a blocking
# check in one stops the next. `rest` takes the models of any other layer.
DBT_STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("staging", ("staging",)),
    ("identity", ("identity", "privacy")),
    ("features", ("features", "models")),
]

# Metadata beyond the row count for some tables, read once dbt has exited.
TABLE_EXTRA_METADATA = {SUMMARY_TABLE: segment_summary_metadata}

# Layers whose models read the person's events: they must not see an erased person again.
AFTER_ERASURE_LAYERS = ("features", "models", "segments")
ERASURE_KEY = layer_key("privacy", "erasure")


def model_layer(dbt_resource_props: Mapping[str, Any]) -> str:
    """A model's layer: meta.layer, set per folder in dbt_project.yml."""
    meta = (dbt_resource_props.get("config") or {}).get("meta") or dbt_resource_props.get("meta")
    layer = (meta or {}).get("layer")
    if layer not in LAYERS:
        raise ValueError(
            f"dbt model {dbt_resource_props.get('original_file_path')} has meta.layer "
            f"{layer!r}; set +meta: {{layer: ...}} on its folder in dbt_project.yml "
            f"(one of {', '.join(LAYERS)})"
        )
    return layer


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _newest_source_mtime(project_dir: Path) -> float:
    paths = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in ("models", "macros", "tests", "seeds"):
        paths.extend(p for p in (project_dir / folder).rglob("*") if p.is_file())
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def ensure_manifest(dbt_executable: str, project: DbtProject = dbt_project) -> Path:
    """Parse the dbt project when its manifest is missing or older than any project file."""
    manifest = project.manifest_path
    if manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime(project.project_dir):
        return manifest
    # dagster-dbt's own preparer would look for `dbt` on PATH; use the project environment's.
    # Parse into a private folder, then swap the manifest in: two processes may parse at once.
    scratch = manifest.parent / f".parse-{uuid.uuid4().hex}"
    try:
        completed = subprocess.run(
            [
                dbt_executable,
                "parse",
                "--quiet",
                "--project-dir",
                str(project.project_dir),
                "--profiles-dir",
                str(project.profiles_dir),
                "--target-path",
                str(scratch),
            ],
            capture_output=True,
            text=True,
            check=False,
            # Parsing opens no connection: a placeholder warehouse lets it run before settings
            # are exported (the real values, when present, win).
            env={"MICROSEG_WAREHOUSE": ":memory:", **os.environ},
        )
        parsed = scratch / "manifest.json"
        if completed.returncode != 0 or not parsed.exists():
            raise RuntimeError(f"dbt parse failed:\n{completed.stdout}\n{completed.stderr}")
        manifest.parent.mkdir(parents=True, exist_ok=True)
        for name in ("partial_parse.msgpack", "manifest.json"):
            if (scratch / name).exists():
                os.replace(scratch / name, manifest.parent / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


_WHEN_IT_FAILS = {
    "error": "Blocking: when it fails, the layers after this one do not run and the serving "
    "snapshot stays as it was; the result gives the number of failing rows. Fix the input data "
    "(or the model, if the rule is right and the SQL wrong), then re-run.",
    "warn": "Warns without blocking: the run publishes, and the result gives the number of "
    "failing rows to look into.",
}


def describe_dbt_test(node: Mapping[str, Any], table: str) -> str:
    """What a dbt test protects, in words, and what to do when it fails."""
    if node.get("resource_type") == "unit_test":
        what = node.get("description") or (
            f"Unit test {node.get('name')}: the model's SQL turns hand-written input rows into "
            "exactly the expected rows."
        )
        return (
            f"{what} It runs on fixtures, not on the warehouse: a failure means the model's "
            "logic changed; fix the SQL or, if the change is intended, the expected rows."
        )
    meta = node.get("test_metadata") or {}
    kwargs = meta.get("kwargs") or {}
    column = kwargs.get("column_name") or node.get("column_name")
    name = meta.get("name")
    if node.get("description"):
        what = node["description"]
    elif name == "not_null":
        what = f"`{column}` is never null in {table}."
    elif name == "unique":
        what = f"`{column}` is unique in {table}: one row per value."
    elif name == "accepted_values":
        values = ", ".join(str(v) for v in kwargs.get("values") or [])
        what = f"`{column}` of {table} only takes the values: {values}."
    elif name == "relationships":
        what = (
            f"Every `{column}` of {table} exists in `{kwargs.get('field')}` of the referenced "
            "model (no orphan rows)."
        )
    elif name:
        shown = {k: v for k, v in kwargs.items() if k != "model" and not str(v).startswith("{{")}
        args = ", ".join(f"{k}={v}" for k, v in shown.items())
        what = f"`{meta.get('namespace') + '.' if meta.get('namespace') else ''}{name}`"
        what += f"({args}) holds on {table}."
    else:
        what = f"The query in {node.get('original_file_path')} returns no rows for {table}."
    severity = str((node.get("config") or {}).get("severity") or "error").lower()
    return f"{what} {_WHEN_IT_FAILS.get(severity, _WHEN_IT_FAILS['error'])}"


class MicrosegTranslator(DagsterDbtTranslator):
    """Keys are [layer, model] and groups the layer, from the model's meta.layer."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] != "model":
            return super().get_asset_key(dbt_resource_props)
        return layer_key(model_layer(dbt_resource_props), dbt_resource_props["name"])

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        # The model's own description and where its code is; not the raw SQL
        props = dbt_resource_props
        text = props.get("description") or f"dbt {props['resource_type']} {props['name']}"
        path = props.get("original_file_path")
        return f"{text}\n\nCode: dbt_project/{path}" if path else text

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] != "model":
            return super().get_group_name(dbt_resource_props)
        return model_layer(dbt_resource_props)

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None:
            return None
        node = manifest.get("nodes", {}).get(unique_id) or manifest.get("unit_tests", {}).get(
            unique_id, {}
        )
        table = asset_spec.metadata.get(TABLE_NAME) or asset_spec.key.to_user_string()
        return spec._replace(description=describe_dbt_test(node, table))

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] != "model":
            return spec
        # The relation analysts query (schema.table), whatever the warehouse file is called.
        spec = spec.replace_attributes(
            metadata={**spec.metadata, TABLE_NAME: f"{props['schema']}.{props['name']}"}
        )
        # Everything built from events waits until pending erasures are applied.
        if model_layer(props) in AFTER_ERASURE_LAYERS:
            return spec.merge_attributes(deps=[ERASURE_KEY])
        return spec


translator = MicrosegTranslator(
    settings=DagsterDbtTranslatorSettings(
        enable_asset_checks=True, enable_source_tests_as_checks=True
    )
)


def _dbt_vars(warehouse: WarehouseResource) -> str:
    with warehouse.connect() as con:
        as_of = warehouse.resolve_as_of(con)
    return json.dumps({"as_of": as_of.isoformat(), "retention_days": warehouse.retention_days})


def _with_row_counts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, events: Iterator[Any]
) -> Iterator[Any]:
    """The dbt events, each built table's Output with its `dagster/row_count`.

    dbt holds the warehouse file while it runs, so the outputs of tables wait until it exits
    (also when it fails: what was built is still reported). Views are not counted: counting one
    runs its query (dagster-dbt's fetch_row_counts makes the same choice)."""
    held: list[dg.Output] = []
    failure: Exception | None = None
    try:
        for event in events:
            if isinstance(event, dg.Output):
                # views wait too: outputs go out in dbt's order, a view after the tables it reads
                held.append(event)
                continue
            yield event
    except Exception as exc:  # re-raised once the built tables are reported
        failure = exc
    if held:
        with warehouse.connect() as con:
            for event in held:
                key = context.asset_key_for_output(event.output_name)
                spec = context.assets_def.specs_by_key[key]
                if spec.metadata.get("dagster-dbt/materialization_type") == "view":
                    yield event
                    continue
                table = spec.metadata[TABLE_NAME]
                extra = TABLE_EXTRA_METADATA.get(table)
                yield event.with_metadata(
                    {
                        **event.metadata,
                        **table_metadata(con, table),
                        **(extra(con) if extra else {}),
                    }
                )
    if failure is not None:
        raise failure


def _layer_assets(layer: str, select: str, exclude: str | None, manifest: Path):
    @dbt_assets(
        manifest=manifest,
        select=select,
        exclude=exclude,
        name=f"dbt_{layer}",
        project=dbt_project,
        dagster_dbt_translator=translator,
    )
    def _assets(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
    ):
        # A private target folder per invocation, removed afterwards: dagster-dbt would otherwise
        # leave one folder per run and layer under dbt_project/target. dbt's partial-parse state
        # is carried from one invocation to the next beside the warehouse (one writer holds it),
        # so the layers after the first skip a full parse; dbt itself re-parses what changed.
        parse_state = Path(warehouse.path).parent / ".dbt_partial_parse.msgpack"
        with tempfile.TemporaryDirectory(prefix=f"dbt-{layer}-") as target:
            state = Path(target) / "partial_parse.msgpack"
            if parse_state.exists():
                shutil.copyfile(parse_state, state)
            yield from _with_row_counts(
                context,
                warehouse,
                dbt.cli(
                    ["build", "--vars", _dbt_vars(warehouse)],
                    context=context,
                    target_path=Path(target),
                ).stream(),
            )
            if state.exists():
                shutil.copyfile(state, parse_state.with_suffix(".tmp"))
                os.replace(parse_state.with_suffix(".tmp"), parse_state)

    return _assets


def _selection(layers: tuple[str, ...]) -> str:
    return " ".join(f"config.meta.layer:{layer}" for layer in layers)


def build_dbt_assets(dbt_executable: str) -> list[dg.AssetsDefinition]:
    manifest = ensure_manifest(dbt_executable)
    assets = [_layer_assets(step, _selection(layers), None, manifest) for step, layers in DBT_STEPS]
    # ordered, not a set: the selection is part of the job snapshot, which must not vary by process
    covered = tuple(layer for _, layers in DBT_STEPS for layer in layers)
    models = json.loads(manifest.read_text())["nodes"].values()
    if any(n["resource_type"] == "model" and model_layer(n) not in covered for n in models):
        assets.append(_layer_assets("rest", "fqn:*", _selection(covered), manifest))
    return assets


def source_column_schemas(dbt_executable: str) -> dict[str, dg.TableSchema]:
    """schema.table -> its documented columns, for tables Python writes and dbt declares as
    sources (raw, identity rules and matches, scores, segments, model runs)."""
    manifest = json.loads(ensure_manifest(dbt_executable).read_text())
    schemas: dict[str, dg.TableSchema] = {}
    for source in manifest["sources"].values():
        columns = [
            dg.TableColumn(
                name=c["name"], type=c.get("data_type") or "?", description=c.get("description")
            )
            for c in source.get("columns", {}).values()
        ]
        if columns:
            schemas[f"{source['schema']}.{source['name']}"] = dg.TableSchema(columns=columns)
    return schemas
