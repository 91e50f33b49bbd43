"""Purchases, store transactions (POS) and web sessions/events driven by latent rates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from synthetic import _vocab as V
from synthetic._io import Sink
from synthetic._population import Population
from synthetic._text import cat, ids, num, pick, where

DAY = 86400
N_SKU = len(V.CATEGORIES) * V.SKUS_PER_CATEGORY
EVENT_TYPES = [
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "purchase",
    "signup",
    "login",
    "email_open",
    "email_click",
    "app_open",
]
ET = {name: i for i, name in enumerate(EVENT_TYPES)}
MIDDLE_TYPES = np.array(
    [ET["product_view"], ET["page_view"], ET["search"], ET["add_to_cart"], ET["remove_from_cart"]]
)
MIDDLE_CUM = np.cumsum([0.55, 0.15, 0.15, 0.10, 0.05])
DUPLICATE_SHARE = 0.01


@dataclass
class Catalog:
    sku: pa.Array
    category: np.ndarray
    price: np.ndarray


def catalog(seed: int) -> Catalog:
    rng = np.random.default_rng([seed, 99])
    category = np.repeat(np.arange(len(V.CATEGORIES)), V.SKUS_PER_CATEGORY)
    price = np.round(np.floor(V.CATEGORY_PRICE[category] * rng.lognormal(0, 0.5, N_SKU)) + 0.99, 2)
    return Catalog(sku=ids("SKU-", np.arange(N_SKU) + 10_000, 5), category=category, price=price)


def _segment_events(
    early: np.ndarray, late: np.ndarray, change: np.ndarray, days: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson events with rate `early` before `change` and `late` after; (person, day offset)."""
    n1 = rng.poisson(early * change)
    n2 = rng.poisson(late * (days - change))
    p1 = np.repeat(np.arange(len(early)), n1)
    p2 = np.repeat(np.arange(len(early)), n2)
    t1 = rng.random(len(p1)) * change[p1]
    t2 = change[p2] + rng.random(len(p2)) * (days - change[p2])
    return np.concatenate([p1, p2]), np.concatenate([t1, t2])


def _categories(pop: Population, person: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half the time the person's favourite category, else one from the persona's mix."""
    cum = np.cumsum(V.PERSONA_CATEGORY_WEIGHTS, axis=1)[pop.persona[person]]
    mixed = np.minimum((rng.random(len(person))[:, None] > cum).sum(1), 7)
    return np.where(rng.random(len(person)) < 0.5, pop.fav_category[person], mixed)


def _skus(categories: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return categories * V.SKUS_PER_CATEGORY + rng.integers(0, V.SKUS_PER_CATEGORY, len(categories))


@dataclass
class Activity:
    """Purchases split into store transactions and web sessions, sorted by time."""

    txn_person: np.ndarray
    txn_t: np.ndarray  # day offset (float)
    txn_return: np.ndarray
    sess_person: np.ndarray
    sess_t: np.ndarray
    sess_purchase: np.ndarray


def simulate(pop: Population, has_crm: np.ndarray, rng: np.random.Generator) -> Activity:
    """Draw purchase and browsing times for everyone; every person gets at least one record."""
    days = pop.days
    person, t = _segment_events(pop.r_early, pop.r_late, pop.change, days, rng)
    store = rng.random(len(person)) < pop.store_share[person]
    peak = np.maximum(np.maximum(pop.r_early, pop.r_late), 1e-12)
    mult_early = np.sqrt(pop.r_early / peak)
    mult_late = np.sqrt(pop.r_late / peak)
    bp, bt = _segment_events(pop.browse * mult_early, pop.browse * mult_late, pop.change, days, rng)
    # returns follow some store purchases
    sp, st = person[store], t[store]
    ret = rng.random(len(sp)) < 0.07
    rt = st[ret] + rng.uniform(1, 15, ret.sum())
    keep = rt < days
    rp, rt = sp[ret][keep], rt[keep]

    seen = has_crm.copy()
    seen[sp] = True
    seen[person[~store]] = True
    seen[bp] = True
    missing = np.flatnonzero(~seen)
    web_ok = pop.n_devices[missing] > 0
    forced_t = rng.random(len(missing)) * days
    bp = np.concatenate([bp, missing[web_ok]])
    bt = np.concatenate([bt, forced_t[web_ok]])
    sp = np.concatenate([sp, missing[~web_ok]])
    st = np.concatenate([st, forced_t[~web_ok]])

    txn_person = np.concatenate([sp, rp])
    txn_t = np.concatenate([st, rt])
    txn_return = np.concatenate([np.zeros(len(sp), bool), np.ones(len(rp), bool)])
    # keep sessions clear of the end of the window (they last minutes)
    scale = (days - 0.05) / days
    sess_person = np.concatenate([person[~store], bp])
    sess_t = np.concatenate([t[~store], bt]) * scale
    sess_purchase = np.concatenate([np.ones((~store).sum(), bool), np.zeros(len(bp), bool)])
    o1 = np.argsort(txn_t, kind="stable")
    o2 = np.argsort(sess_t, kind="stable")
    return Activity(
        txn_person=txn_person[o1],
        txn_t=np.minimum(txn_t[o1], days - 1e-4),
        txn_return=txn_return[o1],
        sess_person=sess_person[o2],
        sess_t=sess_t[o2],
        sess_purchase=sess_purchase[o2],
    )


def write_pos(
    pop: Population,
    act: Activity,
    cat_: Catalog,
    start_s: int,
    sink: Sink,
    rng: np.random.Generator,
    inject: bool,
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """One file per month of POS line items; returns (transaction_id, email_seen, card_seen)."""
    n = len(act.txn_person)
    p = act.txn_person
    txn_id = ids("T", np.arange(1, n + 1), 10)
    secs = start_s + (act.txn_t * DAY).astype(np.int64)
    r = rng.random((n, 6))
    loyalty = pop.has_card[p] & (r[:, 0] < 0.85)
    gives_email = (pop.has_crm[p] | pop.email_sharer[p]) & (r[:, 1] < 0.2)
    cash = r[:, 2] < pop.cash_share[p]
    card_no = (r[:, 3] * pop.n_pay_cards[p]).astype(np.int64)
    lines = np.where(act.txn_return, 1, 1 + rng.poisson(np.maximum(pop.basket[p] - 1, 0)))
    lines = np.minimum(lines, 12)
    metro = pop.metro[p].astype(np.int64)
    elsewhere = r[:, 4] < 0.05
    metro = np.where(elsewhere, rng.integers(0, len(V.METROS), n), metro)
    n_stores = np.array([m[7] for m in V.METROS])
    store_no = (r[:, 5] * n_stores[metro]).astype(np.int64) + 1
    store_id = cat("S-", pick([m[0][:3].upper() for m in V.METROS], metro), "-", num(store_no, 2))

    email_seen = np.zeros(pop.n, bool)
    email_seen[p[gives_email]] = True
    card_seen = np.zeros(pop.n, bool)
    card_seen[p[loyalty]] = True

    month = secs.astype("datetime64[s]").astype("datetime64[M]")
    bounds = np.flatnonzero(np.diff(month.astype(np.int64))) + 1
    # no transaction at all (a tiny population): no month file either
    starts = np.concatenate([[0], bounds]) if n else np.empty(0, np.int64)
    ends = np.concatenate([bounds, [n]]) if n else np.empty(0, np.int64)
    fault_rules = [
        ("negative_unit_price", {"unit_price": -4.99}),
        ("zero_quantity", {"quantity": 0.0}),
        ("missing_transaction_id", {"transaction_id": ""}),
        ("unparseable_transacted_at", {"transacted_at": "2026-02-31 25:61"}),
        ("return_sign_mismatch", {"quantity": -1.0}),
    ]
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        idx = np.arange(a, b)
        li = np.repeat(idx, lines[idx])
        first = np.cumsum(lines[idx]) - lines[idx]
        line_no = np.arange(len(li)) - np.repeat(first, lines[idx]) + 1
        cats = _categories(pop, p[li], rng)
        sku = _skus(cats, rng)
        is_ret = act.txn_return[li]
        qty = 1 + (rng.random(len(li)) < 0.2) * rng.integers(1, 3, len(li))
        qty = np.where(is_ret, -qty, qty).astype(float)
        li_pa = pa.array(li)
        tok = pop.pay_token.take(pa.array(2 * p[li] + card_no[li]))
        email = _email_variant(pop.email.take(pa.array(p[li])), rng)
        table = pa.table(
            {
                "transaction_id": txn_id.take(li_pa),
                "line_number": pa.array(line_no.astype(np.int64)),
                "transacted_at": sink.ts(secs[li]),
                "store_id": store_id.take(li_pa),
                "loyalty_card_id": where(loyalty[li], pop.card_id.take(pa.array(p[li])), None),
                "receipt_email": where(gives_email[li], email, None),
                "payment_card_token": where(cash[li], None, tok),
                "sku": cat_.sku.take(pa.array(sku)),
                "product_category": pick(V.CATEGORIES, cats),
                "quantity": pa.array(qty),
                "unit_price": pa.array(cat_.price[sku]),
                "is_return": pa.array(is_ret),
            }
        )
        faults = []
        if inject and k < len(fault_rules) and len(li) > 2:
            rule, changes = fault_rules[k]
            changes = {**changes, "line_number": 90}
            if rule == "return_sign_mismatch":
                changes["is_return"] = False
            faults = [(rule, len(li) // 2, changes)]
        stem = f"pos_lines_{str(month[a])}"
        sink.write("pos", stem, table, faults)
    return txn_id, email_seen, card_seen


def _email_variant(email: pa.Array, rng: np.random.Generator) -> pa.Array:
    import pyarrow.compute as pc

    u = rng.random(len(email))
    out = where(u < 0.1, pc.utf8_upper(email), email)
    return where((u >= 0.1) & (u < 0.15), cat(" ", email, " "), out)


def web_sessions(pop: Population, act: Activity, rng: np.random.Generator) -> dict:
    """Per-session attributes (device, length, login, utm, geo) as arrays in time order."""
    p = act.sess_person
    m = len(p)
    r = rng.random((m, 8))
    device = pop.device_offset[p] + (r[:, 0] * pop.n_devices[p]).astype(np.int64)
    dtype = pop.device_type[device]
    email_ok = pop.has_crm[p] | pop.email_sharer[p]
    utm = np.minimum((r[:, 1][:, None] > np.cumsum(V.UTM_WEIGHTS)).sum(1), len(V.UTM) - 1)
    utm = np.where((utm == V.EMAIL_UTM) & ~email_ok, 0, utm)
    from_email = utm == V.EMAIL_UTM
    nev = 1 + rng.poisson(4.0, m)
    nev = np.where(act.sess_purchase, 4 + rng.poisson(3.0, m), nev)
    nev = nev + 2 * from_email
    login = pop.has_account[p] & ((dtype == 3) | (r[:, 2] < 0.5) | act.sess_purchase)
    # the first session of a person is where an account holder may have signed up
    order = np.lexsort((act.sess_t, p))
    first = np.zeros(m, bool)
    first[order[np.r_[True, p[order][1:] != p[order][:-1]]]] = True
    signup = login & first & (r[:, 3] < 0.3)
    login = login & ~signup
    nev = nev + (login | signup)
    checkout_email = act.sess_purchase & email_ok & (r[:, 4] < 0.75)
    metro = np.where(r[:, 5] < 0.08, rng.integers(0, len(V.METROS), m), pop.metro[p])
    return {
        "person": p,
        "device": device,
        "dtype": dtype,
        "utm": utm,
        "from_email": from_email,
        "nev": nev,
        "login": login,
        "signup": signup,
        "checkout_email": checkout_email,
        "metro": metro,
        "purchase": act.sess_purchase,
        "t": act.sess_t,
    }


def write_web(
    pop: Population,
    s: dict,
    cat_: Catalog,
    start_s: int,
    sink: Sink,
    rng: np.random.Generator,
    inject: bool,
) -> tuple[np.ndarray, int]:
    """One file per day of web events (~1% delivered twice); returns (email_seen, duplicates)."""
    days = pop.days
    day = np.floor(s["t"]).astype(np.int64)
    bounds = np.searchsorted(day, np.arange(days + 1))
    email_seen = np.zeros(pop.n, bool)
    carry: pa.Table | None = None
    dup_total, event_offset = 0, 0
    fault_days = {days // 4: "a", days // 2: "b", (3 * days) // 4: "c"} if inject else {}
    metro_city = [m[0] for m in V.METROS]
    metro_region = [m[1] for m in V.METROS]
    metro_country = [m[2] for m in V.METROS]
    sess_id = ids("s", np.arange(1, len(day) + 1), 10)
    for d in range(days):
        a, b = bounds[d], bounds[d + 1]
        si = np.arange(a, b)
        nev = s["nev"][si]
        ev_s = np.repeat(si, nev)
        m = len(ev_s)
        starts = np.cumsum(nev) - nev  # also right for a day without sessions
        pos = np.arange(m) - np.repeat(starts, nev)
        last = np.repeat(nev, nev) - 1 - pos  # 0 on the session's last event
        kind = MIDDLE_TYPES[np.minimum((rng.random(m)[:, None] > MIDDLE_CUM).sum(1), 4)]
        app = s["dtype"][ev_s] == 3
        from_email = s["from_email"][ev_s]
        lp = 1 + 2 * from_email  # position of login/signup
        kind = np.where(pos == 0, np.where(app, ET["app_open"], ET["page_view"]), kind)
        kind = np.where(from_email & (pos == 0), ET["email_open"], kind)
        kind = np.where(from_email & (pos == 1), ET["email_click"], kind)
        kind = np.where(from_email & (pos == 2), ET["page_view"], kind)
        login, signup = s["login"][ev_s], s["signup"][ev_s]
        kind = np.where(login & (pos == lp), ET["login"], kind)
        kind = np.where(signup & (pos == lp), ET["signup"], kind)
        purchase = s["purchase"][ev_s]
        kind = np.where(purchase & (last == 2), ET["add_to_cart"], kind)
        kind = np.where(purchase & (last == 1), ET["checkout_start"], kind)
        kind = np.where(purchase & (last == 0), ET["purchase"], kind)
        person = s["person"][ev_s]
        gaps = rng.exponential(40.0, m).astype(np.int64) + 1
        csum = np.cumsum(gaps)
        offset = csum - np.repeat(csum[starts] if m else csum, nev)
        secs = start_s + (s["t"][ev_s] * DAY).astype(np.int64) + offset
        cats = _categories(pop, person, rng)
        sku = _skus(cats, rng)
        has_sku = np.isin(
            kind, [ET["product_view"], ET["add_to_cart"], ET["remove_from_cart"], ET["purchase"]]
        )
        is_search = kind == ET["search"]
        is_purchase = kind == ET["purchase"]
        logged = (login | signup) & (pos >= lp)
        with_email = (signup & (pos == lp)) | (
            s["checkout_email"][ev_s] & ((kind == ET["checkout_start"]) | is_purchase)
        )
        email_seen[person[with_email]] = True
        qty = 1 + rng.poisson(np.maximum(pop.basket[person] - 1, 0) * 0.5)
        revenue = np.round(cat_.price[sku] * qty, 2)
        utm = s["utm"][ev_s]
        metro = s["metro"][ev_s]
        sku_txt = cat_.sku.take(pa.array(sku))
        pages = pick(
            [
                "/",
                "/p/",
                "/search",
                "/cart",
                "/cart",
                "/checkout",
                "/order/confirmation",
                "/signup",
                "/login",
                "/",
                "/",
                "/",
            ],
            kind,
        )
        page_url = cat("https://shop.example.com", pages)
        page_url = where(kind == ET["product_view"], cat(page_url, sku_txt), page_url)
        terms = np.array([t for row in V.SEARCH_TERMS for t in row])
        term_idx = cats * 4 + rng.integers(0, 4, m)
        table = pa.table(
            {
                "event_id": ids("ev", event_offset + np.arange(1, m + 1), 11),
                "event_at": sink.ts(secs),
                "event_type": pick(EVENT_TYPES, kind),
                "anonymous_id": pop.anonymous_id.take(pa.array(s["device"][ev_s])),
                "user_id": where(logged, pop.user_id.take(pa.array(person)), None),
                "email": where(
                    with_email, _email_variant(pop.email.take(pa.array(person)), rng), None
                ),
                "session_id": sess_id.take(pa.array(ev_s)),
                "page_url": page_url,
                "sku": where(has_sku, sku_txt, None),
                "product_category": where(has_sku | is_search, pick(V.CATEGORIES, cats), None),
                "search_query": where(is_search, pick(list(terms), term_idx), None),
                "order_id": where(is_purchase, ids("O", ev_s + 1, 10), None),
                "revenue": pa.array(revenue, mask=~is_purchase),
                "device_type": pick(V.DEVICE_TYPES, s["dtype"][ev_s]),
                "geo_city": pick(metro_city, metro),
                "geo_region": pick(metro_region, metro),
                "geo_country": pick(metro_country, metro),
                "geo_postcode": where(
                    rng.random(m) < 0.3, None, pop.postcode.take(pa.array(person))
                ),
                "utm_source": pick([u[0] for u in V.UTM], utm),
                "utm_medium": pick([u[1] for u in V.UTM], utm),
                "utm_campaign": pick([u[2] for u in V.UTM], utm),
            }
        )
        event_offset += m
        dup = np.flatnonzero(rng.random(m) < DUPLICATE_SHARE)
        to_next = rng.random(len(dup)) < 0.5
        pieces = [table]
        if carry is not None:
            pieces.append(carry)
        if d == days - 1:
            pieces.append(table.take(pa.array(dup)))
            carry = None
        else:
            pieces.append(table.take(pa.array(dup[~to_next])))
            carry = table.take(pa.array(dup[to_next]))
        dup_total += len(dup)
        out = pa.concat_tables(pieces)
        faults, bad_json = [], None
        if d in fault_days and out.num_rows > 2:
            mid = out.num_rows // 2
            tag = fault_days[d]
            if tag == "a":
                faults = [
                    (
                        "unparseable_event_at",
                        mid,
                        {"event_at": "yesterday at noon", "event_id": "ev-fault-a"},
                    )
                ]
            elif tag == "b":
                faults = [
                    ("missing_anonymous_id", mid, {"anonymous_id": "", "event_id": "ev-fault-b"})
                ]
            else:
                bad_json = mid
        stamp = str(np.datetime64(start_s, "s").astype("datetime64[D]") + d)
        sink.write("web", f"events_{stamp}", out, faults, invalid_json_at=bad_json)
    return email_seen, dup_total
