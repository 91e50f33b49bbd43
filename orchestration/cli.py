"""The `microseg` command: a thin front on the same Definitions the UI serves."""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_GATE_FAILED, EXIT_CANNOT_RUN = 0, 1, 2


def _cmd_generate(args: argparse.Namespace) -> int:
    from synthetic import generate

    started = time.monotonic()
    summary = generate(
        args.out,
        customers=args.customers,
        days=args.days,
        end_date=args.end_date,
        seed=args.seed,
    )
    print(
        f"wrote a landing zone to {Path(args.out).resolve()} in {time.monotonic() - started:.1f}s"
    )
    for key, value in summary.items():
        print(f"  {key}: {value}")
    return EXIT_OK


class _WarehouseLock:
    """An exclusive lock beside the warehouse: never two writers, and a clear refusal."""

    def __init__(self, warehouse: Path):
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        self.path = warehouse.with_name(warehouse.name + ".lock")
        self.handle = None

    def __enter__(self):
        self.handle = open(self.path, "a+")  # noqa: SIM115 - held for the run's lifetime
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _cmd_run(args: argparse.Namespace) -> int:
    from orchestration.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"microseg run: bad setting: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        lock = _WarehouseLock(settings.warehouse).__enter__()
    except BlockingIOError:
        print(
            f"microseg run: another run holds the warehouse {settings.warehouse}; "
            "wait for it to finish",
            file=sys.stderr,
        )
        return EXIT_CANNOT_RUN
    try:
        from orchestration.runner import run_refresh

        return run_refresh(settings)
    finally:
        lock.__exit__(None, None, None)


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
    gen.set_defaults(func=_cmd_generate)

    run = sub.add_parser("run", help="materialise every asset, gated, then publish the snapshot")
    run.set_defaults(func=_cmd_run)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
