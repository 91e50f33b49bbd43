"""True persons: personas, latent purchase rates, identities and their CRM records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthetic import _vocab as V
from synthetic._names import draw_first, draw_last, names
from synthetic._text import cat, ids, iso, num, pick, typo, where

SECOND_RECORD_SHARE = 0.25
HOUSEHOLD_SHARE = 0.03
# Errors of secondary CRM records that the ground truth ignores (not quarantine faults):
NAME_SWAP_SHARE = 0.02  # first and last name entered the wrong way round
# birth date with day and month swapped, as a share of secondary records with a birth date;
# only dates with day <= 12 and day != month can show it, so those are picked at a higher rate
DOB_SWAP_SHARE = 0.03
UK_AREA = 20


@dataclass
class Population:
    """Column arrays over true persons (index = person number)."""

    n: int
    days: int
    person_id: pa.Array
    persona: np.ndarray
    metro: np.ndarray
    r_early: np.ndarray
    r_late: np.ndarray
    change: np.ndarray  # day (float) where r_early turns into r_late
    p30: np.ndarray
    bought30: np.ndarray
    store_share: np.ndarray
    basket: np.ndarray
    browse: np.ndarray  # browse sessions/day at the person's rate
    cash_share: np.ndarray
    fav_category: np.ndarray
    n_devices: np.ndarray
    device_offset: np.ndarray
    device_type: np.ndarray  # per device
    device_person: np.ndarray  # per device
    anonymous_id: pa.Array  # per device
    has_crm: np.ndarray
    has_card: np.ndarray
    has_account: np.ndarray
    email_sharer: np.ndarray  # non-CRM persons who give an email at checkout
    n_pay_cards: np.ndarray
    card_id: pa.Array
    user_id: pa.Array
    pay_token: pa.Array  # 2 per person: [2*i, 2*i+1]
    first: np.ndarray  # index into names().first
    last: np.ndarray  # index into names().last
    female: np.ndarray
    dob: np.ndarray  # datetime64[D]
    email: pa.Array
    phone_area: np.ndarray
    phone_local: np.ndarray  # 7 digits (US) or 8 digits (UK)
    street: pa.Array
    postcode: pa.Array
    household: np.ndarray  # household number, -1 when single
    shares: np.ndarray  # 0 none, 1 shares head's email, 2 shares head's phone


def e164(pop: Population, person: np.ndarray) -> pa.Array:
    """The person's phone in E.164 (+12125550123, +442079460123)."""
    uk = pop.phone_area[person] == UK_AREA
    local = pop.phone_local[person]
    us = cat("+1", num(pop.phone_area[person]), num(local, 7))
    gb = cat("+44", num(pop.phone_area[person]), num(local, 8))
    return where(uk, gb, us)


def phone_text(pop: Population, person: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """The person's phone written in one of many human formats."""
    n = len(person)
    area = num(pop.phone_area[person])
    local = pop.phone_local[person]
    exch, line = num(local // 10_000, 3), num(local % 10_000, 4)
    fmt = rng.integers(0, 6, n)
    us_formats = [
        cat("(", area, ") ", exch, "-", line),
        cat("+1 ", area, " ", exch, " ", line),
        cat(area, ".", exch, ".", line),
        cat("001 ", area, " ", exch, line),
        cat(area, exch, line),
        cat(area, "-", exch, "-", line),
    ]
    us = us_formats[0]
    for k in range(1, 6):
        us = where(fmt == k, us_formats[k], us)
    l8 = num(local, 8)
    uk_formats = [
        cat("+44 ", area, " ", num(local // 10_000, 4), " ", num(local % 10_000, 4)),
        cat("+44", area, l8),
        cat("0044 ", area, " ", l8),
    ]
    uk = where(fmt % 3 == 1, uk_formats[1], where(fmt % 3 == 2, uk_formats[2], uk_formats[0]))
    return where(pop.phone_area[person] == UK_AREA, uk, us)


def build_population(n: int, days: int, rng: np.random.Generator) -> Population:
    """Draw `n` true persons with personas, latent rates and identities."""
    shares = np.array([p[1] for p in V.PERSONAS])
    persona = rng.choice(len(V.PERSONAS), n, p=shares / shares.sum()).astype(np.int8)
    par = {
        k: np.array([p[i] for p in V.PERSONAS])
        for i, k in enumerate(
            [
                "name",
                "share",
                "rate",
                "shape",
                "store",
                "basket",
                "browse",
                "maxdev",
                "crm",
                "card",
                "account",
                "trend",
                "cash",
            ]
        )
    }
    metro_w = np.array([m[6] for m in V.METROS])
    metro = rng.choice(len(V.METROS), n, p=metro_w / metro_w.sum()).astype(np.int8)

    shape = par["shape"][persona].astype(float)
    mean = par["rate"][persona].astype(float)
    base = rng.gamma(shape, mean / shape)
    trend = par["trend"][persona]
    change = np.full(n, days / 2.0)
    r_early, r_late = base.copy(), base.copy()
    lapse, start = trend == "lapse", trend == "start"
    change[lapse] = rng.uniform(0.15, 0.7, lapse.sum()) * days
    r_early[lapse] = base[lapse] * 1.5
    r_late[lapse] = base[lapse] * 0.04
    change[start] = rng.uniform(0.2, 0.9, start.sum()) * days
    r_early[start] = 0.0
    r_late[start] = base[start] * 1.2
    r_future = r_late * rng.lognormal(0.0, 0.25, n)  # drift after the window
    p30 = 1.0 - np.exp(-30.0 * r_future)
    bought30 = rng.random(n) < p30
    browse = 0.65 * par["browse"][persona].astype(float) * np.sqrt(base / mean)

    n_devices = np.where(
        par["maxdev"][persona] > 0,
        1 + (rng.random(n) * par["maxdev"][persona].astype(float)).astype(np.int64),
        0,
    )
    n_devices = np.where((n_devices > 1) & (rng.random(n) < 0.4), 1, n_devices)
    device_offset = (np.cumsum(n_devices) - n_devices).astype(np.int64)
    n_dev_total = int(n_devices.sum())
    device_person = np.repeat(np.arange(n), n_devices)
    dev_w = V.PERSONA_DEVICE_WEIGHTS[persona[device_person]]
    device_type = (rng.random(n_dev_total)[:, None] > np.cumsum(dev_w, axis=1)).sum(1)
    device_type = np.minimum(device_type, 3).astype(np.int8)
    anonymous_id = ids("anon-", rng.permutation(n_dev_total) + 1, 10)

    has_crm = rng.random(n) < par["crm"][persona].astype(float)
    card_p = par["card"][persona].astype(float)
    has_card = rng.random(n) < np.where(has_crm, card_p, card_p * 0.12)  # some card-only
    has_account = has_crm & (rng.random(n) < par["account"][persona].astype(float))
    has_account &= n_devices > 0
    email_sharer = ~has_crm & ~has_card & (rng.random(n) < 0.3)
    n_pay_cards = 1 + (rng.random(n) < 0.35)

    card_id = ids("LC", rng.permutation(n) + 1, 10)
    user_id = ids("U", rng.permutation(n) + 1, 9)
    pay_token = ids("tok_", rng.permutation(2 * n) + 1, 12)

    nm = names()
    female = rng.random(n) < 0.5
    first = draw_first(female, rng)
    last = draw_last(n, rng)
    age_days = (rng.uniform(18, 80, n) * 365.25).astype(np.int64)
    dob = np.datetime64("2026-06-30", "D") - age_days.astype("timedelta64[D]")

    area_choice = rng.random(n)
    areas = np.zeros(n, dtype=np.int64)
    for m, metro_def in enumerate(V.METROS):
        codes = np.array(metro_def[5])
        sel = metro == m
        areas[sel] = codes[(area_choice[sel] * len(codes)).astype(np.int64)]
    exch = rng.integers(200, 1000, n)
    line = rng.integers(0, 10_000, n)
    phone_local = exch * 10_000 + line
    uk = areas == UK_AREA
    phone_local[uk] = 79_460_000 + rng.integers(0, 1000, uk.sum())  # Ofcom drama range

    street = cat(
        num(rng.integers(1, 9999, n)),
        " ",
        pick(V.STREETS, rng.integers(0, len(V.STREETS), n)),
        " ",
        pick(V.STREET_SUFFIX, rng.integers(0, len(V.STREET_SUFFIX), n)),
    )
    pc_base = np.array([m[3] for m in V.METROS])[metro]
    pc_range = np.array([m[4] for m in V.METROS])[metro]
    us_pc = num(pc_base + (rng.random(n) * np.maximum(pc_range, 1)).astype(np.int64), 5)
    postcode = where(uk, pick(V.UK_POSTCODES, rng.integers(0, len(V.UK_POSTCODES), n)), us_pc)

    # unique suffix per person so that only households share an address by design
    suffix = num(rng.permutation(n) + 100)
    lower_first = pc.utf8_lower(pick(nm.first, first))
    lower_last = pc.utf8_lower(pick(nm.last, last))
    style = rng.integers(0, 4, n)
    initials = pc.utf8_slice_codeunits(lower_first, 0, 1)
    local = where(
        style == 0,
        cat(lower_first, ".", lower_last, suffix),
        where(
            style == 1,
            cat(lower_first, lower_last, suffix),
            where(
                style == 2,
                cat(initials, lower_last, suffix),
                cat(lower_last, ".", lower_first, suffix),
            ),
        ),
    )
    email = cat(local, "@", pick(V.EMAIL_DOMAINS, rng.integers(0, len(V.EMAIL_DOMAINS), n)))

    # households: heads and 1-2 members among CRM persons share last name, address, email/phone
    household = np.full(n, -1, dtype=np.int64)
    shares_kind = np.zeros(n, dtype=np.int8)
    crm_idx = rng.permutation(np.flatnonzero(has_crm))
    target = int(round(HOUSEHOLD_SHARE * n))
    sizes = rng.integers(2, 4, max(target // 2, 1))
    sizes = sizes[np.cumsum(sizes) <= min(target, len(crm_idx))]
    if len(sizes):
        members = crm_idx[: sizes.sum()]
        hh = np.repeat(np.arange(len(sizes)), sizes)
        starts = np.cumsum(sizes) - sizes
        head = members[starts][hh]
        household[members] = hh
        # half the households share the head's email, half the head's phone (alternating over
        # households in random order, so that even a few households show both)
        kind = np.where(np.arange(len(sizes)) % 2 == 0, 1, 2)[hh]
        is_member = members != head
        mem, hd = members[is_member], head[is_member]
        shares_kind[mem] = kind[is_member]
        last[mem] = last[hd]
        metro[mem] = metro[hd]
        # a member never has the head's first name: redraw it for their own gender, and if the
        # redraw is the head's name again, take another name of that gender's list
        same_first = nm.first_key[first[mem]] == nm.first_key[first[hd]]
        same, same_head = mem[same_first], hd[same_first]
        first[same] = draw_first(female[same], rng)
        block = np.where(female[same], 0, nm.n_female)
        size = np.where(female[same], nm.n_female, nm.n_first - nm.n_female)
        again = nm.first_key[first[same]] == nm.first_key[first[same_head]]
        first[same[again]] = (
            block[again] + (first[same[again]] - block[again] + size[again] // 2) % size[again]
        )
        dob[mem] = dob[hd] - rng.integers(400, 12_000, len(mem)).astype("timedelta64[D]")
        idx = np.arange(n)
        idx[mem] = hd
        street = street.take(pa.array(idx))
        postcode = postcode.take(pa.array(idx))
        email_src = np.arange(n)
        email_src[mem[kind[is_member] == 1]] = hd[kind[is_member] == 1]
        email = email.take(pa.array(email_src))
        ph = mem[kind[is_member] == 2]
        phd = hd[kind[is_member] == 2]
        areas[ph] = areas[phd]
        phone_local[ph] = phone_local[phd]

    return Population(
        n=n,
        days=days,
        person_id=ids("P", np.arange(1, n + 1), max(7, len(str(n)))),
        persona=persona,
        metro=metro,
        r_early=r_early,
        r_late=r_late,
        change=change,
        p30=p30,
        bought30=bought30,
        store_share=np.where(n_devices > 0, par["store"][persona], 1.0).astype(float),
        basket=par["basket"][persona].astype(float),
        browse=browse,
        cash_share=par["cash"][persona].astype(float),
        fav_category=rng.integers(0, 8, n),
        n_devices=n_devices,
        device_offset=device_offset,
        device_type=device_type,
        device_person=device_person,
        anonymous_id=anonymous_id,
        has_crm=has_crm,
        has_card=has_card,
        has_account=has_account,
        email_sharer=email_sharer,
        n_pay_cards=n_pay_cards.astype(np.int64),
        card_id=card_id,
        user_id=user_id,
        pay_token=pay_token,
        first=first,
        last=last,
        female=female,
        dob=dob,
        email=email,
        phone_area=areas,
        phone_local=phone_local,
        street=street,
        postcode=postcode,
        household=household,
        shares=shares_kind,
    )


def crm_records(
    pop: Population, start_s: int, end_s: int, rng: np.random.Generator
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """CRM records (1 per CRM person, ~25% a second in the other system), their persons and
    whether each is a person's secondary record (the one with nicknames, typos and swaps)."""
    crm = np.flatnonzero(pop.has_crm)
    # primary system: 0 shop_crm (web accounts), 1 loyalty_crm (cards)
    sys_primary = np.where(
        pop.has_account[crm] & ~pop.has_card[crm],
        0,
        np.where(pop.has_card[crm] & ~pop.has_account[crm], 1, (rng.random(len(crm)) < 0.5)),
    ).astype(np.int8)
    second = rng.random(len(crm)) < SECOND_RECORD_SHARE
    person = np.concatenate([crm, crm[second]])
    system = np.concatenate([sys_primary, 1 - sys_primary[second]])
    secondary = np.concatenate([np.zeros(len(crm), bool), np.ones(second.sum(), bool)])
    order = np.lexsort((person, system))
    person, system, secondary = person[order], system[order], secondary[order]
    m = len(person)
    r = rng.random((m, 16))
    swap_u = rng.random((m, 2))

    nm = names()
    first = pick(nm.first, pop.first[person])
    nick = pick(nm.nick, pop.first[person])
    has_nick = nm.has_nick[pop.first[person]]
    first = where(secondary & has_nick & (r[:, 0] < 0.35), nick, first)
    tp = secondary & (r[:, 1] < 0.15)
    first = _apply(first, tp, lambda a: typo(a, rng))
    first = _case(first, r[:, 2], 0.08)
    last = pick(nm.last, pop.last[person])
    last = _apply(last, secondary & (r[:, 3] < 0.10), lambda a: typo(a, rng))
    last = _case(last, r[:, 4], 0.08)
    swap_names = secondary & (swap_u[:, 0] < NAME_SWAP_SHARE)
    first, last = where(swap_names, last, first), where(swap_names, first, last)

    email = pop.email.take(pa.array(person))
    email = _case(email, r[:, 5], np.where(secondary, 0.3, 0.1))
    ws = r[:, 6] < np.where(secondary, 0.2, 0.05)
    email = where(ws, cat("  ", email, " "), email)
    family_email = (pop.shares[person] == 1) | (pop.household[person] >= 0) & ~secondary
    email = where((r[:, 7] < np.where(secondary, 0.2, 0.06)) & ~family_email, None, email)

    phone = phone_text(pop, person, rng)
    family_phone = pop.household[person] >= 0
    phone = where((r[:, 8] < np.where(secondary, 0.3, 0.15)) & ~family_phone, None, phone)

    has_dob = r[:, 10] >= np.where(secondary, 0.25, 0.08)
    shown_dob = _swap_day_month(pop.dob[person], secondary & has_dob, swap_u[:, 1])
    dob_iso = pc_date(shown_dob)
    dob_compact = pa.array(np.char.replace(np.datetime_as_string(shown_dob), "-", ""))
    dob = where(r[:, 9] < 0.15, dob_compact, dob_iso)
    dob = where(~has_dob, None, dob)

    metro = pop.metro[person]
    city = pick([m[0] for m in V.METROS], metro)
    state = pick([m[1] for m in V.METROS], metro)
    country = where(r[:, 11] < 0.1, None, pick([m[2] for m in V.METROS], metro))
    street = where(secondary & (r[:, 12] < 0.2), None, pop.street.take(pa.array(person)))
    postcode = pop.postcode.take(pa.array(person))
    g = np.where(pop.female[person], 0, 1)
    g = np.where(r[:, 13] < 0.02, 2, g)
    gender = where(pop.female[person], "F", "M")
    for k, spellings in V.GENDER_SPELLINGS.items():
        choice = pick(spellings, (r[:, 14] * len(spellings)).astype(np.int64))
        gender = where(g == k, choice, gender)
    gender = where(r[:, 15] < 0.1, None, gender)
    income = np.round(rng.lognormal(np.log(62_000), 0.5, m), -2)
    income_arr = pa.array(income, mask=rng.random(m) < 0.3)
    occupation = pick(V.OCCUPATIONS, rng.integers(0, len(V.OCCUPATIONS), m))
    occupation = where(rng.random(m) < 0.3, None, occupation)

    rr = rng.random((m, 2))
    # Cards are registered in the loyalty CRM; a card holder without a loyalty record has it
    # on the shop record instead (card-only holders have no CRM record at all).
    in_loyalty = np.zeros(len(pop.has_card), bool)
    in_loyalty[person[system == 1]] = True
    card = where(
        pop.has_card[person] & ((system == 1) | (rr[:, 0] < 0.3) | ~in_loyalty[person]),
        pop.card_id.take(pa.array(person)),
        None,
    )
    user = where(
        pop.has_account[person] & ((system == 0) | (rr[:, 1] < 0.2)),
        pop.user_id.take(pa.array(person)),
        None,
    )

    # new explorers join in the window; everyone else up to three years before it
    joined = pop.change[person] * 86400 + start_s
    before = start_s - rng.uniform(0, 3 * 365 * 86400, m)
    created = np.where(pop.r_early[person] == 0, joined, before).astype(np.int64)
    created = np.where(secondary, created + rng.uniform(0, 90 * 86400, m), created)
    created = np.minimum(created, end_s - 3600).astype(np.int64)
    updated = np.minimum(created + rng.uniform(0, 400 * 86400, m), end_s - 60).astype(np.int64)

    crm_id = where(
        system == 0,
        ids("SC", rng.permutation(m) + 1, 8),
        ids("LY-", rng.permutation(m) + 1, 8),
    )
    table = pa.table(
        {
            "crm_customer_id": crm_id,
            "source_system": pick(["shop_crm", "loyalty_crm"], system),
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone": phone,
            "street_address": street,
            "city": city,
            "postcode": postcode,
            "state": state,
            "country": country,
            "date_of_birth": dob,
            "gender": gender,
            "household_income": income_arr,
            "occupation": occupation,
            "loyalty_card_id": card,
            "web_user_id": user,
            "created_at": iso(created),
            "updated_at": iso(updated),
        }
    )
    return table, person, secondary


def _swap_day_month(dob: np.ndarray, candidates: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Birth dates with day and month swapped for ~DOB_SWAP_SHARE of the candidates (only dates
    whose day is at most 12 and differs from the month can be swapped)."""
    month_start = dob.astype("datetime64[M]")
    year_start = dob.astype("datetime64[Y]")
    day = (dob - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    month = (month_start - year_start.astype("datetime64[M]")).astype(np.int64) + 1
    eligible = candidates & (day <= 12) & (day != month)
    rate = min(DOB_SWAP_SHARE * candidates.sum() / max(int(eligible.sum()), 1), 1.0)
    swap = eligible & (u < rate)
    swapped = (year_start.astype("datetime64[M]") + (day - 1)).astype("datetime64[D]") + (month - 1)
    return np.where(swap, swapped, dob).astype("datetime64[D]")


def pc_date(days: np.ndarray) -> pa.Array:
    return pa.array(np.datetime_as_string(days.astype("datetime64[D]")), pa.string())


def _apply(values: pa.Array, mask: np.ndarray, fn) -> pa.Array:
    """Apply a vectorised transform to the masked subset only."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return values
    changed = fn(values.take(pa.array(idx)))
    full = np.arange(len(values))
    merged = pa.concat_arrays([values.cast(pa.string()), changed.cast(pa.string())])
    full[idx] = len(values) + np.arange(len(idx))
    return merged.take(pa.array(full))


def _case(values: pa.Array, u: np.ndarray, rate: float | np.ndarray) -> pa.Array:
    """Upper-case, lower-case or swap the case of a share of the values."""
    rate = np.broadcast_to(rate, u.shape)
    out = where(u < rate / 3, pc.utf8_upper(values), values)
    out = where((u >= rate / 3) & (u < 2 * rate / 3), pc.utf8_lower(values), out)
    return where((u >= 2 * rate / 3) & (u < rate), pc.utf8_swapcase(values), out)
