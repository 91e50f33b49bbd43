"""Consent ledger, data-subject requests, campaign results and postcode geo-demographics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from synthetic import _vocab as V
from synthetic._campaigns import CRM_LIST_SEGMENT, EXPERIMENTS, RUN_DAYS
from synthetic._io import Sink
from synthetic._population import Population, e164
from synthetic._text import ids, iso, num, pick

PURPOSES = ["analytics", "personalization", "ad_targeting", "third_party_sharing"]
GRANT_RATE = np.array([0.85, 0.70, 0.60, 0.15])
DAY = 86400


def _rows(subject_type, subject_id, system, purpose, granted, at, source, revoked=None):
    status = np.where(granted, 0, 1)
    if revoked is not None:
        status = np.where(revoked, 2, status)
    n = len(at)
    return {
        "subject_type": pa.array([subject_type] * n, pa.string())
        if isinstance(subject_type, str)
        else subject_type,
        "subject_id": subject_id,
        "source_system": system if system is not None else pa.nulls(n, pa.string()),
        "purpose": pick(PURPOSES, purpose),
        "status": pick(["granted", "denied", "revoked"], status),
        "at": np.asarray(at, dtype=np.int64),
        "source": pa.array([source] * n, pa.string()),
    }


def write_consent(
    pop: Population,
    crm: pa.Table,
    crm_person: np.ndarray,
    known: np.ndarray,
    email_seen: np.ndarray,
    devices_seen: np.ndarray,
    start_s: int,
    end_s: int,
    sink: Sink,
    rng: np.random.Generator,
    inject: bool,
) -> int:
    """Consent events per identifier; ~60% of known persons grant ad_targeting, a few revoke."""
    n = pop.n
    span = end_s - start_s
    # one decision per person and purpose, recorded on several of their identifiers
    decide = rng.random((n, 4)) < GRANT_RATE
    parts = []
    # CRM import: every record, every purpose, at its creation
    m = crm.num_rows
    created = _epoch(crm.column("created_at"), sink)
    rec = np.repeat(np.arange(m), 4)
    purpose = np.tile(np.arange(4), m)
    parts.append(
        _rows(
            "crm_customer_id",
            crm.column("crm_customer_id").combine_chunks().take(pa.array(rec)),
            crm.column("source_system").combine_chunks().take(pa.array(rec)),
            purpose,
            decide[crm_person[rec], purpose],
            created[rec],
            "crm_import",
        )
    )
    # preference centre by email: a share of known persons with an email restate ad_targeting,
    # and some of those who granted later revoke it
    with_email = np.flatnonzero(known & (pop.has_crm | email_seen) & (rng.random(n) < 0.4))
    at = start_s + (rng.random(len(with_email)) * span).astype(np.int64)
    revoke = decide[with_email, 2] & (rng.random(len(with_email)) < 0.15)
    parts.append(
        _rows(
            "email",
            pop.email.take(pa.array(with_email)),
            None,
            np.full(len(with_email), 2),
            decide[with_email, 2],
            at,
            "preference_center",
            revoke,
        )
    )
    # conflicts: a phone says denied where the CRM record granted
    conflict = np.flatnonzero(pop.has_crm & decide[:, 2] & (rng.random(n) < 0.01))
    at = start_s + (rng.random(len(conflict)) * span).astype(np.int64)
    parts.append(
        _rows(
            "phone",
            e164(pop, conflict),
            None,
            np.full(len(conflict), 2),
            np.zeros(len(conflict), bool),
            at,
            "call_center",
        )
    )
    # card-only persons consent at the till
    card_only = np.flatnonzero(known & ~pop.has_crm & pop.has_card)
    rec = np.repeat(card_only, 4)
    purpose = np.tile(np.arange(4), len(card_only))
    at = start_s + (rng.random(len(rec)) * span).astype(np.int64)
    parts.append(
        _rows(
            "loyalty_card_id",
            pop.card_id.take(pa.array(rec)),
            None,
            purpose,
            decide[rec, purpose],
            at,
            "loyalty_signup",
        )
    )
    # web accounts set personalisation in their settings
    acc = np.flatnonzero(pop.has_account & (rng.random(n) < 0.3))
    at = start_s + (rng.random(len(acc)) * span).astype(np.int64)
    parts.append(
        _rows(
            "user_id",
            pop.user_id.take(pa.array(acc)),
            None,
            np.ones(len(acc), np.int64),
            decide[acc, 1],
            at,
            "account_settings",
        )
    )
    # email-only persons opt in (or not) at checkout
    email_only = np.flatnonzero(known & ~pop.has_crm & ~pop.has_card & email_seen)
    at = start_s + (rng.random(len(email_only)) * span).astype(np.int64)
    parts.append(
        _rows(
            "email",
            pop.email.take(pa.array(email_only)),
            None,
            np.full(len(email_only), 2),
            decide[email_only, 2],
            at,
            "checkout",
        )
    )
    # cookie banner on a quarter of devices: analytics and ad_targeting
    dev = np.flatnonzero(devices_seen & (rng.random(len(devices_seen)) < 0.25))
    rec = np.repeat(dev, 2)
    purpose = np.tile(np.array([0, 2]), len(dev))
    at = start_s + (rng.random(len(rec)) * span).astype(np.int64)
    parts.append(
        _rows(
            "anonymous_id",
            pop.anonymous_id.take(pa.array(rec)),
            None,
            purpose,
            rng.random(len(rec)) < np.where(purpose == 0, 0.8, 0.5),
            at,
            "banner",
        )
    )
    at = np.concatenate([p_["at"] for p_ in parts])
    order = np.argsort(at, kind="stable")
    cols = {}
    for col in ["subject_type", "subject_id", "source_system", "purpose", "status"]:
        cols[col] = pa.concat_arrays(
            [
                p_[col].combine_chunks() if isinstance(p_[col], pa.ChunkedArray) else p_[col]
                for p_ in parts
            ]
        ).take(pa.array(order))
    src = pa.concat_arrays([p_["source"] for p_ in parts]).take(pa.array(order))
    total = len(at)
    table = pa.table(
        {
            "consent_event_id": ids("c", np.arange(1, total + 1), 10),
            "subject_type": cols["subject_type"],
            "subject_id": cols["subject_id"],
            "source_system": cols["source_system"],
            "purpose": cols["purpose"],
            "status": cols["status"],
            "event_at": sink.ts(at[order]),
            "source": src,
        }
    )
    faults = []
    if inject and total > 3:
        faults = [
            ("missing_subject_id", total // 3, {"subject_id": "", "consent_event_id": "c-fault-1"}),
            (
                "unparseable_event_at",
                (2 * total) // 3,
                {"event_at": "31/02/2026", "consent_event_id": "c-fault-2"},
            ),
        ]
    end = str(np.datetime64(end_s - 1, "s").astype("datetime64[D]"))
    sink.write("consent", f"consent_events_{end}", table, faults)
    return total


def _epoch(column: pa.ChunkedArray, sink: Sink) -> np.ndarray:
    import pyarrow.compute as pc

    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("s")).to_numpy().astype(np.int64)
    ts = pc.strptime(column, format="%Y-%m-%dT%H:%M:%SZ", unit="s")
    return ts.to_numpy().astype(np.int64)


def write_privacy(
    pop: Population,
    crm: pa.Table,
    crm_person: np.ndarray,
    known: np.ndarray,
    end_s: int,
    sink: Sink,
    rng: np.random.Generator,
    inject: bool,
) -> None:
    """A handful of erasure and access requests against known persons' identifiers."""
    cand = np.flatnonzero(known & pop.has_crm)
    k = min(8, len(cand))
    who = rng.choice(cand, k, replace=False) if k else np.zeros(0, np.int64)
    kind = np.arange(k) % 4  # email, crm id, phone, card
    kind = np.where((kind == 3) & ~pop.has_card[who], 0, kind)
    first_rec = np.array([np.flatnonzero(crm_person == w)[0] for w in who], dtype=np.int64)
    crm_ids = crm.column("crm_customer_id").combine_chunks().take(pa.array(first_rec))
    systems = crm.column("source_system").combine_chunks().take(pa.array(first_rec))
    email = pop.email.take(pa.array(who))
    phone = e164(pop, who)
    card = pop.card_id.take(pa.array(who))
    subj_type = pick(["email", "crm_customer_id", "phone", "loyalty_card_id"], kind)
    subj_id = pa.array(
        [[email, crm_ids, phone, card][kd][i].as_py() for i, kd in enumerate(kind)], pa.string()
    )
    system = pa.array(
        [systems[i].as_py() if kd == 1 else None for i, kd in enumerate(kind)], pa.string()
    )
    at = end_s - (rng.random(k) * 30 * DAY).astype(np.int64)
    table = pa.table(
        {
            "request_id": ids("DSR-", np.arange(1, k + 1), 5),
            "request_type": pick(["erasure", "access"], np.arange(k) % 2),
            "subject_type": subj_type,
            "subject_id": subj_id,
            "source_system": system,
            "requested_at": iso(at),
        }
    )
    faults = []
    if inject and k > 1:
        faults = [
            (
                "unparseable_requested_at",
                k // 2,
                {"requested_at": "soon", "request_id": "DSR-fault"},
            )
        ]
    end = str(np.datetime64(end_s - 1, "s").astype("datetime64[D]"))
    sink.write("privacy", f"requests_{end}", table, faults, fmt="csv")


SEGMENTS = [
    ("rfm_champions", "meta", "cmp_meta_champions"),
    ("propensity_top_decile", "google_ads", "cmp_gads_propensity"),
    ("rfm_at_risk", "email", "cmp_email_winback"),
    ("lookalike_champions", "meta", "cmp_meta_lookalike"),
]


def write_campaigns(end_s: int, sink: Sink, rng: np.random.Generator, inject: bool) -> None:
    """Daily results of a few campaigns over the last four weeks: segment campaigns, and the
    randomised CRM-list experiments of synthetic._campaigns with their split (salt, arm range)."""
    end_day = np.datetime64(end_s - 1, "s").astype("datetime64[D]")
    run_days = RUN_DAYS
    targets = [(s[0], s[1], s[2], None, None, None) for s in SEGMENTS] + [
        (CRM_LIST_SEGMENT, e.platform, e.campaign_id, e.salt, e.arm_from, e.arm_to)
        for e in EXPERIMENTS
    ]
    reach = np.array([20_000, 35_000, 8_000, 50_000] + [4_000] * len(EXPERIMENTS))
    ctr = np.array([0.02, 0.03, 0.06, 0.012] + [0.03] * len(EXPERIMENTS))
    cpm = np.array([0.006, 0.006, 0.0005, 0.006] + [0.0005] * len(EXPERIMENTS))
    rows = len(targets) * run_days
    seg = np.repeat(np.arange(len(targets)), run_days)
    day = end_day - (run_days - 1) + np.tile(np.arange(run_days), len(targets))
    impressions = rng.poisson(reach[seg])
    clicks = rng.binomial(impressions, ctr[seg])
    conversions = rng.binomial(clicks, 0.05)
    spend = np.round(cpm[seg] * impressions + 0.4 * clicks, 2)
    value = np.round(conversions * rng.lognormal(np.log(70), 0.3, rows), 2)
    table = pa.table(
        {
            "date": pa.array(np.datetime_as_string(day), pa.string()),
            "platform": pick([t[1] for t in targets], seg),
            "campaign_id": pick([t[2] for t in targets], seg),
            "segment_id": pick([t[0] for t in targets], seg),
            "launched_on": pa.array([str(end_day - (run_days - 1))] * rows, pa.string()),
            "impressions": pa.array(impressions.astype(np.int64)),
            "clicks": pa.array(clicks.astype(np.int64)),
            "spend": pa.array(spend),
            "conversions": pa.array(conversions.astype(np.int64)),
            "conversion_value": pa.array(value),
            "split_salt": pa.array([targets[k][3] for k in seg], pa.string()),
            "arm_from": pa.array([targets[k][4] for k in seg], pa.float64()),
            "arm_to": pa.array([targets[k][5] for k in seg], pa.float64()),
        }
    )
    faults = [("unparseable_date", rows // 2, {"date": "2026-13-45"})] if inject else []
    sink.write("campaigns", f"campaign_results_{end_day}", table, faults, fmt="csv")


def metro_postcodes() -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """Every postcode a generated person can have (build_population draws a US metro's ZIPs from
    its prefix and range, London's from UK_POSTCODES): (metro index, postcode, position from the
    metro's centre in [0, 1)), in METROS order, each metro's ZIPs ascending."""
    metros, codes, positions = [], [], []
    for m, (_city, _region, country, base, span, *_rest) in enumerate(V.METROS):
        if country == "GB":
            count = len(V.UK_POSTCODES)
            codes.append(pa.array(V.UK_POSTCODES, pa.string()))
        else:
            count = max(span, 1)
            codes.append(num(base + np.arange(count), 5))
        metros.append(np.full(count, m, np.int64))
        positions.append(np.arange(count) / count)
    return np.concatenate(metros), pa.concat_arrays(codes), np.concatenate(positions)


def write_enrichment(sink: Sink, rng: np.random.Generator) -> None:
    """Third-party geo-demographics: one row per postcode a person can have, with its country.

    A metro's central postcodes are urban, then suburban, the outermost rural (shares in
    V.METRO_GEO); income and density follow the urbanicity, scaled per metro and jittered from
    the seed, and each density stays within its urbanicity's band."""
    metro, postcode, position = metro_postcodes()
    geo = np.array(V.METRO_GEO)[metro]
    urbanicity = np.where(position < geo[:, 0], 0, np.where(position < geo[:, 1], 1, 2))
    n = len(metro)
    income = V.URBANICITY_INCOME[urbanicity] * geo[:, 2] * rng.lognormal(0.0, 0.12, n)
    density = V.URBANICITY_DENSITY[urbanicity] * geo[:, 3] * rng.lognormal(0.0, 0.25, n)
    band = V.URBANICITY_DENSITY_BAND[urbanicity]
    density = np.clip(density, band[:, 0], band[:, 1] - 1.0)
    table = pa.table(
        {
            "country": pick([m[2] for m in V.METROS], metro),
            "postcode": postcode,
            "urbanicity": pick(V.URBANICITY, urbanicity),
            "median_household_income": pa.array(np.round(income, -2)),
            "population_density": pa.array(np.round(density, 1)),
            "provider": pa.array([V.ENRICHMENT_PROVIDER] * n, pa.string()),
        }
    )
    sink.write("enrichment", "geo_demographics", table, fmt="csv")
