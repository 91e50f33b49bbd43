"""Given names and surnames with realistic frequencies, from Faker's name vocabularies.

Only Faker's word lists and weights are used (never its per-call API, which is slow and not
seeded by our generator): names are drawn with numpy from the weights below.

- Given names: Faker's en_US `first_names_female` / `first_names_male` (SSA birth-name
  frequencies), a few hundred per gender with a Zipf-like skew (Jennifer, Michael, ...).
- Surnames: Faker's en_US `last_names` are the 1,000 most frequent surnames of the US Census
  2000 with their relative frequencies, normalised to sum to 1 over those 1,000. In the census
  they cover only ~41% of people (Smith alone is 881 per 100,000), the rest being a long tail of
  rare names. The 1,000 keep their census share; the tail is made of the surnames of other
  Faker locales (the main origins of US family names: British, Irish, German, Italian, Spanish
  and Latin American, French, Dutch, Swedish, Portuguese, South Asian), weighted by a Zipf law
  that continues the census list from rank 1,001.

Names with anything but ASCII letters (accents, apostrophes, hyphens, spaces, inner capitals)
are left out: e-mail local parts are built from the lower-cased names.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

from synthetic import _vocab as V

NAME_PATTERN = re.compile(r"[A-Z][a-z]{1,19}")  # capitalised ASCII letters, 2 to 20 long
# Census 2000: 2,376,206 Smiths, 881 per 100,000 persons (the census's own rounding).
SMITH_SHARE = 0.00881
TAIL_LOCALES = (
    "en_GB",
    "en_IE",
    "en_NZ",
    "de_DE",
    "de_AT",
    "it_IT",
    "es_ES",
    "es_MX",
    "es_CO",
    "es_CL",
    "fr_FR",
    "fr_CA",
    "nl_NL",
    "sv_SE",
    "pt_BR",
    "pt_PT",
    "en_IN",
    "en_PK",
)
TAIL_ORDER_SEED = 20_000  # fixed: the tail's rank order does not depend on the run's seed


@dataclass(frozen=True)
class Names:
    """First names (female block, then male block) and surnames, with their draw weights."""

    first: pa.Array  # female names [0, n_female), then male names
    n_female: int
    p_female: np.ndarray  # draw weights over the female block
    p_male: np.ndarray  # draw weights over the male block
    first_key: np.ndarray  # one id per distinct spelling (a few names are in both blocks)
    nick: pa.Array  # per first name, "" when it has none
    has_nick: np.ndarray
    last: pa.Array
    p_last: np.ndarray
    n_census_last: int  # the first surnames are the census list, the rest the rare tail

    @property
    def n_first(self) -> int:
        return len(self.first)


def _provider(locale: str):
    return importlib.import_module(f"faker.providers.person.{locale}").Provider


def _clean(weights: dict[str, float]) -> tuple[list[str], np.ndarray]:
    kept = [(k, float(w)) for k, w in weights.items() if NAME_PATTERN.fullmatch(k) and w > 0]
    return [k for k, _ in kept], np.array([w for _, w in kept])


def _zipf_tail(first_weight: float, count: int, mass: float, start_rank: int) -> np.ndarray:
    """Weights w_k = first_weight * (k / start_rank) ** -s for ranks start_rank+1.., with the
    exponent s chosen so that they sum to `mass` (a flat tail if even that is too little)."""
    ranks = np.arange(start_rank + 1, start_rank + count + 1) / start_rank
    lo, hi = 0.0, 20.0
    if first_weight * count <= mass:
        return np.full(count, mass / count)
    for _ in range(100):
        s = (lo + hi) / 2
        if (first_weight * ranks**-s).sum() > mass:
            lo = s
        else:
            hi = s
    w = first_weight * ranks ** -((lo + hi) / 2)
    return w * (mass / w.sum())


@lru_cache(maxsize=1)
def names() -> Names:
    us = _provider("en_US")
    female, wf = _clean(us.first_names_female)
    male, wm = _clean(us.first_names_male)
    first = female + male
    spelling: dict[str, int] = {}
    first_key = np.array([spelling.setdefault(s, len(spelling)) for s in first], dtype=np.int64)
    nick = [V.NICKNAMES.get(s, "") for s in first]

    census, wc = _clean(us.last_names)
    wc = wc / wc.sum()
    head_mass = min(SMITH_SHARE / wc[census.index("Smith")], 1.0)
    seen = set(census)
    tail: list[str] = []
    for locale in TAIL_LOCALES:
        for s in _provider(locale).last_names:
            if NAME_PATTERN.fullmatch(s) and s not in seen:
                seen.add(s)
                tail.append(s)
    tail = sorted(tail)
    tail = [tail[i] for i in np.random.default_rng(TAIL_ORDER_SEED).permutation(len(tail))]
    head = wc * head_mass
    tail_w = _zipf_tail(head.min(), len(tail), 1.0 - head_mass, len(census))
    p_last = np.concatenate([head, tail_w])

    return Names(
        first=pa.array(first, pa.string()),
        n_female=len(female),
        p_female=wf / wf.sum(),
        p_male=wm / wm.sum(),
        first_key=first_key,
        nick=pa.array(nick, pa.string()),
        has_nick=np.array([bool(x) for x in nick]),
        last=pa.array(census + tail, pa.string()),
        p_last=p_last / p_last.sum(),
        n_census_last=len(census),
    )


def draw_first(female: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A first-name index per person, from the weights of the person's gender."""
    nm = names()
    out = np.empty(len(female), dtype=np.int64)
    out[female] = rng.choice(nm.n_female, int(female.sum()), p=nm.p_female)
    out[~female] = nm.n_female + rng.choice(len(nm.p_male), int((~female).sum()), p=nm.p_male)
    return out


def draw_last(n: int, rng: np.random.Generator) -> np.ndarray:
    """A surname index per person."""
    nm = names()
    return rng.choice(len(nm.p_last), n, p=nm.p_last)
