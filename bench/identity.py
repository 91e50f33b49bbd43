"""Identity-resolution benchmark: 1M generated customers (CRM records plus the POS and web
identifiers), timed per stage with peak memory, judged against ground truth; plus a Splink-only
run on the same CRM records for comparison.

    .venv/bin/python -m bench.identity [--customers N] [--seed S] [--memory-limit 12GB]

The landing zone is generated once and cached under data/bench/landing-<N>-<seed>-v<generator
version>; the warehouse is rebuilt every run. Results are printed and written to
data/bench/identity-<N>.json, with the dbt identity layer's time per model and test (dbt's
run_results.json) and CPU seconds per stage (steadier than wall time when others share the cores).

To profile the identity layer alone: save the warehouse as it is right before it once
(--snapshot-before-identity PATH), then re-run only the layer and the evaluation on a fresh copy
of it as often as needed (--from-snapshot PATH; written to identity-<N>-from-snapshot.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

from bench import landing_dir
from bench.splink_baseline import splink_baseline_identity_map

REPO_ROOT = Path(__file__).resolve().parent.parent
IDENTITY_SOURCES = ("crm", "pos", "web", "consent")
STAGING_MODELS = "stg_crm__customers stg_pos__transaction_lines stg_web__events stg_consent__events"
AS_OF_SQL = (
    "select max(d) from (select max(transacted_at)::date as d from raw.pos "
    "union all select max(event_at)::date from raw.web)"
)
IDENTITY_MODELS = (
    "path:models/intermediate/identity identity_map customer_profiles identity_cuts "
    "person_id_lineage"
)


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _node_timings(target: Path) -> dict[str, float]:
    """Seconds per model (largest first) and for all tests together, from dbt's run results."""
    results = json.loads((target / "target" / "run_results.json").read_text())["results"]
    models = sorted(
        ((r["unique_id"].split(".")[-1], r["execution_time"]) for r in results
         if r["unique_id"].startswith("model.")),
        key=lambda item: -item[1],
    )  # fmt: skip
    timings = {name: round(seconds, 1) for name, seconds in models}
    timings["(tests)"] = round(
        sum(r["execution_time"] for r in results if r["unique_id"].startswith("test.")), 1
    )
    return timings


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux; dbt runs in this process (dbtRunner), so self covers it
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def _dbt(select: str, target: Path, as_of: str) -> None:
    from dbt.cli.main import dbtRunner

    project = REPO_ROOT / "dbt_project"
    result = dbtRunner().invoke(
        [
            "build",
            "--select",
            *select.split(),
            "--exclude",
            "test_type:unit",
            "--vars",
            json.dumps({"as_of": as_of}),
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target-path",
            str(target / "target"),
            "--log-path",
            str(target / "logs"),
            "--quiet",
        ]
    )
    if not result.success:
        failures = [
            f"{r.node.name}: {r.status} {r.message}"
            for r in (result.result or [])
            if str(r.status) not in ("success", "pass")
        ]
        raise RuntimeError(f"dbt build failed: {result.exception or failures}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--memory-limit", default="12GB", help="DuckDB memory_limit")
    parser.add_argument("--skip-splink-only", action="store_true")
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "data" / "bench")
    parser.add_argument("--landing", type=Path, help="an existing landing zone to use")
    parser.add_argument(
        "--snapshot-before-identity",
        type=Path,
        metavar="PATH",
        help="copy the warehouse here right before the dbt identity layer",
    )
    parser.add_argument(
        "--from-snapshot",
        type=Path,
        metavar="PATH",
        help="skip ingest, staging and Splink: run the identity layer on a copy of this snapshot",
    )
    args = parser.parse_args(argv)

    root = args.root
    landing = args.landing or landing_dir(root, args.customers, args.seed)
    work = root / (f"run-{args.customers}" + ("-from-snapshot" if args.from_snapshot else ""))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    warehouse = work / "warehouse.duckdb"
    env = {
        "MICROSEG_LANDING_DIR": str(landing),
        "MICROSEG_WAREHOUSE": str(warehouse),
        "MICROSEG_HMAC_KEY": os.environ.get("MICROSEG_HMAC_KEY") or "bench-key",
    }
    os.environ.update(env)

    from ml import identity_eval, matching
    from orchestration.settings import load_settings
    from synthetic import generate
    from warehouse.connection import configure_connection
    from warehouse.ingest import ensure_raw_schema, load_source

    settings = load_settings()
    settings.export_to_process()
    stages: dict[str, dict] = {}
    started = time.perf_counter()

    cpu_started = [_cpu_seconds()]

    def stage(name: str, t0: float, **extra) -> None:
        cpu = _cpu_seconds()
        stages[name] = {"seconds": round(time.perf_counter() - t0, 1),
                        "cpu_seconds": round(cpu - cpu_started[0], 1),
                        "peak_rss_mib": _peak_rss_mib(), **extra}  # fmt: skip
        cpu_started[0] = cpu
        print(f"{name:<22} {stages[name]}", flush=True)

    if not args.from_snapshot and not (landing / "_truth" / "identity.csv").exists():
        t0 = time.perf_counter()
        summary = generate(landing, customers=args.customers, days=args.days, seed=args.seed)
        stage("generate (cached)", t0, rows=summary["rows"])

    import duckdb

    def connect() -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(warehouse))
        configure_connection(con, settings.hmac_key.encode(), settings.phone_region)
        con.execute("set memory_limit = ?", [args.memory_limit])
        return con

    pipeline_start = time.perf_counter()
    if args.from_snapshot:
        shutil.copyfile(args.from_snapshot, warehouse)
        with connect() as con:
            as_of = con.execute(AS_OF_SQL).fetchall()[0][0] or settings.as_of or _today()
        cpu_started[0] = _cpu_seconds()
    else:
        t0 = time.perf_counter()
        with connect() as con:
            ensure_raw_schema(con)
            rows = {}
            for source in IDENTITY_SOURCES:
                result = load_source(con, source, str(landing), settings.as_of or _today())
                rows[source] = result.rows_loaded
            as_of = con.execute(AS_OF_SQL).fetchall()[0][0] or settings.as_of or _today()
        stage("ingest crm/pos/web/consent", t0, rows=rows)

        t0 = time.perf_counter()
        _dbt(STAGING_MODELS, work, as_of.isoformat())
        stage("dbt staging", t0)

        t0 = time.perf_counter()
        with connect() as con:
            matching.write_overrides(con, None)
            matching.write_identity_parameters(
                con,
                max_cluster_size=settings.identity_max_cluster_size,
                max_values_per_type=settings.identity_max_values_per_type,
                match_threshold=settings.identity_match_threshold,
            )
            match = matching.match_records(
                con, threshold=settings.identity_match_threshold, retrain=True, as_of=as_of
            )
        stage("splink matching", t0, **{k: v for k, v in match.as_metadata().items()
                                       if k in ("records", "edges", "timings_s")})  # fmt: skip
        if args.snapshot_before_identity:
            with connect() as con:
                con.execute("checkpoint")
            args.snapshot_before_identity.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(warehouse, args.snapshot_before_identity)

    t0 = time.perf_counter()
    _dbt(IDENTITY_MODELS, work, as_of.isoformat())
    stage("dbt identity layer", t0, models=_node_timings(work))
    pipeline_seconds = round(time.perf_counter() - pipeline_start, 1)

    t0 = time.perf_counter()
    with connect() as con:
        outcome = identity_eval.evaluate_identity_map(
            con, landing / "_truth" / "identity.csv", as_of
        )
        graph = con.execute(
            "select (select count(*) from marts.identity_map), "
            "(select count(distinct person_id) from marts.identity_map), "
            "(select count(*) from marts.identity_cuts), "
            "(select count(*) from intermediate.int_identity_edges_weighted)"
        ).fetchall()[0]
    stage("evaluation", t0)

    splink_only = None
    if not args.skip_splink_only:
        t0 = time.perf_counter()
        with connect() as con:
            timings = splink_baseline_identity_map(
                con, "main.splink_only_map", threshold=settings.identity_match_threshold
            )
            identity_eval.load_truth(con, landing / "_truth" / "identity.csv", "bench_truth")
            splink_only = identity_eval.evaluate(con, "main.splink_only_map", "bench_truth", "crm")
        stage("splink-only baseline", t0, **timings)

    report = {
        "customers": args.customers,
        "memory_limit": args.memory_limit,
        "cpus": os.cpu_count(),
        "stages": stages,
        "identity_pipeline_seconds": pipeline_seconds,
        "total_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mib": _peak_rss_mib(),
        "graph": dict(zip(["records", "persons", "cut_edges", "edges"], graph, strict=True)),
        "ours": outcome["scopes"],
        "splink_only_crm": splink_only,
    }
    out = root / (
        f"identity-{args.customers}" + ("-from-snapshot" if args.from_snapshot else "") + ".json"
    )
    out.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))
    return report


def _today():
    from datetime import UTC, datetime

    return datetime.now(UTC).date()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
