"""Segment build benchmark: every shipped audience file at benchmark scale.

    .venv/bin/python -m bench.segments [--persons N] [--web-events N] [--pos-lines N]

Writes, with seeded SQL (no Python loop over rows), the inputs the segment layer reads (profiles
with consents, features, scores, geo-demographics, attributed web events and POS lines, daily
purchases) into data/bench/segments-<N>/warehouse.duckdb, loads the shipped audience files and
runs `dbt build` on the segment models twice (two run dates, so history, KPIs and the holdouts
drawn at entry take their incremental path). Prints seconds per model and in all, and writes
data/bench/segments-<N>.json. Target: every shipped segment together in under 30 s at 1M persons
and 20M web events on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import duckdb

from warehouse.audiences import compile_audiences, load_audiences, write_audience_tables

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "dbt_project"
HMAC_KEY = "bench-key"
# the segment layer (its campaign model needs the campaigns staging) and the enrichment view
MODELS = ["stg_enrichment__postcodes", "path:models/segments", "--exclude", "campaign_performance"]

SEED_SQL = """
select setseed(0.42);
create schema raw; create schema marts; create schema intermediate;
create table marts.customer_profiles as
select
    'p' || i as person_id, i % 3 <> 0 as is_known,
    date '1950-01-01' + cast(floor(random() * 20000) as integer) as date_of_birth,
    'US' as country, lpad(cast(10000 + i % 5000 as varchar), 5, '0') as postcode,
    random() < 0.8 as consent_analytics, random() < 0.6 as consent_personalization,
    random() < 0.5 as consent_ad_targeting, random() < 0.1 as consent_third_party_sharing
from range($persons) t(i);
create table marts.customer_features as
select
    'p' || i as person_id, cast(null as date) as as_of,
    case when random() < 0.7 then cast(floor(random() * 400) as bigint) end as recency_days,
    cast(floor(random() * 12) as bigint) as frequency_365d, random() * 900 as monetary_365d,
    cast(floor(random() * 60) as bigint) as web_events_30d,
    cast(floor(random() * 800) as bigint) as tenure_days,
    (['home', 'toys', 'books'])[cast(1 + floor(random() * 3) as integer)] as top_category_365d,
    cast(floor(random() * 8) as bigint) as sessions_30d, random() as share_mobile,
    random() * 0.3 as share_app, cast(floor(random() * 5) as bigint) as cart_adds_30d,
    cast(floor(random() * 20) as bigint) as product_views_30d,
    cast(floor(random() * 3) as bigint) as email_clicks_30d
from range($persons) t(i);
create table marts.customer_scores as
select
    'p' || i as person_id, cast(null as date) as as_of, random() as propensity_30d,
    cast(1 + floor(random() * 10) as integer) as propensity_decile,
    (['champions', 'at_risk', 'hibernating', 'lost', 'no_purchase'])[
        cast(1 + floor(random() * 5) as integer)] as rfm_cell,
    random() * 500 as expected_spend_365d, 'bench' as propensity_model_version,
    cast(null as varchar) as cluster_model_version, 'bench' as clv_model_version
from range($persons) t(i);
create table marts.lookalike_scores as
select
    'p' || i as person_id, 'bench' as seed_segment, random() as lookalike_score,
    cast(i as double) / $persons as lookalike_rank_pct, false as is_lookalike_seed,
    cast(null as date) as as_of
from range($persons) t(i);
create table raw.enrichment as
select
    'US' as country, lpad(cast(10000 + i as varchar), 5, '0') as postcode,
    (['urban', 'suburban', 'rural'])[cast(1 + i % 3 as integer)] as urbanicity,
    50000.0 + i as median_household_income, 100.0 + i as population_density, 'bench' as provider,
    'bench.csv' as _file, cast(i as bigint) as _row_number, now()::timestamp as _loaded_at,
    cast(null as varchar) as _extra, cast(null as varchar) as _flags
from range(5000) t(i);
create table intermediate.int_web_events_attributed as
select
    'p' || cast(floor(random() * $persons) as bigint) as person_id, 'e' || i as event_id,
    timestamp '$as_of' - to_seconds(cast(floor(random() * 86400 * 180) as bigint))
        + interval 1 day as event_at,
    (['page_view', 'product_view', 'product_view', 'add_to_cart', 'checkout_start', 'purchase',
      'email_open', 'email_click', 'search', 'login'])[cast(1 + floor(random() * 10) as integer)]
        as event_type,
    's' || (i // 6) as session_id,
    (['mobile', 'desktop', 'tablet', 'app'])[cast(1 + floor(random() * 4) as integer)]
        as device_type,
    'SKU-' || cast(10000 + floor(random() * 2000) as integer) as sku, 'garden' as product_category,
    '/p/' || (i % 2000) as page_url, cast(20 as decimal(18, 2)) as revenue,
    'o' || (i // 3) as order_id
from range($web_events) t(i);
create table intermediate.int_pos_lines_attributed as
select
    'p' || cast(floor(random() * $persons) as bigint) as person_id,
    't' || (i // 3) as transaction_id,
    timestamp '$as_of' - to_seconds(cast(floor(random() * 86400 * 365) as bigint))
        + interval 1 day as transacted_at,
    random() < 0.03 as is_return, 'SKU-' || cast(10000 + floor(random() * 2000) as integer) as sku,
    'garden' as product_category, cast(12.5 as decimal(18, 2)) as line_amount
from range($pos_lines) t(i);
create table intermediate.int_customer_days_aggregated as
select
    person_id, cast(transacted_at as date) as activity_date, count(distinct transaction_id)
        as purchases, cast(sum(line_amount) as decimal(18, 2)) as pos_net_amount,
    cast(0 as decimal(18, 2)) as web_revenue
from intermediate.int_pos_lines_attributed
group by all;
"""


def _seed(path: Path, persons: int, web_events: int, pos_lines: int, as_of: str) -> None:
    sql = (
        SEED_SQL.replace("$persons", str(persons))
        .replace("$web_events", str(web_events))
        .replace("$pos_lines", str(pos_lines))
        .replace("$as_of", as_of)
    )
    con = duckdb.connect(str(path))
    try:
        con.execute(sql)
        audiences = load_audiences(REPO / "segments", root=REPO)
        write_audience_tables(con, audiences, compile_audiences(audiences), 50, 0.1)
    finally:
        con.close()


def _build(path: Path, target: Path, as_of: str) -> dict[str, float]:
    from dbt.cli.main import dbtRunner

    os.environ.update(
        {
            "MICROSEG_WAREHOUSE": str(path),
            "MICROSEG_HMAC_KEY": HMAC_KEY,
            "MICROSEG_REPO_ROOT": str(REPO),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
    )
    result = dbtRunner().invoke(
        [
            "run",
            "--quiet",
            "--project-dir", str(PROJECT),
            "--profiles-dir", str(PROJECT),
            "--target-path", str(target),
            "--log-path", str(target / "logs"),
            "--vars", json.dumps({"as_of": as_of}),
            "--select", *MODELS,
            "--threads", "1",
        ]
    )  # fmt: skip
    if not result.success:
        raise SystemExit(f"dbt failed: {result.exception}")
    return {r.node.name: round(r.execution_time, 2) for r in result.result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--web-events", type=int, default=20_000_000)
    parser.add_argument("--pos-lines", type=int, default=5_000_000)
    args = parser.parse_args()
    root = REPO / "data" / "bench" / f"segments-{args.persons}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    path = root / "warehouse.duckdb"
    t0 = time.perf_counter()
    _seed(path, args.persons, args.web_events, args.pos_lines, "2026-06-30")
    print(f"seeded inputs in {time.perf_counter() - t0:.0f}s", flush=True)
    report = {"persons": args.persons, "web_events": args.web_events, "pos_lines": args.pos_lines}
    for run, as_of in (("first_run", "2026-06-30"), ("next_day", "2026-07-01")):
        t0 = time.perf_counter()
        models = _build(path, root / "target", as_of)
        wall = round(time.perf_counter() - t0, 1)
        report[run] = {"wall_s": wall, "models_s": round(sum(models.values()), 1), **models}
        print(f"{run} ({as_of}): {wall}s wall, models {report[run]['models_s']}s", flush=True)
        for name, seconds in sorted(models.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<36} {seconds:>7.2f}s")
    con = duckdb.connect(str(path))  # dbt-duckdb keeps its own handle open in this process
    report["segments"] = dict(
        con.execute("select segment_id, members from marts.segment_summary order by 1").fetchall()
    )
    con.close()
    (root.parent / f"segments-{args.persons}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
