"""`generate`: a deterministic synthetic landing zone with ground truth under `_truth/`."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from synthetic import _vocab as V
from synthetic._activity import catalog, simulate, web_sessions, write_pos, write_web
from synthetic._campaigns import RUN_DAYS, add_campaign_purchases, assignment, campaign_truth
from synthetic._io import Sink
from synthetic._ledgers import write_campaigns, write_consent, write_enrichment, write_privacy
from synthetic._population import build_population, crm_records

# Bump whenever the same arguments would generate different data, so that caches of generated
# landing zones can tell versions apart. 2: Faker name vocabularies with census/SSA frequencies
# and a rare-surname tail; name and day/month birth-date swaps on secondary CRM records.
# 3: enrichment/geo_demographics.csv, the geo-demographics of every postcode a person can have.
GENERATOR_VERSION = 4
LARGE_RUN = 200_000  # customers from which files are Parquet and no faults are injected
SOURCES = ["crm", "pos", "web", "consent", "privacy", "campaigns", "enrichment"]


def _rng(seed: int, part: int) -> np.random.Generator:
    # one independent stream per part, so changing one part leaves the others' draws alone
    return np.random.default_rng([seed, part])


def generate(
    out: str | Path,
    customers: int = 5000,
    days: int = 180,
    end_date: str | date = "2026-06-30",
    seed: int = 42,
    sources: list[str] | tuple[str, ...] | None = None,
) -> dict:
    """Write a landing zone for `customers` true persons over `days` days ending on `end_date`.

    `sources` keeps only those source folders (default: all of `SOURCES`), as a company that
    has, say, only a CRM would land them; the data of the kept sources does not change, and the
    truth files list only the records and persons those sources hold.

    Output depends only on the arguments. Under `out/_truth/`: `identity.csv` (one row per CRM
    record, POS transaction and web device with its `true_person_id`), `persons.csv` and
    `faults.csv` (rows injected to break a quarantine rule; small runs only).

    `enrichment/geo_demographics.csv` (CSV in every run, no faults) holds the geo-demographics
    of every postcode a person can have, with its country: every CRM and web postcode is there;
    its values depend on the seed only, not on `customers` or `days`.

    A person `is_known` when identity resolution can know them: they have a CRM record, or any of
    their records carries an email, a phone or a loyalty card. Persons seen only through web
    devices (never logged in, never gave an email) or cash/payment-token purchases are not known.

    Returns a summary: the generator version, files and rows written per source, persons, known
    persons, faults.
    """
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    kept = list(SOURCES) if sources is None else list(dict.fromkeys(sources))
    unknown = sorted(set(kept) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown sources {unknown}; choose from {SOURCES}")
    end = date.fromisoformat(end_date) if isinstance(end_date, str) else end_date
    start = end.toordinal() - days + 1
    start_s = int(datetime.fromordinal(start).replace(tzinfo=timezone.utc).timestamp())
    end_s = start_s + days * 86400  # exclusive: midnight after end_date
    root = Path(out)
    for source in SOURCES + ["_truth"]:
        if (root / source).exists():
            shutil.rmtree(root / source)  # a re-run replaces, never mixes, generated files
    root.mkdir(parents=True, exist_ok=True)
    large = customers >= LARGE_RUN
    inject = not large
    sink = Sink(root, large)

    pop = build_population(customers, days, _rng(seed, 1))
    crm, crm_person, _ = crm_records(pop, start_s, end_s, _rng(seed, 2))
    for k, system in enumerate(["shop_crm", "loyalty_crm"]):
        mask = np.asarray(crm.column("source_system").to_numpy(zero_copy_only=False) == system)
        part = crm.filter(pa.array(mask))
        faults = []
        if inject and part.num_rows > 2:
            faults = [
                ("missing_crm_customer_id", part.num_rows // (2 + k), {"crm_customer_id": ""})
            ]
        sink.write(
            "crm", f"{system}/customers_{end}", part, faults, fmt="parquet" if large else "csv"
        )
    crm_sorted = np.concatenate(
        [
            crm_person[np.asarray(crm.column("source_system").to_numpy(zero_copy_only=False) == s)]
            for s in ["shop_crm", "loyalty_crm"]
        ]
    )
    crm_keys = pa.concat_tables(
        [
            crm.filter(
                pa.array(
                    np.asarray(crm.column("source_system").to_numpy(zero_copy_only=False) == s)
                )
            )
            for s in ["shop_crm", "loyalty_crm"]
        ]
    )

    act = simulate(pop, pop.has_crm, _rng(seed, 3))
    launch = float(max(days - RUN_DAYS, 0))
    crm_ids = crm_keys.column("crm_customer_id").combine_chunks()
    reached, on_list = assignment(crm_ids, crm_sorted, pop.n)
    act = add_campaign_purchases(pop, act, reached, launch, _rng(seed, 11))
    cat_ = catalog(seed)
    txn_id, email_pos, card_pos = write_pos(pop, act, cat_, start_s, sink, _rng(seed, 4), inject)
    sessions = web_sessions(pop, act, _rng(seed, 5))
    email_web, duplicates = write_web(pop, sessions, cat_, start_s, sink, _rng(seed, 6), inject)

    devices_seen = np.zeros(len(pop.device_person), bool)
    devices_seen[sessions["device"]] = True
    email_seen = email_pos | email_web
    known = pop.has_crm | email_seen | card_pos
    consent_rows = write_consent(
        pop,
        crm_keys,
        crm_sorted,
        known,
        email_seen,
        devices_seen,
        start_s,
        end_s,
        sink,
        _rng(seed, 7),
        inject,
    )
    write_privacy(pop, crm_keys, crm_sorted, known, end_s, sink, _rng(seed, 8), inject)
    write_campaigns(end_s, sink, _rng(seed, 9), inject)
    write_enrichment(sink, _rng(seed, 10))

    for source in SOURCES:
        if source not in kept and (root / source).exists():
            shutil.rmtree(root / source)

    truth = root / "_truth"
    truth.mkdir(parents=True, exist_ok=True)
    # Records, and the persons behind them, that the kept sources hold.
    dev = np.flatnonzero(devices_seen) if "web" in kept else np.zeros(0, np.int64)
    if "crm" not in kept:
        crm_keys, crm_sorted = crm_keys.slice(0, 0), crm_sorted[:0]
    txn_id_kept = txn_id if "pos" in kept else txn_id.slice(0, 0)
    txn_person = act.txn_person if "pos" in kept else act.txn_person[:0]
    known = np.zeros(pop.n, bool)
    if "crm" in kept:
        known |= pop.has_crm
    if "pos" in kept:
        known |= email_pos | card_pos
    if "web" in kept:
        known |= email_web
    identity = pa.table(
        {
            "source_system": pa.concat_arrays(
                [
                    crm_keys.column("source_system").combine_chunks(),
                    pa.array(["pos"] * len(txn_id_kept), pa.string()),
                    pa.array(["web"] * len(dev), pa.string()),
                ]
            ),
            "source_key": pa.concat_arrays(
                [
                    crm_keys.column("crm_customer_id").combine_chunks(),
                    txn_id_kept,
                    pop.anonymous_id.take(pa.array(dev)),
                ]
            ),
            "true_person_id": pop.person_id.take(
                pa.array(np.concatenate([crm_sorted, txn_person, pop.device_person[dev]]))
            ),
        }
    )
    pacsv.write_csv(identity, truth / "identity.csv")
    appears = np.zeros(pop.n, bool)
    appears[crm_sorted] = True
    appears[txn_person] = True
    appears[pop.device_person[dev]] = True
    listed = np.flatnonzero(appears)
    persons = pa.table(
        {
            "true_person_id": pop.person_id.take(pa.array(listed)),
            "persona": pa.array(np.array(V.PERSONA_NAMES)[pop.persona[listed]]),
            "is_known": pa.array(known[listed]),
            "p_purchase_30d": pa.array(np.round(pop.p30[listed], 6)),
            "purchased_30d": pa.array(pop.bought30[listed]),
        }
    )
    pacsv.write_csv(persons, truth / "persons.csv")
    sink.faults = [f for f in sink.faults if f[0] in kept]
    faults = pa.table(
        {
            "source": pa.array([f[0] for f in sink.faults], pa.string()),
            "file": pa.array([f[1] for f in sink.faults], pa.string()),
            "row_number": pa.array([f[2] for f in sink.faults], pa.int64()),
            "rule": pa.array([f[3] for f in sink.faults], pa.string()),
        }
    )
    pacsv.write_csv(faults, truth / "faults.csv")
    if "campaigns" in kept and "crm" in kept:
        campaigns = campaign_truth(pop, reached, on_list, launch)
        pacsv.write_csv(campaigns, truth / "campaigns.csv")

    fault_counts = {s: sum(1 for f in sink.faults if f[0] == s) for s in kept}
    return {
        "out": str(root),
        "customers": customers,
        "days": days,
        "start_date": str(date.fromordinal(start)),
        "end_date": str(end),
        "seed": seed,
        "sources": kept,
        "generator_version": GENERATOR_VERSION,
        "format": "parquet" if large else "csv/jsonl",
        "persons": int(len(listed)),
        "known_persons": int(known[listed].sum()),
        "files": {s: int(sink.files.get(s, 0)) for s in kept},
        "rows": {s: int(sink.rows.get(s, 0)) for s in kept},
        "pos_transactions": int(len(txn_id_kept)),
        "web_devices": int(len(dev)),
        "web_duplicates": int(duplicates),
        "consent_events": int(consent_rows),
        "faults": fault_counts,
        "identity_rows": int(identity.num_rows),
    }
