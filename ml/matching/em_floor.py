"""Splink 5.0.0 workaround, one job: floor the m and u shares of EM's M step while our EM sessions
run (`_em_probability_floor`), so EM neither underflows nor vetoes a pair on a level only
non-matches took. Delete this module when Splink bounds its own EM estimates."""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator
from typing import Any

# Splink 5.0.0 workaround (remove when Splink bounds its own EM estimates). EM's M step sets a
# level's m to its share of the session's expected matches. A level that only non-matches take
# (e.g. blocked on birth date and last name: two people who differ in address and contact data)
# keeps a share that shrinks by a large factor every iteration; as the same pairs sit in the else
# level of several comparisons, their weights add up and the exponent grows several-fold per
# iteration, so m falls below 1e-300, or to 0.0, within two or three iterations, and the setter's
# check (comparison_level.py, M_U_CLAMP_MIN = 1e-300, splink PR #2851) raises ValueError from
# inside EM. Even a level that converges first carries -150 bits or more (a veto whatever else
# agrees), which the next session's E step inherits.
# Splink has no hook for this, so while our EM sessions run, the M step's shares are floored at
# _EM_FLOOR = 1e-6, the m (and u) Splink's EM itself uses for a level a session never observes: a
# level observed only among non-matches is the same evidence (no match there), so it gets the
# same value. One level then gives at most log2(u / 1e-6), about -20 bits for an else level (u
# near 1), comparable to the strongest agreement (exact birth date, street, email: +13 to +15
# bits) instead of overriding everything. The floor binds only where a session saw (next to) no
# match at a level; the mass it adds (at most 1e-6 per level) comes off the comparison's largest
# share.
_EM_FLOOR = 1e-6
_LAMBDA_RECORD = "_probability_two_random_records_match"


def _floor_proportions(records: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """Raise every m and u share below _EM_FLOOR to it, taking the added mass off the largest
    share of the same comparison (in place); return the (comparison, comparison vector value,
    "m" or "u") raised. `records` are the rows Splink's M step reads (output_column_name,
    comparison_vector_value, m_probability, u_probability)."""
    raised: set[tuple[str, int, str]] = set()
    by_comparison: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["output_column_name"] != _LAMBDA_RECORD:
            by_comparison.setdefault(record["output_column_name"], []).append(record)
    for name, rows in by_comparison.items():
        for key in ("m_probability", "u_probability"):
            shares = [r for r in rows if isinstance(r[key], float | int) and math.isfinite(r[key])]
            added = 0.0
            for row in shares:
                if row[key] < _EM_FLOOR:
                    added += _EM_FLOOR - row[key]
                    row[key] = _EM_FLOOR
                    raised.add((name, int(row["comparison_vector_value"]), key[0]))
            if added:
                largest = max(shares, key=lambda r: r[key])
                largest[key] = max(largest[key] - added, _EM_FLOOR)
    return sorted(raised)


@contextlib.contextmanager
def _em_probability_floor() -> Iterator[list[tuple[str, int, str]]]:
    """While active, Splink's EM M step floors m and u shares (see _floor_proportions); yields a
    list holding the levels the latest M step raised. Patches one function of the pinned Splink's
    EM module, and fails loudly if that module no longer has the shape the patch relies on."""
    from splink.internals import expectation_maximisation as em

    original = getattr(em, "compute_proportions_for_new_parameters", None)
    runner = getattr(em, "expectation_maximisation", None)
    if (
        original is None
        or runner is None
        or getattr(original, "_microseg_em_floor", False)  # already patched (nested use)
        or list(inspect.signature(original).parameters) != ["df_params"]
        # EM must look the function up in its module at call time for the patch to take
        or "compute_proportions_for_new_parameters" not in runner.__code__.co_names
    ):
        raise RuntimeError(
            "splink.internals.expectation_maximisation is not what the EM floor in "
            "ml/matching/em_floor.py patches (Splink 5.0.0): revisit that workaround for this "
            "Splink"
        )
    raised: list[tuple[str, int, str]] = []

    def floored(df_params):
        records = original(df_params)
        raised[:] = _floor_proportions(records)
        return records

    floored._microseg_em_floor = True
    em.compute_proportions_for_new_parameters = floored
    try:
        yield raised
    finally:
        em.compute_proportions_for_new_parameters = original
