"""The whole graph, materialised in-process on a temporary DuckDB, judged against ground truth."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from bench.truth import TRUTH_CTES, truth_params
from synthetic import generate
from tests.integration.conftest import DOCUMENTED_TABLES, pipeline_env, run_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    landing = root / "landing"
    generate(landing, customers=800, days=150, seed=7)
    outcome, settings = run_pipeline(root, landing)
    return {"outcome": outcome, "settings": settings, "landing": landing}


@pytest.fixture(scope="module")
def warehouse(pipeline):
    con = duckdb.connect(str(pipeline["settings"].warehouse), read_only=True)
    yield con
    con.close()


def _truth(landing: Path, name: str) -> list[dict]:
    with open(landing / "_truth" / name, newline="") as handle:
        return list(csv.DictReader(handle))


def test_run_publishes_with_every_check_passing(pipeline):
    outcome = pipeline["outcome"]
    assert outcome.step_failures == []
    assert outcome.failed_checks == []
    assert outcome.checks_passed >= 17  # one great-expectations gate per table at least
    assert outcome.published
    assert outcome.exit_code == 0


def test_quarantine_holds_exactly_the_injected_faults(pipeline, warehouse):
    faults = _truth(pipeline["landing"], "faults.csv")
    by_source: dict[str, int] = {}
    for fault in faults:
        by_source[fault["source"]] = by_source.get(fault["source"], 0) + 1
    assert faults, "the generator injects malformed rows for quarantine to catch"
    # Erasure requests in the demo data also remove the erased persons' quarantined rows.
    erased: dict[str, int] = {}
    for (detail,) in warehouse.execute(
        "select detail from audit.events where kind = 'erasure' and subject like 'batch:%'"
    ).fetchall():
        for table, rows in json.loads(detail)["tables"].items():
            erased[table] = erased.get(table, 0) + rows
    for source, expected in by_source.items():
        got = warehouse.execute(f"select count(*) from raw.{source}_quarantine").fetchone()[0]
        assert got + erased.get(f"raw.{source}_quarantine", 0) == expected, source


def test_known_profiles_match_ground_truth(pipeline, warehouse):
    persons = _truth(pipeline["landing"], "persons.csv")
    true_known = sum(p["is_known"].lower() in ("true", "1") for p in persons)
    known = warehouse.execute(
        "select count(*) from marts.customer_profiles where is_known"
    ).fetchone()[0]
    assert abs(known - true_known) <= 0.03 * true_known, (known, true_known)


def test_every_source_record_is_mapped(pipeline, warehouse):
    truth = _truth(pipeline["landing"], "identity.csv")
    crm_truth = {
        (r["source_system"], r["source_key"])
        for r in truth
        if r["source_system"] not in ("pos", "web")
    }
    crm_mapped = set(
        warehouse.execute(
            "select source_system, source_key from marts.identity_map "
            "where source_system not in ('pos', 'web') and person_id is not null"
        ).fetchall()
    )
    # Records quarantined at ingest are the only ones allowed to be missing.
    assert len(crm_truth - crm_mapped) <= len(_truth(pipeline["landing"], "faults.csv"))


def test_no_ad_segment_member_without_ad_targeting_consent(pipeline, warehouse):
    members = warehouse.execute(
        """
        select m.segment_id, m.person_id, p.consent_ad_targeting
        from marts.segment_members as m
        join marts.segment_definitions as d using (segment_id)
        join marts.customer_profiles as p using (person_id)
        where d.purpose = 'ad_targeting'
        """
    ).fetchall()
    assert members, "the demo data yields ad-targeting audiences"
    assert all(consented for _, _, consented in members)

    # Independently of the resolver's consent logic: a CRM id whose latest ad_targeting event is
    # a denial or revocation puts its person out of every ad audience.
    refused = {
        (row[0], row[1])
        for row in warehouse.execute(
            """
            select coalesce(source_system, 'crm'), subject_id from raw.consent
            where subject_type = 'crm_customer_id' and purpose = 'ad_targeting'
            qualify row_number() over (
                partition by coalesce(source_system, 'crm'), subject_id
                order by event_at desc, consent_event_id desc
            ) = 1 and status in ('denied', 'revoked')
            """
        ).fetchall()
    }
    assert refused
    refused_persons = {
        person
        for system, key, person in warehouse.execute(
            "select source_system, source_key, person_id from marts.identity_map"
        ).fetchall()
        if (system, key) in refused
    }
    ad_members = {person for _, person, _ in members}
    assert not (ad_members & refused_persons)


def test_serving_snapshot_has_tables_and_no_identifiers(pipeline):
    serving = duckdb.connect(str(pipeline["settings"].serving), read_only=True)
    try:
        tables = {
            f"{s}.{t}"
            for s, t in serving.execute(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
        }
        assert DOCUMENTED_TABLES <= tables
        crm_glob = str(pipeline["landing"] / "crm" / "**" / "*.csv")
        serving.execute(
            "create temp table landing_emails as select distinct lower(trim(email)) as email "
            "from read_csv(?, all_varchar = true, union_by_name = true) where email is not null",
            [crm_glob],
        )
        assert serving.execute("select count(*) from landing_emails").fetchone()[0] > 100
        varchar_columns = serving.execute(
            """
            select table_schema, table_name, column_name from information_schema.columns
            where data_type = 'VARCHAR' and table_schema in ('marts', 'ml')
            """
        ).fetchall()
        for schema, table, column in varchar_columns:
            hits = serving.execute(
                f'select count(*) from {schema}."{table}" '
                f'where lower(trim("{column}")) in (select email from landing_emails)'
            ).fetchone()[0]
            assert hits == 0, f"{schema}.{table}.{column} holds landing emails"
    finally:
        serving.close()


def test_segments_and_scores_exist(warehouse):
    persons = warehouse.execute("select count(*) from marts.customer_profiles").fetchone()[0]
    scored = warehouse.execute("select count(*) from marts.customer_scores").fetchone()[0]
    assert scored == warehouse.execute("select count(*) from marts.customer_features").fetchone()[0]
    assert scored == persons
    roc_auc = warehouse.execute(
        "select max(json_extract(metrics, '$.roc_auc')::double) from ml.model_runs "
        "where model_name like '%propensity%'"
    ).fetchone()[0]
    assert roc_auc is not None and roc_auc > 0.65
    sizes = dict(
        warehouse.execute("select segment_id, members from marts.segment_summary").fetchall()
    )
    assert sum(1 for v in sizes.values() if v > 0) >= 5


def test_failed_gate_stops_downstream_and_keeps_the_snapshot(pipeline, tmp_path):
    """A row that breaks a raw rule (as a faulty loader would write it) blocks the whole run."""
    source = pipeline["settings"]
    warehouse_copy = tmp_path / "warehouse.duckdb"
    serving_copy = tmp_path / "serving.duckdb"
    shutil.copy(source.warehouse, warehouse_copy)
    shutil.copy(source.serving, serving_copy)
    before = hashlib.sha256(serving_copy.read_bytes()).hexdigest()
    con = duckdb.connect(str(warehouse_copy))
    con.execute(
        "insert into raw.pos (transaction_id, line_number, transacted_at, quantity, unit_price, "
        "is_return, _file, _row_number, _loaded_at) values ('T-broken', 1, "
        "timestamp '2026-06-01 10:00:00', 1, -5.0, false, 'pos/broken.csv', 1, now())"
    )
    con.close()
    outcome, _ = run_pipeline(tmp_path, pipeline["landing"])
    assert outcome.exit_code == 1
    assert not outcome.published
    assert [(key, check) for key, check, _ in outcome.failed_checks] == [("raw/pos", "gx_pos")]
    assert "unit_price" in outcome.failed_checks[0][2]
    materialised = {
        "/".join(e.asset_key.path)
        for e in outcome.result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    assert "raw/pos" in materialised
    assert not materialised & {"staging/stg_pos__transaction_lines", "identity/customer_profiles"}
    assert hashlib.sha256(serving_copy.read_bytes()).hexdigest() == before


def test_activation_exports_are_consented_and_pseudonymous(pipeline, warehouse, tmp_path):
    import json

    from warehouse.activation import export_segments, verify_exports
    from warehouse.connection import configure_connection

    settings = pipeline["settings"]
    as_of = warehouse.execute("select max(as_of) from marts.segment_members").fetchone()[0]
    ad_segments = {
        s
        for (s,) in warehouse.execute(
            "select segment_id from marts.segment_summary s join marts.segment_definitions d "
            "using (segment_id) where d.purpose = 'ad_targeting' and s.published"
        ).fetchall()
    }
    manifests = {
        (m["segment_id"], m["platform"]): m
        for m in (
            json.loads(p.read_text())
            for p in settings.export_dir.glob(f"*/{as_of.isoformat()}/*/manifest.json")
        )
    }
    # every published ad segment has a Google and a Meta manifest: exported, or held back
    # below the platform's minimum audience
    assert ad_segments
    for segment in ad_segments:
        for platform in ("google", "meta"):
            manifest = manifests[(segment, platform)]
            minimum = settings.platform_min_audience[platform]
            assert manifest["status"] == (
                "exported" if manifest["audience_rows"] >= minimum else "below_minimum"
            )
    con = warehouse.cursor()  # configured as the pipeline's connections are
    configure_connection(con, settings.hmac_key.encode(), settings.phone_region)
    assert verify_exports(con, settings.export_dir, as_of) == []
    assert "exports_consented" not in {c for _, c, _ in pipeline["outcome"].failed_checks}
    # the same warehouse with a minimum audience of one: real files for every platform
    report = export_segments(con, tmp_path, as_of, {"google": 1, "meta": 1, "parquet": 1})
    statuses = {(s, p): v["status"] for s, r in report["segments"].items() for p, v in r.items()}
    assert {statuses[(s, "google")] for s in ad_segments} == {"exported"}
    assert verify_exports(con, tmp_path, as_of) == []
    emails = {
        e
        for (e,) in warehouse.execute(
            "select distinct email from marts.customer_profiles where email is not null"
        ).fetchall()
    }
    for folder in (settings.export_dir, tmp_path):
        for audience in folder.glob("*/*/*/*.csv"):
            text = audience.read_text()
            assert not any(e in text for e in list(emails)[:200])


def test_access_requests_are_answered_once_and_audited(pipeline, warehouse):
    import json

    settings = pipeline["settings"]
    requests = warehouse.execute(
        "select request_id, subject_type, subject_id from raw.privacy "
        "where lower(request_type) = 'access'"
    ).fetchall()
    assert requests
    explained = 0
    for request_id, subject_type, subject_id in requests:
        document = json.loads((settings.privacy_dir / "access" / f"{request_id}.json").read_text())
        assert document["request_id"] == request_id
        if subject_type == "email" and document["persons"]:
            emails = {p["profile"].get("email") for p in document["persons"]}
            assert subject_id.strip().lower() in emails
        for person in document["persons"]:
            # the logic of profiling: every segment's conditions for the person, and those they
            # are a member of held
            logic = {s["segment_id"]: s for s in person["segment_logic"]}
            assert set(logic) == set(INDEPENDENT)
            for membership in person["segments"]:
                assert logic[membership["segment_id"]]["meets_condition"]
            explained += 1
    audited = {
        s
        for (s,) in warehouse.execute(
            "select subject from audit.events where kind = 'access_request'"
        ).fetchall()
    }
    assert audited == {r[0] for r in requests}
    assert explained
    kinds = {k for (k,) in warehouse.execute("select distinct kind from audit.events").fetchall()}
    assert {"run", "export", "publish", "access_request"} <= kinds
    # each run is logged when it starts and when it ends, whatever its outcome
    runs = warehouse.execute(
        "select run_id, list(subject order by recorded_at) from audit.events "
        "where kind = 'run' group by run_id"
    ).fetchall()
    assert runs and all(events == ["started", "finished"] for _, events in runs)


UI_QUERY = """
query ($location: String!, $label: String!) {
  runsOrError(
    filter: {pipelineName: "refresh", tags: [{key: ".dagster/repository", value: $label}]}
  ) {
    ... on Runs { results { runId status pipelineSnapshotId } }
  }
  pipelineOrError(params: {pipelineName: "refresh", repositoryName: "__repository__",
                           repositoryLocationName: $location}) {
    ... on Pipeline { pipelineSnapshotId }
  }
  assetNodes {
    assetKey { path }
    groupName
    dependencyKeys { path }
    metadataEntries {
      label
      ... on TextMetadataEntry { text }
      ... on TableSchemaMetadataEntry { schema { columns { name description } } }
    }
    assetChecksOrError { ... on AssetChecks { checks { name description } } }
    assetMaterializations(limit: 1) {
      metadataEntries { label ... on IntMetadataEntry { intValue } }
    }
  }
}
"""


@pytest.fixture(scope="module")
def ui(pipeline):
    """What the Dagster UI reads (its GraphQL API) about the code location after the run."""
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    from orchestration.runner import code_location
    from orchestration.settings import REPO_ROOT

    location, module = code_location()
    root = pipeline["settings"].warehouse.parent
    with pytest.MonkeyPatch.context() as mp:
        # the code server the UI starts reads the same settings as the run
        for name, value in pipeline_env(root, pipeline["landing"]).items():
            mp.setenv(name, value)
        target = ModuleTarget(
            module_name=module, attribute=None, working_directory=str(REPO_ROOT),
            location_name=location,
        )  # fmt: skip
        with (
            dg.DagsterInstance.get() as instance,  # DAGSTER_HOME of the run
            WorkspaceProcessContext(instance, target) as workspace,
        ):
            result = execute_dagster_graphql(
                workspace.create_request_context(),
                UI_QUERY,
                {"location": location, "label": f"__repository__@{location}"},
            )
    assert not result.errors, result.errors
    return result.data


def test_the_clis_run_is_the_jobs_run_in_the_ui(pipeline, ui):
    runs = {r["runId"]: r for r in ui["runsOrError"]["results"]}
    run = runs[pipeline["outcome"].result.run_id]
    assert run["status"] == "SUCCESS"
    # the job as the code location serves it: re-executing from the UI runs the same version
    assert run["pipelineSnapshotId"] == ui["pipelineOrError"]["pipelineSnapshotId"]


def test_the_ui_shows_one_group_per_layer_in_flow_order(ui):
    from orchestration.defs.layers import LAYERS

    order = {layer: i for i, layer in enumerate(LAYERS)}
    group_of = {tuple(n["assetKey"]["path"]): n["groupName"] for n in ui["assetNodes"]}
    assert set(group_of.values()) == set(LAYERS)
    edges = {
        (group_of[tuple(d["path"])], n["groupName"])
        for n in ui["assetNodes"]
        for d in n["dependencyKeys"]
    }
    assert all(order[a] <= order[b] for a, b in edges), edges


def test_every_table_shows_its_row_count_in_the_ui(ui, warehouse):
    checked = 0
    for node in ui["assetNodes"]:
        definition = {e["label"]: e.get("text") for e in node["metadataEntries"]}
        table = definition.get("dagster/table_name")
        if table is None or definition.get("dagster-dbt/materialization_type") == "view":
            continue  # a view's count would run its query: not counted
        [materialization] = node["assetMaterializations"]
        latest = {e["label"]: e.get("intValue") for e in materialization["metadataEntries"]}
        schema, name = table.split(".")
        (count,) = warehouse.execute(f'select count(*) from "{schema}"."{name}"').fetchone()
        recorded = latest.get("dagster/row_count")
        if node["groupName"] in ("raw", "staging", "identity", "privacy"):
            # built before the run's erasures, which then delete the erased persons' rows
            assert recorded is not None and recorded >= count, (node["assetKey"], table)
        else:
            assert recorded == count, (node["assetKey"], table)
        checked += 1
    assert checked >= 40


def test_every_check_says_what_it_protects(ui):
    checks = [
        (node["assetKey"]["path"], check)
        for node in ui["assetNodes"]
        for check in node["assetChecksOrError"].get("checks", [])
    ]
    assert len(checks) > 150
    vague = [(key, c["name"]) for key, c in checks if len(c["description"] or "") < 40]
    assert not vague, vague


def test_every_served_and_raw_column_is_described_in_the_ui(ui, warehouse):
    described = {}
    for node in ui["assetNodes"]:
        entries = {e["label"]: e for e in node["metadataEntries"]}
        table = (entries.get("dagster/table_name") or {}).get("text")
        if table and table.split(".")[0] in ("raw", "marts", "ml"):
            columns = entries["dagster/column_schema"]["schema"]["columns"]
            described[table] = {c["name"] for c in columns if c["description"]}
    assert DOCUMENTED_TABLES <= set(described)
    for table, names in described.items():
        schema, name = table.split(".")
        actual = {
            c
            for (c,) in warehouse.execute(
                "select column_name from information_schema.columns "
                "where table_schema = ? and table_name = ?",
                [schema, name],
            ).fetchall()
        }
        assert actual - names == set(), table


# Every shipped segment's condition, written again by hand over the raw events, the identity map
# and the marts: the compiled SQL must select exactly these persons (before consent and groups).
_EVENTS = """
    with bounds as (
        select cast(max(as_of) + 1 as timestamp) as e from marts.segment_attributes
    ),
    web as (
        select distinct on (w.event_id) m.person_id,
            -- a web order counts once however many purchase events carry it
            case
                when lower(trim(w.event_type)) = 'purchase'
                    and nullif(trim(w.order_id), '') is not null
                    then 'o' || trim(w.order_id)
                else 'w' || w.event_id
            end as k,
            lower(trim(w.event_type)) as t, lower(trim(w.device_type)) as dev,
            trim(w.session_id) as sess, w.event_at as ts, trim(w.sku) as sku
        from raw.web as w
        join marts.identity_map as m on m.source_system = 'web' and m.source_key = w.anonymous_id
        cross join bounds
        where w.event_at < bounds.e and m.person_id is not null
    ),
    pos as (
        select distinct m.person_id, 'p' || p.transaction_id as k,
            case when p.is_return then 'return' else 'purchase' end as t, null as dev,
            'p' || p.transaction_id as sess, p.transacted_at as ts, trim(p.sku) as sku
        from raw.pos as p
        join marts.identity_map as m
            on m.source_system = 'pos' and m.source_key = p.transaction_id
        cross join bounds
        where p.transacted_at < bounds.e and m.person_id is not null
    ),
    ev as (
        select ev.*, bounds.e from (select * from web union all select * from pos) as ev
        cross join bounds
    ),
    geo as (
        select p.person_id, g.urbanicity
        from marts.customer_profiles as p
        join staging.stg_enrichment__postcodes as g using (country, postcode)
    )
"""


def _n(event_type: str, days: int, extra: str = "") -> str:
    """Persons with their count of distinct events of a type in the last `days` days."""
    return (
        f"select person_id, count(distinct k) as n from ev where t = '{event_type}' "
        f"and ts >= e - interval {days} day {extra} group by person_id"
    )


INDEPENDENT = {
    "rfm_champions": "select person_id from marts.customer_scores where rfm_cell = 'champions'",
    "rfm_at_risk": "select person_id from marts.customer_scores where rfm_cell = 'at_risk'",
    "rfm_hibernating": "select person_id from marts.customer_scores where rfm_cell = 'hibernating'",
    "propensity_top_decile": "select person_id from marts.customer_scores "
    "where propensity_decile = 1",
    "new_customers_90d": "select person_id from marts.customer_features "
    "where tenure_days <= 90 and recency_days is not null",
    "mobile_first_browsers": "select person_id from marts.customer_features "
    "where (share_mobile >= 0.6 or share_app >= 0.6) and sessions_30d >= 2",
    "purchased_30d": f"select person_id from ({_n('purchase', 30)})",
    "email_engaged": f"select person_id from ({_n('email_click', 30)})",
    "lapsed_frequent_buyers": f"select person_id from ({_n('purchase', 365)}) where n >= 3 "
    f"except select person_id from ({_n('purchase', 90)})",
    "cart_abandoners_30d": f"select person_id from ({_n('add_to_cart', 30)}) "
    f"except select person_id from ({_n('purchase', 30)})",
    "high_intent_browsers": f"select person_id from ({_n('product_view', 30)}) where n >= 3 "
    f"except select person_id from ({_n('purchase', 30)})",
    "product_viewers_no_purchase_7d": "select person_id from ("
    + _n("product_view", 7, "and sku = 'SKU-10000'")
    + ") where n >= 3 except select person_id from ("
    + _n("purchase", 7, "and sku = 'SKU-10000'")
    + ")",
    "engaged_session_shoppers": """
        select distinct person_id from ev
        where ts >= e - interval 30 day and sess is not null
        group by person_id, sess
        having count(distinct k) filter (where t = 'product_view') >= 4
            and count(distinct k) filter (where t = 'add_to_cart') >= 3
    """,
    "urban_mobile_high_intent": f"""
        select person_id from geo where urbanicity = 'urban'
        intersect select person_id from ({
        _n("add_to_cart", 14, "and dev = 'mobile'").replace(
            "t = 'add_to_cart'", "t in ('add_to_cart', 'checkout_start')"
        )
    })
        intersect select person_id from marts.customer_scores where propensity_decile <= 3
    """,
    "suburban_desktop_cart_abandoners": f"""
        select person_id from geo where urbanicity = 'suburban'
        intersect select person_id from ({_n("add_to_cart", 14, "and dev = 'desktop'")})
        except select person_id from ({_n("purchase", 14)})
    """,
    **{
        f"lookalike_{pct}pct": "select person_id from marts.lookalike_scores "
        f"where lookalike_rank_pct < {pct / 100} and not is_lookalike_seed"
        for pct in (1, 2, 5, 10)
    },
    "lookalike_champions": "select person_id from marts.lookalike_scores "
    "where lookalike_rank_pct < 0.05 and not is_lookalike_seed "
    "except select person_id from marts.customer_scores where rfm_cell = 'champions'",
}


def test_each_shipped_segment_selects_what_an_independent_query_selects(warehouse):
    declared = {
        r[0]
        for r in warehouse.execute("select segment_id from marts.segment_definitions").fetchall()
    }
    assert declared == set(INDEPENDENT)
    non_empty = 0
    for segment_id, sql in INDEPENDENT.items():
        expected = {r[0] for r in warehouse.execute(_EVENTS + sql).fetchall()}
        got = {
            r[0]
            for r in warehouse.execute(
                "select person_id from intermediate.int_segment_matches_evaluated "
                "where segment_id = ?",
                [segment_id],
            ).fetchall()
        }
        assert got == expected, (segment_id, len(got), len(expected), sorted(got ^ expected)[:5])
        non_empty += bool(got)
    assert non_empty >= 10  # the demo data reaches most of them


def test_segment_tables_hold_consent_groups_and_statistics(warehouse):
    # members = eligible minus no consent minus the offers group, per segment
    rows = warehouse.execute(
        "select segment_id, eligible, excluded_no_consent, excluded_by_group, members "
        "from marts.segment_summary"
    ).fetchall()
    for segment_id, eligible, no_consent, by_group, members in rows:
        assert members == eligible - no_consent - by_group, segment_id
    both = warehouse.execute(
        "select count(*) from marts.segment_members a join marts.segment_members b "
        "using (person_id) where a.segment_id = 'cart_abandoners_30d' "
        "and b.segment_id = 'high_intent_browsers'"
    ).fetchone()[0]
    assert both == 0  # one offer per person
    lift = warehouse.execute("select count(*) from marts.segment_lift").fetchone()[0]
    published = warehouse.execute(
        "select count(*) from marts.segment_summary where published"
    ).fetchone()[0]
    assert lift == published


def test_sku_and_session_conditions_on_generated_data(pipeline, tmp_path):
    """The SKU and session examples with parameters the demo data surely reaches (its most
    viewed SKU of the week, two views and a cart add in one session), compiled and run on the
    warehouse, against the independent queries."""
    from warehouse.audiences import compile_audiences, load_audiences, render, write_audience_tables

    con = duckdb.connect()
    con.execute("attach ? as wh (read_only)", [str(pipeline["settings"].warehouse)])
    con.execute("use wh")
    sku = con.execute(
        _EVENTS
        + """
        select sku from ev
        where t = 'product_view' and ts >= e - interval 7 day and sku is not null
        group by sku order by count(*) desc, sku limit 1
        """
    ).fetchone()[0]
    (tmp_path / "variants.yml").write_text(
        f"""
segments:
  - id: sku_viewers
    name: SKU viewers
    purpose: analytics
    where:
      all:
        - event: {{type: product_view, sku: "{sku}", within_days: 7}}
        - none:
            - event: {{type: purchase, sku: "{sku}", within_days: 7}}
  - id: session_shoppers
    name: Session shoppers
    purpose: analytics
    where:
      session:
        within_days: 30
        events:
          - {{type: product_view, at_least: 2}}
          - {{type: add_to_cart}}
"""
    )
    audiences = load_audiences(tmp_path, root=tmp_path)
    compiled = compile_audiences(audiences)
    con.execute("use memory")
    write_audience_tables(con, audiences, compiled, 1, 0.0)
    con.execute("use wh")
    got = {}
    for seg, person in con.execute(
        "select segment_id, person_id from ("
        + render(
            compiled.matches_sql,
            attributes="marts.segment_attributes",
            events="marts.segment_events",
            conditions="memory.raw.audience_conditions",
            as_of="(select max(as_of) from marts.segment_attributes)",
        )
        + ")"
    ).fetchall():
        got.setdefault(seg, set()).add(person)
    only_sku = f"and sku = '{sku}'"
    expected_sku = {
        r[0]
        for r in con.execute(
            _EVENTS
            + f"select person_id from ({_n('product_view', 7, only_sku)}) "
            + f"except select person_id from ({_n('purchase', 7, only_sku)})"
        ).fetchall()
    }
    expected_session = {
        r[0]
        for r in con.execute(
            _EVENTS
            + """
            select distinct person_id from ev
            where ts >= e - interval 30 day and sess is not null
            group by person_id, sess
            having count(distinct k) filter (where t = 'product_view') >= 2
                and count(distinct k) filter (where t = 'add_to_cart') >= 1
            """
        ).fetchall()
    }
    assert expected_sku and expected_session
    assert got.get("sku_viewers", set()) == expected_sku
    assert got.get("session_shoppers", set()) == expected_session


def test_preview_and_explain_read_the_snapshot(pipeline, warehouse, capsys):
    """`segments preview` gives, from the snapshot, the sizes the run built; `segments explain`
    shows a member why, with the deciding values."""
    from orchestration import segments_command
    from orchestration.settings import load_settings

    settings = load_settings(pipeline_env(pipeline["settings"].warehouse.parent, Path("unused")))
    summary = {
        r[0]: r[1:]
        for r in warehouse.execute(
            "select segment_id, eligible, eligible - excluded_no_consent, members, "
            "holdout_members from marts.segment_summary"
        ).fetchall()
    }
    assert segments_command.preview(settings, settings.segments_dir / "intent.yml") == 0
    out = capsys.readouterr().out
    for segment_id in ("cart_abandoners_30d", "high_intent_browsers", "email_engaged"):
        eligible, consented, members, holdout = summary[segment_id]
        assert f"{segment_id}: {eligible} meet the condition, {consented} after consent" in out, out
        assert f"{members} after exclusive groups, {holdout} held out" in out
    assert "unnest(list_filter(" in out  # the compiled SQL
    person, segment_id = warehouse.execute(
        "select person_id, segment_id from marts.segment_members "
        "where segment_id = 'purchased_30d' order by rank limit 1"
    ).fetchone()
    assert segments_command.explain(settings, person) == 0
    out = capsys.readouterr().out
    assert f"{segment_id}: member" in out
    assert "[yes] at least 1 purchase event(s) in the last 30 days  (value:" in out


def test_lifetime_value_is_filled_and_ranks_next_purchases(pipeline, warehouse):
    """BG/NBD + Gamma-Gamma scores for every consented person (prospects get the documented
    prior), ranking who buys in the 30 days after as_of better than chance."""
    from sklearn.metrics import roc_auc_score

    landing = pipeline["landing"]
    missing = warehouse.execute(
        "select count(*) from marts.customer_scores s join marts.customer_profiles p "
        "using (person_id) where p.consent_analytics and (s.expected_transactions_90d is null "
        "or s.expected_transactions_365d is null or s.expected_spend_365d is null "
        "or s.probability_alive is null)"
    ).fetchone()[0]
    assert missing == 0
    rows = warehouse.execute(
        f"""
        with {TRUTH_CTES}
        select s.expected_transactions_90d, lower(p.purchased_30d) in ('true', '1')
        from marts.customer_scores s join mapped using (person_id)
        join persons p using (true_person_id)
        where s.expected_transactions_90d is not null
        """,
        truth_params(landing),
    ).fetchall()
    assert roc_auc_score([r[1] for r in rows], [r[0] for r in rows]) > 0.6
    run = warehouse.execute(
        "select status from ml.model_runs where model_name = 'customer_lifetime_value'"
    ).fetchall()
    assert run and run[-1][0] == "trained"


def test_propensity_calibrated_and_ranks_true_buyers(pipeline, warehouse):
    """The propensity back-test is calibrated and beats the base rate; against the generator's
    truth its scores rank the persons who buy in the 30 days after as_of."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    metrics = json.loads(
        warehouse.execute(
            "select metrics from ml.model_runs where model_name = 'purchase_propensity' "
            "order by trained_at desc limit 1"
        ).fetchone()[0]
    )
    assert metrics["status"] == "trained"
    rate = metrics["base_rate"]
    assert metrics["brier"] < rate * (1 - rate)  # better than predicting the base rate
    # calibrated in ranking: observed rates rise across the predicted deciles. Its level can
    # shift: the generator's campaigns add purchases in the last four weeks, inside the latest
    # cutoff's label window only, which no model of earlier cutoffs can know.
    observed = [row["observed_rate"] for row in metrics["calibration"]]
    rises = sum(b >= a for a, b in zip(observed, observed[1:], strict=False))
    assert rises >= 0.7 * (len(observed) - 1), observed
    assert observed[-1] - observed[0] > 0.3, observed
    assert sum(row["n"] for row in metrics["calibration"]) == metrics["backtest"]["test_rows"]
    assert metrics["permutation_importance"]
    landing = pipeline["landing"]
    rows = warehouse.execute(
        f"""
        with {TRUTH_CTES}
        select s.propensity_30d, lower(p.purchased_30d) in ('true', '1')
        from marts.customer_scores s join mapped using (person_id)
        join persons p using (true_person_id)
        where s.propensity_30d is not null
        """,
        truth_params(landing),
    ).fetchall()
    scores = [r[0] for r in rows]
    bought = [r[1] for r in rows]
    assert roc_auc_score(bought, scores) > 0.65
    # more skill than a constant at the model's own mean
    constant = [sum(scores) / len(scores)] * len(scores)
    assert brier_score_loss(bought, scores) < brier_score_loss(bought, constant)


def test_persona_clusters_follow_the_true_personas(pipeline, warehouse):
    """Clusters place only persons active enough, each cluster is a named persona, and the
    clusters agree with the generator's hidden personas well above chance (bench/clusters.py
    gives the figures beside the supervised ceiling)."""
    from bench.clusters import evaluate

    placed_inactive, personas, clusters = warehouse.execute(
        """
        select
            (select count(*) from marts.customer_scores s join ml.cluster_features f
                using (person_id) where s.cluster_id is not null and f.activity_events_365d < 5),
            (select count(*) from ml.cluster_personas),
            (select count(distinct cluster_id) from marts.customer_scores)
        """
    ).fetchone()
    assert placed_inactive == 0
    assert personas == clusters >= 3
    figures = evaluate(warehouse, Path(pipeline["landing"]))
    assert figures["placed_persons_with_truth"] >= 100
    # chance agreement is an ARI of 0
    assert figures["ari"] > 0.05, figures


def test_campaign_measurement_finds_the_generated_effects(pipeline, warehouse):
    """Each randomised campaign's lift over its control, measured on our own sales, against the
    generator's truth for the arms it drew. The six campaigns are judged together at a
    family-wise 5% (Bonferroni): every interval covers the lift the drawn arms have in
    expectation, no campaign without an effect is significant, and a true effect is significant
    wherever the arms have the power (0.8) to find it. Error rates over many draws against the
    true effect: tests/unit/test_campaign_measurement.py."""
    from ml.campaign_measurement import ALPHA, POWER, compare
    from ml.stats import power_two_proportions

    truth = {r["campaign_id"]: r for r in _truth(pipeline["landing"], "campaigns.csv")}
    rows = warehouse.execute(
        "select campaign_id, baseline, n_treatment, buyers_treatment, n_baseline, "
        "buyers_baseline, significant from marts.campaign_comparison where comparison = 'lift'"
    ).fetchall()
    measured = {r[0]: r for r in rows if r[0] in truth}
    assert set(measured) == set(truth)
    for campaign, t in truth.items():
        _, baseline, n_t, conv_t, n_c, conv_c, significant = measured[campaign]
        assert baseline == "control"
        # the arms the pipeline rebuilt from the public split are the generator's, up to
        # identity resolution
        assert abs(n_t - int(t["reached"])) <= 0.05 * int(t["reached"]), campaign
        assert abs(n_c - int(t["control"])) <= 0.05 * int(t["control"]), campaign
        wide = compare(conv_t, n_t, conv_c, n_c, alpha=ALPHA / len(truth))
        rate_c = float(t["expected_rate_control"])
        expected_lift = float(t["expected_rate_reached"]) / rate_c - 1.0
        low, high = wide["relative_lift_ci_low"], wide["relative_lift_ci_high"]
        assert low <= expected_lift <= high, campaign
        if float(t["true_uplift"]) == 1.0:
            assert wide["p_value"] >= ALPHA / len(truth), campaign
        elif power_two_proportions(rate_c, expected_lift, n_t, n_c, ALPHA) >= POWER:
            assert significant, campaign
    ab = warehouse.execute(
        "select campaign_id, baseline, significant from marts.campaign_comparison "
        "where comparison = 'ab' order by campaign_id"
    ).fetchall()
    assert [(a, b) for a, b, _ in ab] == [
        ("cmp_email_subject_a", "cmp_email_subject_b"),
        ("cmp_meta_creative_a", "cmp_meta_creative_b"),
    ]
    # two subject lines with the same true effect: no difference found
    assert ab[0][2] is False
