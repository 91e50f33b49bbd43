"""ml.stats against published values and independent computations, not against itself.

References used below:
- Newcombe RG (1998), "Interval estimation for the difference between independent proportions:
  comparison of eleven methods", Statistics in Medicine 17:873-890, Table II, method 10.
- Sahai H & Khurshid A (1996), Statistics in Epidemiology, Example 3.1 (the example of the
  scipy.stats.contingency.relative_risk documentation, Katz log interval).
- R's stats::power.prop.test, whose documented examples solve the same pooled-variance power
  equation: n = 76.7 (p 0.50 vs 0.75, power 0.90), power = 0.740 (n = 50), p2 = 0.8026
  (n = 50, power 0.90), n = 10451937 (p 0.5 vs 0.501, alpha 0.001, power 0.90), n = 73.37
  (p 0.90 vs 1.0, power 0.80).
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from ml.stats import (
    LIFT_TABLE_SCHEMA,
    lift_table,
    mean_lift,
    minimum_detectable_lift,
    power_two_proportions,
    proportion_lift,
    sample_size_two_proportions,
)

# Published to 4 decimals, so a correct value is within half a unit of the last place.
FOUR_DECIMALS = 5e-5


# --------------------------------------------------------------------------------------------
# proportion_lift
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conv_t", "n_t", "conv_c", "n_c", "low", "high"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),  # (a)
        (9, 10, 3, 10, 0.1705, 0.8090),  # (b)
        (6, 7, 2, 7, 0.0582, 0.8062),  # (c)
        (5, 56, 0, 29, -0.0381, 0.1926),  # (d)
        (0, 10, 0, 20, -0.1611, 0.2775),  # (e)
        (0, 10, 0, 10, -0.2775, 0.2775),  # (f)
        (10, 10, 0, 20, 0.6791, 1.0000),  # (g)
        (10, 10, 0, 10, 0.6075, 1.0000),  # (h)
    ],
)
def test_difference_interval_matches_newcombe_1998_table_ii_method_10(
    conv_t, n_t, conv_c, n_c, low, high
):
    result = proportion_lift(conv_t, n_t, conv_c, n_c)
    assert result.diff == pytest.approx(conv_t / n_t - conv_c / n_c, abs=1e-12)
    assert result.diff_ci_low == pytest.approx(low, abs=FOUR_DECIMALS)
    assert result.diff_ci_high == pytest.approx(high, abs=FOUR_DECIMALS)


def test_z_test_p_value_by_hand_and_as_pearson_chi_square():
    # 56/70 vs 48/80: pooled p = 104/150, z = 0.2 / sqrt(p (1 - p) (1/70 + 1/80)) = 2.6502,
    # two-sided p = erfc(|z| / sqrt 2) = 0.00805.
    pooled = 104 / 150
    z = 0.2 / math.sqrt(pooled * (1 - pooled) * (1 / 70 + 1 / 80))
    assert z == pytest.approx(2.6502, abs=FOUR_DECIMALS)
    result = proportion_lift(56, 70, 48, 80)
    assert result.z == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert result.p_value == pytest.approx(0.00805, abs=FOUR_DECIMALS)
    # z^2 is Pearson's chi-square of the 2x2 table without Yates' correction.
    chi2 = stats.chi2_contingency([[56, 14], [48, 32]], correction=False)
    assert result.z**2 == pytest.approx(chi2.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(chi2.pvalue, rel=1e-9)


def test_z_test_sign_follows_members_minus_holdout():
    result = proportion_lift(48, 80, 56, 70)
    assert result.z == pytest.approx(-2.6502, abs=FOUR_DECIMALS)
    assert result.diff == pytest.approx(-0.2)


def test_relative_lift_interval_is_katz_log_risk_ratio():
    # Sahai & Khurshid (1996) Example 3.1: 27/122 vs 44/487, RR 2.4495, 95% CI 1.5837 to 3.7887.
    result = proportion_lift(27, 122, 44, 487)
    assert result.relative_lift == pytest.approx(2.4495 - 1, abs=FOUR_DECIMALS)
    assert result.relative_lift_ci_low == pytest.approx(1.5837 - 1, abs=FOUR_DECIMALS)
    assert result.relative_lift_ci_high == pytest.approx(3.7887 - 1, abs=FOUR_DECIMALS)
    assert result.rate_t == pytest.approx(27 / 122)
    assert result.rate_c == pytest.approx(44 / 487)


def test_relative_lift_interval_matches_scipy_at_other_levels():
    for alpha in (0.01, 0.10):
        ours = proportion_lift(30, 200, 18, 210, alpha=alpha)
        ci = stats.contingency.relative_risk(30, 200, 18, 210).confidence_interval(1 - alpha)
        assert ours.relative_lift_ci_low == pytest.approx(ci.low - 1, rel=1e-9)
        assert ours.relative_lift_ci_high == pytest.approx(ci.high - 1, rel=1e-9)


def test_wider_interval_at_smaller_alpha():
    narrow = proportion_lift(56, 70, 48, 80, alpha=0.10)
    wide = proportion_lift(56, 70, 48, 80, alpha=0.01)
    assert wide.diff_ci_low < narrow.diff_ci_low < narrow.diff < narrow.diff_ci_high
    assert narrow.diff_ci_high < wide.diff_ci_high
    assert wide.p_value == narrow.p_value


def test_no_conversions_in_either_arm():
    result = proportion_lift(0, 100, 0, 100)
    assert result.rate_t == 0.0 and result.rate_c == 0.0 and result.diff == 0.0
    # The Wilson upper limit of 0/100 is z^2 / (n + z^2) at alpha 0.05.
    upper = 1.959964**2 / (100 + 1.959964**2)
    assert result.diff_ci_low == pytest.approx(-upper, abs=1e-6)
    assert result.diff_ci_high == pytest.approx(upper, abs=1e-6)
    # The pooled rate is 0: both arms are identical, as Fisher's exact test says (p = 1).
    assert result.z == 0.0 and result.p_value == 1.0
    assert stats.fisher_exact([[0, 100], [0, 100]]).pvalue == 1.0
    assert math.isnan(result.relative_lift)
    assert math.isnan(result.relative_lift_ci_low) and math.isnan(result.relative_lift_ci_high)


def test_everyone_converts_in_both_arms():
    result = proportion_lift(50, 50, 80, 80)
    assert result.diff == 0.0 and result.p_value == 1.0
    assert result.relative_lift == 0.0
    # Katz variance 1/a - 1/n + 1/b - 1/m is 0: the interval is the point.
    assert result.relative_lift_ci_low == pytest.approx(0.0, abs=1e-12)
    assert result.relative_lift_ci_high == pytest.approx(0.0, abs=1e-12)


def test_zero_conversions_in_one_arm():
    no_member_conversions = proportion_lift(0, 100, 5, 100)
    assert no_member_conversions.relative_lift == -1.0
    assert math.isnan(no_member_conversions.relative_lift_ci_low)
    assert math.isnan(no_member_conversions.relative_lift_ci_high)
    chi2 = stats.chi2_contingency([[0, 100], [5, 95]], correction=False)
    assert no_member_conversions.p_value == pytest.approx(chi2.pvalue, rel=1e-9)

    no_holdout_conversions = proportion_lift(5, 100, 0, 100)
    assert math.isnan(no_holdout_conversions.relative_lift)
    assert math.isnan(no_holdout_conversions.relative_lift_ci_high)
    assert no_holdout_conversions.diff == pytest.approx(0.05)
    assert no_holdout_conversions.diff_ci_low < 0.05 < no_holdout_conversions.diff_ci_high


@pytest.mark.parametrize(("n_t", "n_c"), [(0, 100), (100, 0), (0, 0)])
def test_an_empty_arm_gives_nan_and_does_not_raise(n_t, n_c):
    result = proportion_lift(0, n_t, 0, n_c)
    for name in (
        "diff",
        "diff_ci_low",
        "diff_ci_high",
        "relative_lift",
        "relative_lift_ci_low",
        "relative_lift_ci_high",
        "z",
        "p_value",
    ):
        assert math.isnan(getattr(result, name)), name
    assert (math.isnan(result.rate_t)) == (n_t == 0)
    assert (math.isnan(result.rate_c)) == (n_c == 0)


@pytest.mark.parametrize(
    "args",
    [
        (-1, 10, 1, 10),
        (1, -10, 1, 10),
        (1, 10, -1, 10),
        (1, 10, 1, -10),
        (11, 10, 1, 10),
        (1, 10, 11, 10),
        (1.5, 10, 1, 10),
        (1, 10, 1, float("nan")),
        ("3", 10, 1, 10),
        (True, 10, 1, 10),
    ],
)
def test_invalid_counts_raise(args):
    with pytest.raises(ValueError):
        proportion_lift(*args)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_invalid_alpha_raises(alpha):
    with pytest.raises(ValueError):
        proportion_lift(5, 10, 5, 10, alpha=alpha)


def test_counts_as_sql_returns_them():
    expected = proportion_lift(56, 70, 48, 80)
    assert proportion_lift(np.int64(56), 70.0, Decimal(48), np.int32(80)) == expected


# --------------------------------------------------------------------------------------------
# mean_lift
# --------------------------------------------------------------------------------------------


def _sufficient(values: np.ndarray) -> tuple[float, float, int]:
    return float(values.sum()), float((values * values).sum()), int(values.size)


def _revenue(rng: np.random.Generator, n: int, buy_rate: float, sigma: float) -> np.ndarray:
    # Per-person revenue: zero for most people, log-normal for buyers.
    return np.where(rng.random(n) < buy_rate, rng.lognormal(3.0, sigma, n), 0.0)


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_welch_matches_scipy_on_the_raw_samples(alpha):
    rng = np.random.default_rng(7)
    members = _revenue(rng, 400, 0.30, 1.0)
    holdout = _revenue(rng, 250, 0.25, 1.2)
    ours = mean_lift(*_sufficient(members), *_sufficient(holdout), alpha=alpha)
    ref = stats.ttest_ind(members, holdout, equal_var=False)
    ci = ref.confidence_interval(confidence_level=1 - alpha)

    assert ours.mean_t == pytest.approx(members.mean(), rel=1e-12)
    assert ours.mean_c == pytest.approx(holdout.mean(), rel=1e-12)
    assert ours.var_t == pytest.approx(members.var(ddof=1), rel=1e-9)
    assert ours.var_c == pytest.approx(holdout.var(ddof=1), rel=1e-9)
    assert ours.diff == pytest.approx(members.mean() - holdout.mean(), rel=1e-12)
    assert ours.t == pytest.approx(ref.statistic, rel=1e-9)
    assert ours.df == pytest.approx(ref.df, rel=1e-9)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.diff_ci_low == pytest.approx(ci.low, rel=1e-9)
    assert ours.diff_ci_high == pytest.approx(ci.high, rel=1e-9)
    assert ours.relative_lift == pytest.approx(members.mean() / holdout.mean() - 1, rel=1e-12)


def test_welch_satterthwaite_df_by_hand():
    # s_t^2 = 1 (n 5), s_c^2 = 4 (n 10): v_t = 0.2, v_c = 0.4,
    # df = 0.6^2 / (0.2^2/4 + 0.4^2/9) = 0.36 / (0.01 + 0.017778) = 12.96.
    members = np.array([1.0, 2.0, 3.0, 3.0, 1.0])
    holdout = np.concatenate([np.full(5, 3.0 + math.sqrt(3.6)), np.full(5, 3.0 - math.sqrt(3.6))])
    assert members.var(ddof=1) == pytest.approx(1.0)
    assert holdout.var(ddof=1) == pytest.approx(4.0)
    ours = mean_lift(*_sufficient(members), *_sufficient(holdout))
    assert ours.df == pytest.approx(0.36 / (0.01 + 0.16 / 9), rel=1e-9)
    assert ours.se == pytest.approx(math.sqrt(0.6), rel=1e-9)
    assert ours.t == pytest.approx(-1.0 / math.sqrt(0.6), rel=1e-9)


# scipy warns about the constant arm, which is the case under test.
@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
def test_one_arm_without_variance_matches_scipy():
    members, holdout = np.array([5.0, 5.0, 5.0]), np.array([1.0, 2.0, 3.0, 4.0])
    ours = mean_lift(*_sufficient(members), *_sufficient(holdout))
    ref = stats.ttest_ind(members, holdout, equal_var=False)
    assert ours.var_t == 0.0
    assert ours.df == pytest.approx(3.0)  # all the variance is the holdout's: n_c - 1
    assert ours.t == pytest.approx(ref.statistic, rel=1e-9)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_no_variance_in_either_arm():
    # Ten people with 3.30 each: the sum of squares cancels to rounding noise, not to zero.
    same = np.full(10, 3.3)
    equal = mean_lift(*_sufficient(same), *_sufficient(same))
    assert equal.var_t == 0.0 and equal.var_c == 0.0 and equal.se == 0.0
    assert equal.diff == 0.0 and equal.p_value == 1.0
    assert equal.diff_ci_low == 0.0 and equal.diff_ci_high == 0.0
    assert math.isnan(equal.t) and math.isnan(equal.df)

    nobody_bought = mean_lift(0.0, 0.0, 500, 0.0, 0.0, 100)
    assert nobody_bought.diff == 0.0 and nobody_bought.p_value == 1.0
    assert math.isnan(nobody_bought.relative_lift)  # over a zero mean

    different = mean_lift(*_sufficient(np.full(4, 2.0)), *_sufficient(np.full(6, 1.0)))
    assert different.diff == 1.0 and different.p_value == 0.0
    assert different.diff_ci_low == 1.0 and different.diff_ci_high == 1.0


@pytest.mark.parametrize(("n_t", "n_c"), [(0, 5), (5, 0), (0, 0), (1, 5), (5, 1)])
def test_empty_and_single_person_arms(n_t, n_c):
    members, holdout = np.arange(n_t, dtype=float), np.arange(n_c, dtype=float) + 1.0
    result = mean_lift(*_sufficient(members), *_sufficient(holdout))
    for name in ("se", "t", "df", "diff_ci_low", "diff_ci_high", "p_value"):
        assert math.isnan(getattr(result, name)), name
    assert math.isnan(result.mean_t) == (n_t == 0)
    assert math.isnan(result.mean_c) == (n_c == 0)
    assert math.isnan(result.diff) == (n_t == 0 or n_c == 0)


@pytest.mark.parametrize(
    "args",
    [
        (10.0, 100.0, -1, 1.0, 1.0, 1),  # negative n
        (10.0, 100.0, 2.5, 1.0, 1.0, 1),  # fractional n
        (10.0, -1.0, 5, 1.0, 1.0, 1),  # negative sum of squares
        (10.0, 10.0, 2, 1.0, 1.0, 1),  # sum^2 = 100 > n * sumsq = 20: no real sample
        (1.0, 1.0, 0, 1.0, 1.0, 1),  # sums without people
        (float("inf"), 1.0, 5, 1.0, 1.0, 1),
        (10.0, 100.0, 5, 1.0, 1.0, 1, 0.0),  # alpha
    ],
)
def test_invalid_sufficient_statistics_raise(args):
    with pytest.raises(ValueError):
        mean_lift(*args)


def test_negative_revenue_is_allowed():
    members, holdout = np.array([-5.0, 10.0, 20.0, 0.0]), np.array([-1.0, 3.0, 2.0])
    ours = mean_lift(*_sufficient(members), *_sufficient(holdout))
    ref = stats.ttest_ind(members, holdout, equal_var=False)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)


# --------------------------------------------------------------------------------------------
# power, sample size, minimum detectable lift
# --------------------------------------------------------------------------------------------


def _exact_power(p_c: float, p_t: float, n_t: int, n_c: int, alpha: float = 0.05) -> float:
    """Power of the pooled two-sided z-test by summing over the binomial outcomes of both
    arms (within 10 standard deviations of their means), no normal approximation."""
    z = stats.norm.ppf(1 - alpha / 2)

    def support(n: int, p: float) -> np.ndarray:
        sd = math.sqrt(n * p * (1 - p))
        return np.arange(max(0, int(n * p - 10 * sd)), min(n, int(n * p + 10 * sd)) + 1)

    x_t, x_c = support(n_t, p_t), support(n_c, p_c)
    pmf_t, pmf_c = stats.binom.pmf(x_t, n_t, p_t), stats.binom.pmf(x_c, n_c, p_c)
    conv_t, conv_c = np.meshgrid(x_t, x_c, indexing="ij")
    pooled = (conv_t + conv_c) / (n_t + n_c)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    reject = np.abs(conv_t / n_t - conv_c / n_c) > z * se
    return float(pmf_t @ reject @ pmf_c)


def test_sample_size_for_10_vs_12_percent():
    # Pooled-variance formula (Fleiss, Levin & Paik 2003, without continuity correction), by hand
    # with z_0.975 = 1.959964 and z_0.80 = 0.841621:
    # n = (1.959964 sqrt(2 * 0.11 * 0.89) + 0.841621 sqrt(0.10 * 0.90 + 0.12 * 0.88))^2 / 0.02^2
    #   = 3840.85, so 3841 per arm (3941 with Fleiss' continuity correction, not used here).
    by_hand = (
        1.959964 * math.sqrt(2 * 0.11 * 0.89) + 0.841621 * math.sqrt(0.10 * 0.90 + 0.12 * 0.88)
    ) ** 2 / 0.02**2
    assert by_hand == pytest.approx(3840.85, abs=0.01)
    size = sample_size_two_proportions(0.10, 0.20)
    assert size.n_control_exact == pytest.approx(by_hand, rel=1e-6)
    assert size.n_treatment == size.n_control == 3841
    assert size.rate_treatment == pytest.approx(0.12)
    # The normal approximation holds up: the exact power of the z-test at 3841 per arm is 0.80.
    assert _exact_power(0.10, 0.12, 3841, 3841) == pytest.approx(0.80, abs=0.005)


@pytest.mark.parametrize(
    ("base", "lift", "alpha", "power", "r_n", "printed_to"),
    [
        (0.50, 0.50, 0.05, 0.90, 76.7, 0.1),  # power.prop.test(p1 = .50, p2 = .75, power = .90)
        (0.90, 1 / 9, 0.05, 0.80, 73.37, 0.01),  # power.prop.test(p1 = 0.90, p2 = 1.0, power = 0.8)
        (0.50, 0.002, 0.001, 0.90, 10451937, 1),  # p2 = 0.501, sig.level = .001, power = 0.90
    ],
)
def test_sample_size_matches_r_power_prop_test_examples(base, lift, alpha, power, r_n, printed_to):
    size = sample_size_two_proportions(base, lift, alpha=alpha, power=power)
    assert size.n_control_exact == pytest.approx(r_n, abs=printed_to / 2)
    assert size.n_control == size.n_treatment == math.ceil(size.n_control_exact)


def test_power_matches_r_power_prop_test_example():
    # power.prop.test(n = 50, p1 = .50, p2 = .75) => power = 0.740
    assert power_two_proportions(0.50, 0.50, 50, 50) == pytest.approx(0.740, abs=5e-4)
    assert math.isnan(power_two_proportions(0.50, 0.50, 0, 50))


def test_minimum_detectable_lift_matches_r_power_prop_test_example():
    # power.prop.test(n = 50, p1 = .5, power = .90) => p2 = 0.8026 (uniroot, ~4 digits)
    lift = minimum_detectable_lift(0.50, 50, 50, alpha=0.05, power=0.90)
    assert 0.50 * (1 + lift) == pytest.approx(0.8026, abs=1e-4)


@pytest.mark.parametrize(
    ("base", "lift", "ratio"),
    [(0.10, 0.20, 4.0), (0.10, 0.20, 0.25), (0.05, 0.10, 9.0)],
)
def test_unequal_allocation_reaches_the_power_exactly(base, lift, ratio):
    size = sample_size_two_proportions(base, lift, ratio=ratio)
    assert size.n_treatment == math.ceil(ratio * size.n_control_exact)
    assert size.n_treatment / size.n_control == pytest.approx(ratio, rel=1e-3)
    exact = _exact_power(base, base * (1 + lift), size.n_treatment, size.n_control)
    assert exact == pytest.approx(0.80, abs=0.005)


def test_unequal_allocation_needs_more_people_in_total():
    balanced = sample_size_two_proportions(0.10, 0.20)
    nine_to_one = sample_size_two_proportions(0.10, 0.20, ratio=9.0)
    assert nine_to_one.n_control < balanced.n_control < nine_to_one.n_treatment
    assert nine_to_one.n_control + nine_to_one.n_treatment > 2 * balanced.n_control


def test_sample_size_for_a_drop_is_symmetric_to_the_rise():
    # 0.12 -> 0.10 is the same comparison as 0.10 -> 0.12 with the arms swapped.
    drop = sample_size_two_proportions(0.12, 0.10 / 0.12 - 1)
    assert drop.n_control == 3841


@pytest.mark.parametrize(
    ("base", "n_t", "n_c", "alpha", "power"),
    [
        (0.10, 3841, 3841, 0.05, 0.80),
        (0.05, 90000, 10000, 0.05, 0.80),
        (0.02, 5000, 20000, 0.01, 0.90),
        (0.30, 200, 200, 0.10, 0.80),
    ],
)
def test_minimum_detectable_lift_inverts_the_sample_size(base, n_t, n_c, alpha, power):
    lift = minimum_detectable_lift(base, n_t, n_c, alpha=alpha, power=power)
    assert lift > 0
    size = sample_size_two_proportions(base, lift, alpha=alpha, power=power, ratio=n_t / n_c)
    assert size.n_control_exact == pytest.approx(n_c, rel=1e-8)
    assert power_two_proportions(base, lift, n_t, n_c, alpha) == pytest.approx(power, abs=1e-9)


def test_minimum_detectable_lift_of_the_textbook_design_is_just_under_20_percent():
    # 3841 per arm is the rounded-up n for 0.10 -> 0.12, so a bit less than +20 % is detectable.
    lift = minimum_detectable_lift(0.10, 3841, 3841)
    assert 0.199 < lift < 0.20


def test_minimum_detectable_lift_shrinks_with_the_holdout():
    lifts = [minimum_detectable_lift(0.05, 50_000, n_c) for n_c in (1_000, 5_000, 20_000)]
    assert lifts[0] > lifts[1] > lifts[2] > 0


def test_minimum_detectable_lift_when_nothing_is_detectable():
    # Three per arm at 50 %: even a rate of 100 % has power Phi(-0.67) = 0.25.
    assert math.isnan(minimum_detectable_lift(0.50, 3, 3))
    assert math.isnan(minimum_detectable_lift(0.50, 0, 100))
    assert math.isnan(minimum_detectable_lift(0.50, 100, 0))


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((0.0, 0.1), {}),
        ((1.0, 0.1), {}),
        ((0.1, 0.0), {}),  # no lift
        ((0.6, 1.0), {}),  # 1.2 is not a rate
        ((0.1, -1.5), {}),
        ((0.1, 0.2), {"alpha": 0.0}),
        ((0.1, 0.2), {"power": 1.0}),
        ((0.1, 0.2), {"ratio": 0.0}),
        ((0.1, 0.2), {"ratio": -2.0}),
    ],
)
def test_invalid_sample_size_input_raises(args, kwargs):
    with pytest.raises(ValueError):
        sample_size_two_proportions(*args, **kwargs)


@pytest.mark.parametrize(
    "args",
    [(0.0, 100, 100), (1.0, 100, 100), (0.1, -1, 100), (0.1, 100, -1), (0.1, 100, 100, 1.2)],
)
def test_invalid_minimum_detectable_lift_input_raises(args):
    with pytest.raises(ValueError):
        minimum_detectable_lift(*args)


# --------------------------------------------------------------------------------------------
# lift_table
# --------------------------------------------------------------------------------------------


def _row(segment_id, n_t, conv_t, n_c, conv_c, revenue=(0.0, 0.0, 0.0, 0.0)):
    sum_t, sumsq_t, sum_c, sumsq_c = revenue
    return {
        "segment_id": segment_id,
        "n_t": n_t,
        "conv_t": conv_t,
        "n_c": n_c,
        "conv_c": conv_c,
        "rev_sum_t": sum_t,
        "rev_sumsq_t": sumsq_t,
        "rev_sum_c": sum_c,
        "rev_sumsq_c": sumsq_c,
    }


EXPECTED_COLUMNS = [
    "segment_id",
    "members",
    "holdout",
    "conversion_rate_members",
    "conversion_rate_holdout",
    "conversion_lift",
    "conversion_lift_ci_low",
    "conversion_lift_ci_high",
    "conversion_p_value",
    "revenue_per_member",
    "revenue_per_holdout",
    "revenue_lift",
    "revenue_diff_ci_low",
    "revenue_diff_ci_high",
    "revenue_p_value",
    "holdout_needed_for_10pct",
    "minimum_detectable_lift",
    "underpowered",
]


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = np.random.default_rng(3)
    members, holdout = _revenue(rng, 90_000, 0.055, 1.0), _revenue(rng, 30_000, 0.05, 1.0)
    revenue = (*_sufficient(members)[:2], *_sufficient(holdout)[:2])
    rows = [
        _row("large", 90_000, 4_950, 30_000, 1_500, revenue),
        _row("small", 9_000, 540, 1_000, 50, (None, None, None, None)),
        _row("no_holdout", 10, 1, 0, 0),
        _row("no_conversions", 100, 0, 100, 0),
        _row("no_holdout_conversions", 400, 8, 400, 0),
    ]
    return lift_table(rows, alpha=0.05, power=0.8), members, holdout


def test_lift_table_columns_and_types(table):
    result = table[0]
    assert result.column_names == EXPECTED_COLUMNS
    assert result.num_rows == 5
    assert result.schema.field("segment_id").type == pa.string()
    assert result.schema.field("members").type == pa.int64()
    assert result.schema.field("holdout_needed_for_10pct").type == pa.int64()
    assert result.schema.field("underpowered").type == pa.bool_()
    for name in EXPECTED_COLUMNS[3:15] + ["minimum_detectable_lift"]:
        assert result.schema.field(name).type == pa.float64(), name
    assert LIFT_TABLE_SCHEMA.names == EXPECTED_COLUMNS


def test_lift_table_values_of_a_large_segment(table):
    result, members, holdout = table
    large = result.to_pylist()[0]
    conversion = proportion_lift(4_950, 90_000, 1_500, 30_000)
    assert large["members"] == 90_000 and large["holdout"] == 30_000
    assert large["conversion_rate_members"] == 0.055
    assert large["conversion_rate_holdout"] == 0.05
    assert large["conversion_lift"] == pytest.approx(0.1, abs=1e-6)
    assert large["conversion_lift_ci_low"] == round(conversion.relative_lift_ci_low, 6)
    assert large["conversion_p_value"] == round(conversion.p_value, 6)
    ref = stats.ttest_ind(members, holdout, equal_var=False)
    assert large["revenue_per_member"] == round(members.mean(), 6)
    assert large["revenue_per_holdout"] == round(holdout.mean(), 6)
    assert large["revenue_lift"] == round(members.mean() / holdout.mean() - 1, 6)
    assert large["revenue_p_value"] == pytest.approx(ref.pvalue, abs=1e-6)
    assert large["revenue_diff_ci_low"] == pytest.approx(ref.confidence_interval().low, abs=1e-6)
    # Holdout needed for +10 % over 5 % at 3 members per holdout person.
    needed = sample_size_two_proportions(0.05, 0.10, ratio=3.0).n_control
    assert large["holdout_needed_for_10pct"] == needed
    assert large["minimum_detectable_lift"] == round(
        minimum_detectable_lift(0.05, 90_000, 30_000), 6
    )
    assert large["minimum_detectable_lift"] < 0.10
    assert large["underpowered"] is False


def test_lift_table_flags_a_small_holdout(table):
    small = table[0].to_pylist()[1]
    assert (
        small["holdout_needed_for_10pct"]
        == sample_size_two_proportions(0.05, 0.1, ratio=9.0).n_control
    )
    assert small["holdout"] < small["holdout_needed_for_10pct"]
    assert small["minimum_detectable_lift"] > 0.10
    assert small["underpowered"] is True
    assert small["revenue_per_member"] is None and small["revenue_p_value"] is None


def test_lift_table_degenerate_segments_are_null_and_underpowered(table):
    rows = {row["segment_id"]: row for row in table[0].to_pylist()}
    no_holdout = rows["no_holdout"]
    assert no_holdout["conversion_rate_members"] == 0.1
    for name in ("conversion_rate_holdout", "conversion_lift", "conversion_p_value"):
        assert no_holdout[name] is None, name
    assert no_holdout["holdout_needed_for_10pct"] is None
    assert no_holdout["minimum_detectable_lift"] is None
    assert no_holdout["underpowered"] is True

    nothing = rows["no_conversions"]
    assert nothing["conversion_lift"] is None and nothing["conversion_p_value"] == 1.0
    assert nothing["revenue_p_value"] == 1.0 and nothing["revenue_lift"] is None
    assert nothing["holdout_needed_for_10pct"] is None and nothing["underpowered"] is True

    # No holdout conversions: no relative lift, but the pooled rate (1 %) sizes the holdout.
    no_base = rows["no_holdout_conversions"]
    assert no_base["conversion_lift"] is None
    assert no_base["holdout_needed_for_10pct"] == sample_size_two_proportions(0.01, 0.1).n_control
    assert no_base["underpowered"] is True


def test_lift_table_floats_are_rounded_to_6_decimals(table):
    for row in table[0].to_pylist():
        for name, value in row.items():
            if isinstance(value, float):
                assert value == round(value, 6), (row["segment_id"], name, value)


def test_underpowered_flips_exactly_at_the_needed_holdout():
    # At 10 % base, +20 % needs 3841 per arm (the textbook figure above).
    rows = [_row("short", 3_840, 461, 3_840, 384), _row("enough", 3_850, 462, 3_850, 385)]
    result = lift_table(rows, target_lift=0.20).to_pylist()
    assert [row["holdout_needed_for_10pct"] for row in result] == [3841, 3841]
    assert [row["underpowered"] for row in result] == [True, False]
    assert result[0]["minimum_detectable_lift"] > 0.20 > result[1]["minimum_detectable_lift"]


def test_lift_table_inputs():
    empty = lift_table([])
    assert empty.num_rows == 0 and empty.column_names == EXPECTED_COLUMNS
    rows = [_row(7, 1000, 60, 1000, 50), _row(8, 2000, 100, 500, 25)]
    from_dicts = lift_table(rows)
    assert from_dicts.schema.field("segment_id").type == pa.int64()
    assert lift_table(pa.Table.from_pylist(rows)).equals(from_dicts)
    assert lift_table(iter(rows)).equals(from_dicts)
    with pytest.raises(ValueError):
        lift_table([_row("bad", 10, 11, 10, 1)])
    with pytest.raises(ValueError):
        lift_table(rows, target_lift=0.0)


def test_auc_standard_error_matches_hanley_and_mcneil():
    from ml.stats import auc_standard_error

    # Hanley & McNeil (1982), the radiologists' example: A = 0.893 on 51 abnormal and 58 normal
    # images, SE 0.032
    assert auc_standard_error(0.893, 51, 58) == pytest.approx(0.032, abs=0.001)
    # it shrinks as 1/sqrt(n)
    assert auc_standard_error(0.8, 400, 400) == pytest.approx(
        auc_standard_error(0.8, 100, 100) / 2, rel=0.02
    )
    assert auc_standard_error(0.7, 0, 10) == float("inf")
