"""The Definitions load, every table is an asset behind a gate, and automation is wired."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration.defs.automation import (
    MAX_ATTEMPTS,
    RETRY_WAIT_S,
    landing_fingerprint,
    landing_sensor_tick,
)
from orchestration.settings import load_settings


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    from orchestration.definitions import build_definitions

    root = tmp_path_factory.mktemp("defs")
    env = {
        "MICROSEG_WAREHOUSE": str(root / "warehouse.duckdb"),
        "MICROSEG_LANDING_DIR": str(root / "landing"),
        "MICROSEG_HMAC_KEY": "test-key",
        "DAGSTER_HOME": str(root / "dagster_home"),
    }
    return build_definitions(load_settings(env))


def test_every_documented_table_is_an_asset(defs):
    from orchestration.defs.layers import table_keys
    from tests.integration.conftest import DOCUMENTED_TABLES

    tables = table_keys(defs.assets)
    raw = {f"raw.{s}" for s in ("crm", "pos", "web", "consent", "privacy", "campaigns")}
    assert DOCUMENTED_TABLES | raw <= set(tables)
    assert tables["marts.identity_map"] == dg.AssetKey(["identity", "identity_map"])
    assert tables["marts.customer_scores"] == dg.AssetKey(["models", "customer_scores"])
    keys = {"/".join(k.path) for k in defs.resolve_all_asset_keys()}
    assert {"publish/serving_snapshot", "publish/activation_exports", "privacy/erasure"} <= keys


def test_groups_are_the_layers_and_depend_on_each_other_in_flow_order(defs):
    from orchestration.defs.layers import LAYERS

    graph = defs.resolve_asset_graph()
    order = {layer: i for i, layer in enumerate(LAYERS)}
    group_edges = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name in LAYERS, key
        assert key.path[0] == node.group_name, key  # the key prefix is the group
        for parent in node.parent_keys:
            assert graph.has(parent), (key, parent)  # no dangling dependency
            group_edges.add((graph.get(parent).group_name, node.group_name))
    backwards = {(a, b) for a, b in group_edges if order[a] > order[b]}
    assert not backwards, backwards
    # each layer feeds the next: the groups form one chain, left to right
    assert {(a, b) for a, b in group_edges if order[b] == order[a] + 1} == {
        (a, b) for a, b in zip(LAYERS, list(LAYERS)[1:], strict=False)
    }


def test_gates_are_blocking_and_cover_each_layer(defs):
    graph = defs.resolve_asset_graph()
    gx = {k for k in graph.asset_check_keys if k.name.startswith("gx_")}
    gated = {"/".join(k.asset_key.path) for k in gx}
    for table in (
        "raw/pos",
        "staging/stg_web__events",
        "identity/customer_profiles",
        "features/customer_features",
        "models/customer_scores",
        "segments/segment_members",
    ):
        assert table in gated
    assert all(graph.get_check_spec(k).blocking for k in gx)
    # dbt tests become asset checks too.
    assert len(graph.asset_check_keys) > len(gx) + 20


def test_each_dbt_model_is_built_by_exactly_one_layer(defs):
    graph = defs.resolve_asset_graph()
    dbt_keys = [
        k
        for k in graph.get_all_asset_keys()
        if graph.get(k).is_materializable
        and graph.get(k).assets_def.node_def.name.startswith("dbt_")
    ]
    owners = {k: graph.get(k).assets_def.node_def.name for k in dbt_keys}
    assert len(owners) == len(set(dbt_keys)) > 30
    assert owners[dg.AssetKey(["staging", "stg_pos__transaction_lines"])] == "dbt_staging"
    assert owners[dg.AssetKey(["identity", "identity_map"])] == "dbt_identity"
    assert owners[dg.AssetKey(["privacy", "int_privacy_requests_resolved"])] == "dbt_identity"
    assert owners[dg.AssetKey(["features", "customer_features"])] == "dbt_features"
    assert owners[dg.AssetKey(["segments", "campaign_performance"])] == "dbt_rest"


def test_schedule_and_sensor(defs):
    schedule = defs.resolve_schedule_def("daily_refresh")
    sensor = defs.resolve_sensor_def("landing_zone_sensor")
    assert schedule.cron_schedule == "0 6 * * *"
    assert sensor.job_name == "refresh"
    # on as soon as `make ui` starts the daemon
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def _record_run(instance: dg.DagsterInstance, run_key: str, status: dg.DagsterRunStatus) -> None:
    instance.add_run(
        dg.DagsterRun(
            job_name="refresh",
            run_id=f"run-{run_key.replace(':', '-')}",
            status=status,
            tags={"dagster/run_key": run_key},
        )
    )


def test_sensor_retries_a_failed_run_and_advances_only_on_success():
    instance = dg.DagsterInstance.ephemeral()
    request, cursor = landing_sensor_tick("fp1", None, instance, now=0)
    assert isinstance(request, dg.RunRequest) and request.run_key == "fp1:1"
    # not yet launched, then still going: wait, request nothing
    waiting, cursor = landing_sensor_tick("fp1", cursor, instance, now=10)
    assert isinstance(waiting, dg.SkipReason) and "waiting" in waiting.skip_message
    _record_run(instance, "fp1:1", dg.DagsterRunStatus.STARTED)
    waiting, cursor = landing_sensor_tick("fp1", cursor, instance, now=20)
    assert isinstance(waiting, dg.SkipReason) and "waiting for run" in waiting.skip_message
    # it failed: the same files are requested again under a new key, after a wait
    instance.report_run_failed(instance.get_run_by_id("run-fp1-1"))
    early, cursor = landing_sensor_tick("fp1", cursor, instance, now=30)
    assert isinstance(early, dg.SkipReason) and "trying again" in early.skip_message
    retry, cursor = landing_sensor_tick("fp1", cursor, instance, now=30 + RETRY_WAIT_S[1])
    assert isinstance(retry, dg.RunRequest) and retry.run_key == "fp1:2"
    _record_run(instance, "fp1:2", dg.DagsterRunStatus.SUCCESS)
    done, cursor = landing_sensor_tick("fp1", cursor, instance, now=1000)
    assert isinstance(done, dg.SkipReason) and "no new" in done.skip_message
    # new files after a success start again at attempt 1
    request, cursor = landing_sensor_tick("fp2", cursor, instance, now=1010)
    assert isinstance(request, dg.RunRequest) and request.run_key == "fp2:1"


def test_sensor_stops_retrying_files_that_keep_failing_until_they_change():
    instance = dg.DagsterInstance.ephemeral()
    cursor, now = None, 0.0
    keys = []
    for _ in range(10):
        result, cursor = landing_sensor_tick("bad", cursor, instance, now=now)
        if isinstance(result, dg.RunRequest):
            keys.append(result.run_key)
            _record_run(instance, result.run_key, dg.DagsterRunStatus.FAILURE)
        now += 3600
    assert keys == [f"bad:{n}" for n in range(1, MAX_ATTEMPTS + 1)]
    assert "fix or replace" in result.skip_message
    # a run that never shows up in the instance counts as failed once the grace period is over
    fixed, cursor = landing_sensor_tick("fixed", cursor, instance, now=now)
    assert isinstance(fixed, dg.RunRequest) and fixed.run_key == "fixed:1"
    lost, cursor = landing_sensor_tick("fixed", cursor, instance, now=now + 10_000)
    assert isinstance(lost, dg.SkipReason) and "trying again" in lost.skip_message


def test_landing_fingerprint_sees_new_and_changed_files_only(tmp_path):
    (tmp_path / "pos").mkdir()
    empty = landing_fingerprint(tmp_path)
    (tmp_path / "pos" / "_partial.csv").write_text("x")
    (tmp_path / "pos" / "day1.csv.part").write_text("x")
    assert landing_fingerprint(tmp_path) == empty
    (tmp_path / "pos" / "day1.csv").write_text("transaction_id\n1\n")
    first = landing_fingerprint(tmp_path)
    assert first != empty and landing_fingerprint(tmp_path) == first
    (tmp_path / "pos" / "day1.csv").write_text("transaction_id\n1\n2\n")
    assert landing_fingerprint(tmp_path) != first


def test_assets_have_owners_layer_tags_pii_flags_and_no_raw_sql(defs):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners, key
        assert node.tags.get("layer") == node.group_name, key
        assert "Raw SQL" not in (node.description or ""), key
    pii = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).tags.get("pii")}
    # clear emails and source keys are PII; the served segment tables hold neither
    assert {"raw/crm", "identity/customer_profiles", "identity/identity_map"} <= pii
    assert not pii & {"segments/segment_summary", "models/customer_scores"}


def test_instance_config_turns_off_the_ui_pop_up_and_keeps_what_the_user_set(tmp_path):
    import yaml

    from orchestration.runner import ensure_instance_config

    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    config = yaml.safe_load(ensure_instance_config(tmp_path).read_text())
    assert config == {"telemetry": {"enabled": True}, "nux": {"enabled": False}}
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.nux_enabled is False
