"""Statistics for the holdout lift of audience segments.

Members of a segment (treatment, suffix ``_t``) are compared with the segment's holdout (control,
suffix ``_c``). Everything here works from counts and sufficient statistics, so the warehouse can
aggregate (``COUNT``, ``SUM``, ``SUM(x * x)``) and Python only does the arithmetic:

- :func:`proportion_lift`: conversion rates, the difference with a Newcombe hybrid score interval,
  the relative lift with a Katz log risk-ratio interval and the pooled two-proportion z-test.
- :func:`mean_lift`: revenue per person, Welch's unequal-variance t-test from sums and sums of
  squares.
- :func:`power_two_proportions`, :func:`sample_size_two_proportions` and
  :func:`minimum_detectable_lift`: the normal-approximation power of the pooled z-test, its
  sample size and the smallest relative lift a given design detects, all from one formula.
- :func:`lift_table`: one row per segment with all of the above, as a ``pyarrow.Table``.

Undefined quantities (a rate of an empty arm, a relative lift over a zero base, ...) are NaN in
the dataclasses and null in the table; only invalid input (negative counts, more conversions
than people, alpha outside (0, 1), ...) raises ``ValueError``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import optimize, special

__all__ = [
    "LIFT_TABLE_SCHEMA",
    "MeanLift",
    "ProportionLift",
    "SampleSize",
    "lift_table",
    "mean_lift",
    "minimum_detectable_lift",
    "power_two_proportions",
    "proportion_lift",
    "sample_size_two_proportions",
]

NAN = math.nan
# Sums of squares cancel catastrophically when all values are (nearly) equal: a deviation sum
# below this many ulps of the sum of squares is rounding noise and is taken as zero variance.
_VARIANCE_ULPS = 64 * np.finfo(np.float64).eps
# Root bracketing grid for the minimum detectable lift (guards against a non-monotone power curve).
_MDL_GRID = 64


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _count(name: str, value: Any) -> int:
    """A non-negative integer count; integral floats and Decimals (as SQL returns them) pass."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        count = int(value)
    else:
        as_float = float(value)
        if not math.isfinite(as_float) or not as_float.is_integer():
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        count = int(as_float)
    if count < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return count


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    as_float = float(value)
    if not math.isfinite(as_float):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return as_float


def _probability(name: str, value: Any) -> float:
    as_float = _real(name, value)
    if not 0.0 < as_float < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return as_float


def _z(alpha: float) -> float:
    """The two-sided critical value z_{1 - alpha/2} of the standard normal."""
    return float(special.ndtri(1.0 - alpha / 2.0))


def _two_sided_normal_p(z: float) -> float:
    return float(2.0 * special.ndtr(-abs(z)))


# --------------------------------------------------------------------------------------------
# Conversion rate: difference, relative lift, z-test
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProportionLift:
    """Conversion of members (treatment) over holdout (control); NaN where undefined."""

    conv_t: int
    n_t: int
    conv_c: int
    n_c: int
    alpha: float
    rate_t: float  # conv_t / n_t
    rate_c: float  # conv_c / n_c
    diff: float  # rate_t - rate_c
    diff_ci_low: float  # Newcombe hybrid score (method 10)
    diff_ci_high: float
    relative_lift: float  # rate_t / rate_c - 1
    relative_lift_ci_low: float  # Katz log risk ratio
    relative_lift_ci_high: float
    z: float  # pooled two-proportion z statistic
    p_value: float  # two-sided


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson (1927) score interval for a single proportion k/n (n > 0), no continuity
    correction: the roots in p of (k/n - p)^2 = z^2 p (1 - p) / n."""
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def proportion_lift(
    conv_t: int, n_t: int, conv_c: int, n_c: int, alpha: float = 0.05
) -> ProportionLift:
    """Conversion rate of members (``conv_t / n_t``) against the holdout (``conv_c / n_c``).

    Method:

    - Difference ``d = p_t - p_c`` with the Newcombe (1998) hybrid score interval, method 10 of
      "Interval estimation for the difference between independent proportions: comparison of
      eleven methods" (Stat Med 17:873-890): with Wilson score limits ``(l_t, u_t)`` and
      ``(l_c, u_c)`` of each arm (no continuity correction),
      ``[d - sqrt((p_t - l_t)^2 + (u_c - p_c)^2), d + sqrt((u_t - p_t)^2 + (p_c - l_c)^2)]``.
      Defined for zero counts and for ``conv == n``.
    - Relative lift ``p_t / p_c - 1`` with the Katz et al. (1978) interval on the log risk ratio:
      ``exp(log(p_t / p_c) +- z * sqrt(1/conv_t - 1/n_t + 1/conv_c - 1/n_c)) - 1``. The lift is
      NaN when ``p_c == 0``; the interval is NaN when either arm has no conversions (the log
      risk ratio is not finite there).
    - Two-sided p-value of the pooled two-proportion z-test,
      ``z = d / sqrt(p (1 - p) (1/n_t + 1/n_c))`` with ``p = (conv_t + conv_c) / (n_t + n_c)``
      (``z^2`` is Pearson's chi-square of the 2x2 table without Yates' correction). When the
      pooled rate is 0 or 1 both arms are identical: ``z = 0`` and ``p = 1``.

    An empty arm (``n == 0``) gives NaN for everything that needs its rate; it never raises.
    Raises ``ValueError`` for negative or non-integral counts, ``conv > n`` or alpha outside
    (0, 1).
    """
    conv_t, n_t = _count("conv_t", conv_t), _count("n_t", n_t)
    conv_c, n_c = _count("conv_c", conv_c), _count("n_c", n_c)
    alpha = _probability("alpha", alpha)
    if conv_t > n_t:
        raise ValueError(f"conv_t ({conv_t}) exceeds n_t ({n_t})")
    if conv_c > n_c:
        raise ValueError(f"conv_c ({conv_c}) exceeds n_c ({n_c})")
    z_crit = _z(alpha)

    rate_t = conv_t / n_t if n_t else NAN
    rate_c = conv_c / n_c if n_c else NAN
    diff = diff_low = diff_high = z_stat = p_value = NAN
    lift = lift_low = lift_high = NAN

    if n_t and n_c:
        diff = rate_t - rate_c
        low_t, high_t = _wilson(conv_t, n_t, z_crit)
        low_c, high_c = _wilson(conv_c, n_c, z_crit)
        diff_low = max(-1.0, diff - math.hypot(rate_t - low_t, high_c - rate_c))
        diff_high = min(1.0, diff + math.hypot(high_t - rate_t, rate_c - low_c))

        pooled = (conv_t + conv_c) / (n_t + n_c)
        se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_t + 1.0 / n_c))
        if se0 > 0.0:
            z_stat = diff / se0
            p_value = _two_sided_normal_p(z_stat)
        else:
            z_stat, p_value = 0.0, 1.0

        if conv_c > 0:
            lift = rate_t / rate_c - 1.0
            if conv_t > 0:
                log_rr = math.log(rate_t / rate_c)
                se_log = math.sqrt(max(0.0, 1.0 / conv_t - 1.0 / n_t + 1.0 / conv_c - 1.0 / n_c))
                lift_low = math.exp(log_rr - z_crit * se_log) - 1.0
                lift_high = math.exp(log_rr + z_crit * se_log) - 1.0

    return ProportionLift(
        conv_t=conv_t,
        n_t=n_t,
        conv_c=conv_c,
        n_c=n_c,
        alpha=alpha,
        rate_t=rate_t,
        rate_c=rate_c,
        diff=diff,
        diff_ci_low=diff_low,
        diff_ci_high=diff_high,
        relative_lift=lift,
        relative_lift_ci_low=lift_low,
        relative_lift_ci_high=lift_high,
        z=z_stat,
        p_value=p_value,
    )


# --------------------------------------------------------------------------------------------
# Revenue per person: Welch's t-test from sufficient statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeanLift:
    """Mean of members (treatment) over holdout (control); NaN where undefined."""

    n_t: int
    n_c: int
    alpha: float
    mean_t: float
    mean_c: float
    var_t: float  # sample variance (n - 1 denominator)
    var_c: float
    diff: float  # mean_t - mean_c
    se: float  # sqrt(var_t / n_t + var_c / n_c)
    t: float  # Welch t statistic
    df: float  # Welch-Satterthwaite degrees of freedom
    diff_ci_low: float
    diff_ci_high: float
    relative_lift: float  # mean_t / mean_c - 1
    p_value: float  # two-sided


def _moments(name: str, total: Any, sumsq: Any, n: Any) -> tuple[int, float, float]:
    """(n, mean, sample variance) from n, sum and sum of squares; NaN where undefined."""
    n = _count(f"n_{name}", n)
    total = _real(f"sum_{name}", total)
    sumsq = _real(f"sumsq_{name}", sumsq)
    if sumsq < 0.0:
        raise ValueError(f"sumsq_{name} must be >= 0, got {sumsq!r}")
    if n == 0:
        if total != 0.0 or sumsq != 0.0:
            raise ValueError(f"n_{name} is 0 but sum_{name} / sumsq_{name} are not")
        return 0, NAN, NAN
    # Cauchy-Schwarz: sum^2 <= n * sumsq for any real values (allowing for rounding).
    if total * total > n * sumsq * (1.0 + 1e-9) + 1e-300:
        raise ValueError(
            f"inconsistent sufficient statistics for {name}: sum^2 > n * sumsq "
            f"({total!r}^2 > {n} * {sumsq!r})"
        )
    mean = total / n
    if n < 2:
        return n, mean, NAN
    deviations = sumsq - total * mean
    if deviations <= _VARIANCE_ULPS * sumsq:
        deviations = 0.0
    return n, mean, deviations / (n - 1)


def mean_lift(
    sum_t: float,
    sumsq_t: float,
    n_t: int,
    sum_c: float,
    sumsq_c: float,
    n_c: int,
    alpha: float = 0.05,
) -> MeanLift:
    """Difference of mean revenue per person, members minus holdout, from sufficient statistics.

    ``sum`` is the sum of the per-person values, ``sumsq`` the sum of their squares and ``n`` the
    number of persons (people without revenue count as zeros), so SQL can aggregate.

    Method: Welch's (1947) unequal-variance t-test. With sample variances
    ``s^2 = (sumsq - sum^2 / n) / (n - 1)`` and ``v = s^2 / n`` per arm, the standard error is
    ``se = sqrt(v_t + v_c)``, ``t = (mean_t - mean_c) / se`` with the Welch-Satterthwaite degrees
    of freedom ``df = se^4 / (v_t^2 / (n_t - 1) + v_c^2 / (n_c - 1))``; the two-sided p-value
    and the interval ``diff +- t_{df, 1 - alpha/2} * se`` use Student's t with ``df`` (which is
    not rounded). The relative lift is ``mean_t / mean_c - 1`` (NaN when ``mean_c == 0``;
    meaningful for positive means).

    Degenerate cases: an empty arm gives NaN means and everything derived from them; an arm with
    a single person has no variance, so ``se``, ``t``, ``df``, the interval and the p-value are
    NaN. When both variances are zero (every person of each arm has the same value; a deviation
    sum within rounding of zero counts as zero) ``se == 0``: the interval collapses to the
    difference, ``t`` and ``df`` are NaN and the p-value is 1 if the means are equal, else 0.
    Raises ``ValueError`` for negative or non-integral ``n``, negative ``sumsq``, non-finite
    sums, statistics no real sample can have (``sum^2 > n * sumsq``) or alpha outside (0, 1).
    """
    n_t, mean_t, var_t = _moments("t", sum_t, sumsq_t, n_t)
    n_c, mean_c, var_c = _moments("c", sum_c, sumsq_c, n_c)
    alpha = _probability("alpha", alpha)

    diff = mean_t - mean_c  # NaN if either arm is empty
    lift = mean_t / mean_c - 1.0 if n_c and mean_c != 0.0 else NAN
    se = t_stat = df = low = high = p_value = NAN

    if not (math.isnan(var_t) or math.isnan(var_c)):
        v_t, v_c = var_t / n_t, var_c / n_c
        se = math.sqrt(v_t + v_c)
        if se > 0.0:
            t_stat = diff / se
            df = (v_t + v_c) ** 2 / (v_t * v_t / (n_t - 1) + v_c * v_c / (n_c - 1))
            p_value = float(2.0 * special.stdtr(df, -abs(t_stat)))
            half = float(special.stdtrit(df, 1.0 - alpha / 2.0)) * se
            low, high = diff - half, diff + half
        else:
            low = high = diff
            p_value = 1.0 if diff == 0.0 else 0.0

    return MeanLift(
        n_t=n_t,
        n_c=n_c,
        alpha=alpha,
        mean_t=mean_t,
        mean_c=mean_c,
        var_t=var_t,
        var_c=var_c,
        diff=diff,
        se=se,
        t=t_stat,
        df=df,
        diff_ci_low=low,
        diff_ci_high=high,
        relative_lift=lift,
        p_value=p_value,
    )


# --------------------------------------------------------------------------------------------
# Power, sample size, minimum detectable lift
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleSize:
    """Persons needed per arm; ``ratio`` is members per holdout person (n_t / n_c)."""

    n_treatment: int
    n_control: int
    n_control_exact: float  # before rounding up
    rate_control: float  # the base rate
    rate_treatment: float  # base_rate * (1 + relative_lift)
    relative_lift: float
    alpha: float
    power: float
    ratio: float


def _power_terms(
    p_c: float, p_t: float, ratio: float, z_alpha: float
) -> tuple[float, float, float]:
    """(|p_t - p_c|, null term, alternative term) per control person, for ratio = n_t / n_c.

    Null term: ``z_alpha * sqrt(pbar qbar (1 + 1/ratio))`` with the pooled rate
    ``pbar = (ratio p_t + p_c) / (1 + ratio)``; alternative term:
    ``sqrt(p_t q_t / ratio + p_c q_c)``.
    """
    pbar = (ratio * p_t + p_c) / (1.0 + ratio)
    null = z_alpha * math.sqrt(pbar * (1.0 - pbar) * (1.0 + 1.0 / ratio))
    alternative = math.sqrt(p_t * (1.0 - p_t) / ratio + p_c * (1.0 - p_c))
    return abs(p_t - p_c), null, alternative


def _treatment_rate(base_rate: float, relative_lift: float) -> float:
    """base_rate * (1 + relative_lift), which must be a probability (0 and 1 allowed, so a
    rounding error of a lift to exactly 1 is forgiven)."""
    p_t = base_rate * (1.0 + relative_lift)
    if -1e-12 <= p_t < 0.0:
        p_t = 0.0
    elif 1.0 < p_t <= 1.0 + 1e-12:
        p_t = 1.0
    if not 0.0 <= p_t <= 1.0:
        raise ValueError(f"base_rate * (1 + relative_lift) = {p_t!r} is not a probability")
    return p_t


def power_two_proportions(
    base_rate: float, relative_lift: float, n_t: int, n_c: int, alpha: float = 0.05
) -> float:
    """Power of the two-sided pooled two-proportion z-test (normal approximation).

    ``power = Phi((|p_t - p_c| sqrt(n_c) - z_{1-alpha/2} sqrt(pbar qbar (1 + 1/r)))
    / sqrt(p_t q_t / r + p_c q_c))`` with ``p_c = base_rate``,
    ``p_t = base_rate (1 + relative_lift)``, ``r = n_t / n_c`` and the pooled
    ``pbar = (n_t p_t + n_c p_c) / (n_t + n_c)``. As in Fleiss et al. (2003) and R's
    ``power.prop.test`` (``strict = FALSE``), rejections in the direction opposite to the true
    effect are not counted. Returns NaN for an empty arm.
    """
    base_rate = _probability("base_rate", base_rate)
    relative_lift = _real("relative_lift", relative_lift)
    n_t, n_c = _count("n_t", n_t), _count("n_c", n_c)
    alpha = _probability("alpha", alpha)
    p_t = _treatment_rate(base_rate, relative_lift)
    if n_t == 0 or n_c == 0:
        return NAN
    return _power(base_rate, p_t, n_t / n_c, n_c, _z(alpha))


def _power(p_c: float, p_t: float, ratio: float, n_c: float, z_alpha: float) -> float:
    delta, null, alternative = _power_terms(p_c, p_t, ratio, z_alpha)
    return float(special.ndtr((delta * math.sqrt(n_c) - null) / alternative))


def sample_size_two_proportions(
    base_rate: float,
    relative_lift: float,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> SampleSize:
    """Persons per arm for the two-sided pooled z-test to detect ``relative_lift`` over
    ``base_rate`` with the given power; ``ratio`` is members per holdout person (n_t / n_c).

    Method: the normal-approximation formula with the pooled variance under H0 (Fleiss, Levin &
    Paik, Statistical Methods for Rates and Proportions, 3rd ed. 2003, chapter 4, without the
    continuity correction; the unequal-allocation form of Fleiss, Tytun & Ury 1980):

        n_c = (z_{1-alpha/2} sqrt(pbar qbar (1 + 1/r)) + z_{power} sqrt(p_t q_t / r + p_c q_c))^2
              / (p_t - p_c)^2,   n_t = r n_c,

    with ``p_c = base_rate``, ``p_t = base_rate (1 + relative_lift)`` and
    ``pbar = (r p_t + p_c) / (1 + r)``. Both are rounded up. For ``r = 1`` this is the n that
    R's ``power.prop.test`` solves for (e.g. p 0.10 vs 0.12 at alpha 0.05 and power 0.8:
    n = 3840.8, so 3841 per arm).

    Raises ``ValueError`` unless ``0 < base_rate < 1``, ``relative_lift != 0``,
    ``0 <= p_t <= 1``, ``0 < alpha, power < 1`` and ``ratio > 0``.
    """
    base_rate = _probability("base_rate", base_rate)
    relative_lift = _real("relative_lift", relative_lift)
    alpha = _probability("alpha", alpha)
    power = _probability("power", power)
    ratio = _real("ratio", ratio)
    if ratio <= 0.0:
        raise ValueError(f"ratio must be > 0, got {ratio!r}")
    if relative_lift == 0.0:
        raise ValueError("relative_lift must not be 0 (no sample size detects no difference)")
    p_t = _treatment_rate(base_rate, relative_lift)

    delta, null, alternative = _power_terms(base_rate, p_t, ratio, _z(alpha))
    z_beta = float(special.ndtri(power))
    n_c_exact = (null + z_beta * alternative) ** 2 / delta**2
    return SampleSize(
        n_treatment=math.ceil(ratio * n_c_exact),
        n_control=math.ceil(n_c_exact),
        n_control_exact=n_c_exact,
        rate_control=base_rate,
        rate_treatment=p_t,
        relative_lift=relative_lift,
        alpha=alpha,
        power=power,
        ratio=ratio,
    )


def minimum_detectable_lift(
    base_rate: float, n_t: int, n_c: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest positive relative lift over ``base_rate`` that ``n_t`` members and ``n_c``
    holdout persons detect with the given power (two-sided alpha).

    Method: solves ``power_two_proportions(base_rate, L, n_t, n_c, alpha) = power`` for ``L``
    with ``scipy.optimize.brentq`` (the same formula as :func:`sample_size_two_proportions`,
    which it inverts: ``sample_size_two_proportions(base_rate, L, alpha, power,
    n_t / n_c).n_control_exact == n_c``). The root is bracketed on a grid over
    ``(0, 1/base_rate - 1]``, the lifts that keep the treatment rate a probability, so the
    smallest root is found. Returns NaN when an arm is empty or when not even a treatment rate
    of 1 reaches the power.
    """
    base_rate = _probability("base_rate", base_rate)
    n_t, n_c = _count("n_t", n_t), _count("n_c", n_c)
    alpha = _probability("alpha", alpha)
    power = _probability("power", power)
    if n_t == 0 or n_c == 0:
        return NAN
    ratio, z_alpha = n_t / n_c, _z(alpha)

    def shortfall(lift: float) -> float:
        return _power(base_rate, base_rate * (1.0 + lift), ratio, n_c, z_alpha) - power

    if shortfall(0.0) >= 0.0:  # power <= alpha / 2: any lift is "detected"
        return 0.0
    max_lift = 1.0 / base_rate - 1.0
    previous = 0.0
    for step in range(1, _MDL_GRID + 1):
        lift = max_lift * step / _MDL_GRID
        if shortfall(lift) >= 0.0:
            return float(optimize.brentq(shortfall, previous, lift, xtol=1e-12, rtol=1e-12))
        previous = lift
    return NAN


# --------------------------------------------------------------------------------------------
# The per-segment table
# --------------------------------------------------------------------------------------------

_FLOAT = pa.float64()
LIFT_TABLE_SCHEMA = pa.schema(
    [
        ("segment_id", pa.string()),  # the actual type follows the input ids
        ("members", pa.int64()),
        ("holdout", pa.int64()),
        ("conversion_rate_members", _FLOAT),
        ("conversion_rate_holdout", _FLOAT),
        ("conversion_lift", _FLOAT),
        ("conversion_lift_ci_low", _FLOAT),
        ("conversion_lift_ci_high", _FLOAT),
        ("conversion_p_value", _FLOAT),
        ("revenue_per_member", _FLOAT),
        ("revenue_per_holdout", _FLOAT),
        ("revenue_lift", _FLOAT),
        ("revenue_diff_ci_low", _FLOAT),
        ("revenue_diff_ci_high", _FLOAT),
        ("revenue_p_value", _FLOAT),
        ("holdout_needed_for_10pct", pa.int64()),
        ("minimum_detectable_lift", _FLOAT),
        ("underpowered", pa.bool_()),
    ]
)
_REVENUE_KEYS = ("rev_sum_t", "rev_sumsq_t", "rev_sum_c", "rev_sumsq_c")


def _field(row: Any, key: str, default: Any = None) -> Any:
    if isinstance(row, Mapping):
        return row.get(key, default)
    return getattr(row, key, default)


def _rounded(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def _records(rows: Any) -> Iterable[Any]:
    if hasattr(rows, "to_pylist"):  # a pyarrow Table or RecordBatch
        return rows.to_pylist()
    return rows


def lift_table(
    rows: Iterable[Mapping[str, Any]] | Any,
    alpha: float = 0.05,
    power: float = 0.8,
    target_lift: float = 0.10,
) -> pa.Table:
    """One row per segment with its conversion and revenue lift, as a ``pyarrow.Table``.

    ``rows`` is an iterable of mappings (or of records with these attributes, or a pyarrow
    Table) with ``segment_id``, ``n_t``, ``conv_t``, ``n_c``, ``conv_c`` and, per arm, the
    revenue sufficient statistics ``rev_sum_t``, ``rev_sumsq_t``, ``rev_sum_c``, ``rev_sumsq_c``
    (sum and sum of squares of revenue per person; when any is missing or None the revenue
    columns are null).

    Columns (schema :data:`LIFT_TABLE_SCHEMA`, in that order): conversion from
    :func:`proportion_lift` (``conversion_lift`` is the relative lift with its Katz interval),
    revenue from :func:`mean_lift` (``revenue_lift`` is relative, the interval is of the
    absolute difference per person), and the power columns at the segment's base rate:

    - ``holdout_needed_for_10pct``: holdout persons needed to detect ``target_lift`` (named for
      the default 10 %) at the actual member:holdout ratio,
      :func:`sample_size_two_proportions` ``(base, target_lift, alpha, power,
      ratio=members / holdout).n_control``;
    - ``minimum_detectable_lift``: :func:`minimum_detectable_lift` of the actual arms;
    - ``underpowered``: True unless ``holdout >= holdout_needed_for_10pct``, so also when that is
      null (an empty arm, no base rate, or ``target_lift`` pushing the rate past 1).

    The base rate is the holdout conversion rate; when that is 0 or 1 (no relative lift is
    measurable over it) the pooled rate of both arms stands in, and when that is also 0 or 1
    the power columns are null. Floats are rounded to 6 decimals and NaN becomes null.
    """
    alpha = _probability("alpha", alpha)
    power = _probability("power", power)
    target_lift = _real("target_lift", target_lift)
    if target_lift <= 0.0:
        raise ValueError(f"target_lift must be > 0, got {target_lift!r}")

    columns: dict[str, list[Any]] = {name: [] for name in LIFT_TABLE_SCHEMA.names}
    for row in _records(rows):
        n_t, n_c = _count("n_t", _field(row, "n_t")), _count("n_c", _field(row, "n_c"))
        conv = proportion_lift(_field(row, "conv_t"), n_t, _field(row, "conv_c"), n_c, alpha)

        revenue = [_field(row, key) for key in _REVENUE_KEYS]
        rev = None
        if all(value is not None for value in revenue):
            sum_t, sumsq_t, sum_c, sumsq_c = revenue
            rev = mean_lift(sum_t, sumsq_t, n_t, sum_c, sumsq_c, n_c, alpha)

        needed, mdl = None, NAN
        base = conv.rate_c
        if not 0.0 < base < 1.0 and n_t and n_c:
            base = (conv.conv_t + conv.conv_c) / (n_t + n_c)
        if n_t and n_c and 0.0 < base < 1.0:
            mdl = minimum_detectable_lift(base, n_t, n_c, alpha, power)
            if base * (1.0 + target_lift) <= 1.0:
                size = sample_size_two_proportions(base, target_lift, alpha, power, n_t / n_c)
                needed = size.n_control

        values = {
            "segment_id": _field(row, "segment_id"),
            "members": n_t,
            "holdout": n_c,
            "conversion_rate_members": _rounded(conv.rate_t),
            "conversion_rate_holdout": _rounded(conv.rate_c),
            "conversion_lift": _rounded(conv.relative_lift),
            "conversion_lift_ci_low": _rounded(conv.relative_lift_ci_low),
            "conversion_lift_ci_high": _rounded(conv.relative_lift_ci_high),
            "conversion_p_value": _rounded(conv.p_value),
            "revenue_per_member": _rounded(rev.mean_t) if rev else None,
            "revenue_per_holdout": _rounded(rev.mean_c) if rev else None,
            "revenue_lift": _rounded(rev.relative_lift) if rev else None,
            "revenue_diff_ci_low": _rounded(rev.diff_ci_low) if rev else None,
            "revenue_diff_ci_high": _rounded(rev.diff_ci_high) if rev else None,
            "revenue_p_value": _rounded(rev.p_value) if rev else None,
            "holdout_needed_for_10pct": needed,
            "minimum_detectable_lift": _rounded(mdl),
            "underpowered": needed is None or n_c < needed,
        }
        for name, value in values.items():
            columns[name].append(value)

    ids = pa.array(columns.pop("segment_id"))
    if len(ids) == 0 or pa.types.is_null(ids.type):
        ids = ids.cast(pa.string())
    fields = list(LIFT_TABLE_SCHEMA)[1:]
    arrays = [ids] + [pa.array(columns[field.name], type=field.type) for field in fields]
    schema = pa.schema([pa.field("segment_id", ids.type), *fields])
    return pa.Table.from_arrays(arrays, schema=schema)


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Standard error of a ROC-AUC measured on `positives` and `negatives` (Hanley & McNeil
    1982, "The meaning and use of the area under a ROC curve", Radiology 143, eq. 2, with the
    exponential approximations Q1 = A / (2 - A) and Q2 = 2A^2 / (1 + A))."""
    a = _probability("auc", auc)
    n1, n2 = _count("positives", positives), _count("negatives", negatives)
    if n1 == 0 or n2 == 0:
        return math.inf
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)
    return math.sqrt(max(variance, 0.0))
