"""The `microseg` command: a thin front on the same Definitions the UI serves."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_GATE_FAILED, EXIT_CANNOT_RUN = 0, 1, 2


def _cmd_generate(args: argparse.Namespace) -> int:
    from synthetic import generate

    started = time.monotonic()
    try:
        summary = generate(
            args.out,
            customers=args.customers,
            days=args.days,
            end_date=args.end_date,
            seed=args.seed,
            sources=[s.strip() for s in args.sources.split(",")] if args.sources else None,
        )
    except ValueError as exc:
        print(f"microseg generate: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(
        f"wrote a landing zone to {Path(args.out).resolve()} in {time.monotonic() - started:.1f}s"
    )
    for key, value in summary.items():
        print(f"  {key}: {value}")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from orchestration.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"microseg run: bad setting: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    from orchestration.defs.resources import WarehouseBusyError, WarehouseLock

    # Refuse at once (the run's own resource would wait); the run re-enters this same lock.
    lock = WarehouseLock(settings.warehouse, wait_s=0)
    try:
        lock.acquire()
    except WarehouseBusyError as exc:
        print(f"microseg run: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        from orchestration.runner import run_refresh

        return run_refresh(settings)
    finally:
        lock.release()


def _cmd_segments(args: argparse.Namespace) -> int:
    from orchestration.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"microseg segments: bad setting: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    from orchestration import segments_command

    if args.segments_command == "validate":
        return segments_command.validate(settings)
    if args.segments_command == "preview":
        return segments_command.preview(settings, args.file)
    return segments_command.explain(settings, args.person_id)


def _cmd_serve(args: argparse.Namespace) -> int:
    from orchestration.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"microseg serve: bad setting: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    from orchestration.api import ApiSettingsError, serve

    try:
        serve(settings)
    except ApiSettingsError as exc:
        print(f"microseg serve: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    parser = argparse.ArgumentParser(prog="microseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic landing zone with ground truth")
    gen.add_argument("--out", required=True, help="landing zone folder to write")
    gen.add_argument("--customers", type=int, default=5000)
    gen.add_argument("--days", type=int, default=180)
    gen.add_argument("--end-date", default="2026-06-30")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument(
        "--sources",
        help="comma-separated source folders to keep (default all: "
        "crm,pos,web,consent,privacy,campaigns,enrichment), e.g. --sources crm for a "
        "CRM-only zone",
    )
    gen.set_defaults(func=_cmd_generate)

    run = sub.add_parser("run", help="materialise every asset, gated, then publish the snapshot")
    run.set_defaults(func=_cmd_run)

    seg = sub.add_parser("segments", help="check, preview and explain the audience files")
    seg_sub = seg.add_subparsers(dest="segments_command", required=True)
    seg_sub.add_parser("validate", help="check every audience file (exit 1 when one is invalid)")
    prev = seg_sub.add_parser(
        "preview", help="sizes, overlaps and SQL of a file's segments on the serving snapshot"
    )
    prev.add_argument("file", type=Path)
    expl = seg_sub.add_parser("explain", help="why a person is or is not in each segment")
    expl.add_argument("person_id")
    seg.set_defaults(func=_cmd_segments)

    srv = sub.add_parser(
        "serve",
        help="the read-only membership API over the serving snapshot "
        "(MICROSEG_API_TOKEN, MICROSEG_API_HOST, MICROSEG_API_PORT)",
    )
    srv.set_defaults(func=_cmd_serve)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
