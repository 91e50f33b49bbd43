"""Whole-pipeline benchmark: the refresh job (every asset and check, as `microseg run` runs it)
over a generated landing zone at benchmark scale, timed per step with peak memory; then a second
run with no new files, the daily refresh's cost when nothing landed.

    .venv/bin/python -m bench.pipeline [--customers N] [--days D] [--seed S] [--no-rerun]

The landing zone is generated once and cached under data/bench/ (shared with bench.identity);
the warehouse, serving snapshot, exports and Dagster instance are rebuilt every run under
data/bench/pipeline-<N>/. Results are printed and written to data/bench/pipeline-<N>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench import landing_dir

REPO_ROOT = Path(__file__).resolve().parent.parent


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux; dbt and DuckDB run in this process
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def landing_zone(root: Path, customers: int, days: int, seed: int) -> Path:
    """The cached landing zone for these parameters and this generator version."""
    from synthetic import generate

    landing = landing_dir(root, customers, seed)
    if not (landing / "_truth" / "identity.csv").exists():
        t0 = time.perf_counter()
        generate(landing, customers=customers, days=days, seed=seed)
        print(f"generated {landing} in {time.perf_counter() - t0:.0f}s", flush=True)
    return landing


def step_timings(run_id: str) -> dict[str, float]:
    """Seconds per Dagster step (asset or multi-asset), from the instance's event log."""
    import dagster as dg

    start: dict[str, float] = {}
    spent: dict[str, float] = defaultdict(float)
    for entry in dg.DagsterInstance.get().all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        key = event.step_key
        if event.event_type_value == "STEP_START":
            start[key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and key in start:
            spent[key] += entry.timestamp - start.pop(key)
    return {k: round(v, 1) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}


def refresh(settings, log_path: Path) -> dict:
    from orchestration.runner import EXIT_OK, execute_refresh

    t0 = time.perf_counter()
    with open(log_path, "a") as log, contextlib.redirect_stdout(log):
        outcome = execute_refresh(settings)
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "ok": outcome.exit_code == EXIT_OK,
        "checks_passed": outcome.checks_passed,
        "checks_failed": [f"{k} {c}: {d[:200]}" for k, c, d in outcome.failed_checks],
        "step_failures": [f"{s}: {m[:200]}" for s, m in outcome.step_failures],
        "peak_rss_mib": _peak_rss_mib(),
        "steps_s": step_timings(outcome.result.run_id),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "data" / "bench")
    parser.add_argument("--landing", type=Path, help="an existing landing zone to use")
    parser.add_argument("--no-rerun", action="store_true", help="skip the no-new-files run")
    args = parser.parse_args(argv)

    root = args.root
    root.mkdir(parents=True, exist_ok=True)
    landing = args.landing or landing_zone(root, args.customers, args.days, args.seed)
    work = root / f"pipeline-{args.customers}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    os.environ.update(
        {
            "MICROSEG_LANDING_DIR": str(landing),
            "MICROSEG_WAREHOUSE": str(work / "warehouse.duckdb"),
            "MICROSEG_SERVING": str(work / "serving.duckdb"),
            "MICROSEG_EXPORT_DIR": str(work / "exports"),
            "MICROSEG_PRIVACY_DIR": str(work / "privacy"),
            "MICROSEG_MODEL_DIR": str(work / "models"),
            "MICROSEG_IDENTITY_OVERRIDES": str(work / "identity_overrides.csv"),
            "DAGSTER_HOME": str(work / "dagster_home"),
            "MICROSEG_HMAC_KEY": os.environ.get("MICROSEG_HMAC_KEY") or "bench-key",
        }
    )
    from orchestration.settings import load_settings

    settings = load_settings()
    log_path = work / "dbt.log"
    runs = {"first": refresh(settings, log_path)}
    print("first run", json.dumps({k: v for k, v in runs["first"].items() if k != "steps_s"}))
    if not args.no_rerun:
        runs["no_new_files"] = refresh(settings, log_path)
        print("re-run", json.dumps({k: v for k, v in runs["no_new_files"].items()
                                    if k != "steps_s"}))  # fmt: skip

    import duckdb

    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        sizes = dict(
            con.execute(
                "select 'raw.' || table_name, estimated_size from duckdb_tables() "
                "where schema_name = 'raw' and table_name in ('crm', 'pos', 'web', 'consent')"
            ).fetchall()
        )
        persons, known = con.execute(
            "select count(*), count(*) filter (where is_known) from marts.customer_profiles"
        ).fetchone()
    finally:
        con.close()
    report = {
        "customers": args.customers,
        "landing": str(landing),
        "cpus": os.cpu_count(),
        "rows": sizes,
        "persons": persons,
        "known_persons": known,
        "warehouse_mib": round((work / "warehouse.duckdb").stat().st_size / 2**20, 1),
        "runs": runs,
    }
    out = root / f"pipeline-{args.customers}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["runs"]["first"]["ok"] else 1)
