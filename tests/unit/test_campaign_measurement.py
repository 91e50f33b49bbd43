"""Campaign measurement (ml/campaign_measurement.py): error rates on simulated experiments built
the way the generator builds them, and the comparison table's rows."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from ml.campaign_measurement import ALPHA, POWER, compare, comparison_table
from ml.stats import power_two_proportions, sample_size_two_proportions

TRIALS = 2000


def _rates(rng: np.random.Generator, n: int) -> np.ndarray:
    """Expected purchases per person over a four-week window, as skewed as the generator's."""
    return rng.gamma(0.8, 0.6, n)


def _experiment(rng, pool, n_t, n_c, uplift_t, uplift_c=1.0, trials=TRIALS):
    """Buyers per arm in each trial: persons drawn afresh from `pool` and split at random, and a
    person buys when a Poisson count of purchases at their rate times the arm's uplift is
    positive (the generator adds purchases at (uplift - 1) x rate)."""
    buy_t = rng.poisson(rng.choice(pool, (trials, n_t)) * uplift_t) > 0
    buy_c = rng.poisson(rng.choice(pool, (trials, n_c)) * uplift_c) > 0
    return buy_t.sum(axis=1), buy_c.sum(axis=1)


def _share(rates: np.ndarray, uplift: float) -> float:
    return float(np.mean(1.0 - np.exp(-rates * uplift)))


def _bounds(rate: float, trials: int = TRIALS) -> tuple[float, float]:
    """rate +- 4 binomial standard errors over `trials` trials."""
    se = np.sqrt(rate * (1.0 - rate) / trials)
    return rate - 4.0 * se, rate + 4.0 * se


def _results(conv_t, n_t, conv_c, n_c):
    return [compare(int(a), n_t, int(b), n_c) for a, b in zip(conv_t, conv_c, strict=True)]


@pytest.mark.parametrize("seed", [1, 2])
def test_null_campaigns_are_significant_at_the_stated_alpha(seed):
    rng = np.random.default_rng(seed)
    pool = _rates(rng, 200_000)
    conv_t, conv_c = _experiment(rng, pool, 280, 220, 1.0)
    results = _results(conv_t, 280, conv_c, 220)
    false_positive = np.mean([r["significant"] for r in results])
    low, high = _bounds(ALPHA)
    assert low <= false_positive <= high, false_positive


@pytest.mark.parametrize(("seed", "uplift"), [(3, 2.0), (4, 1.3)])
def test_true_effects_are_found_with_the_stated_power_and_covered(seed, uplift):
    """Arms sized by sample_size_two_proportions for the true conversion lift at power 0.8
    detect it that often, and the Katz interval covers the true lift 95% of the time."""
    rng = np.random.default_rng(seed)
    pool = _rates(rng, 200_000)
    base, treated_share = _share(pool, 1.0), _share(pool, uplift)
    true_lift = treated_share / base - 1.0
    n = sample_size_two_proportions(base, true_lift, ALPHA, POWER).n_control
    conv_t, conv_c = _experiment(rng, pool, n, n, uplift, trials=1000)
    results = _results(conv_t, n, conv_c, n)
    found = np.mean([r["significant"] and r["relative_lift"] > 0 for r in results])
    low, _ = _bounds(POWER, 1000)
    assert found >= low, (found, n)
    covered = np.mean(
        [r["relative_lift_ci_low"] <= true_lift <= r["relative_lift_ci_high"] for r in results]
    )
    low, high = _bounds(1.0 - ALPHA, 1000)
    assert low <= covered <= high, covered


def test_power_reported_for_the_true_lift_matches_the_rate_found():
    rng = np.random.default_rng(5)
    pool = _rates(rng, 200_000)
    base, treated_share = _share(pool, 1.0), _share(pool, 1.8)
    true_lift = treated_share / base - 1.0
    n = 250
    conv_t, conv_c = _experiment(rng, pool, n, n, 1.8, trials=1000)
    found = np.mean([r["significant"] for r in _results(conv_t, n, conv_c, n)])
    expected = power_two_proportions(base, true_lift, n, n, ALPHA)
    low, high = _bounds(expected, 1000)
    assert low <= found <= high, (found, expected)


def test_ab_of_two_creatives_finds_a_real_difference_and_not_an_absent_one():
    rng = np.random.default_rng(6)
    pool = _rates(rng, 200_000)
    share_a, share_b = _share(pool, 1.8), _share(pool, 1.0)
    n = sample_size_two_proportions(share_b, share_a / share_b - 1.0, ALPHA, POWER).n_control
    conv_a, conv_b = _experiment(rng, pool, n, n, 1.8, 1.0, trials=1000)
    found = np.mean([r["significant"] for r in _results(conv_a, n, conv_b, n)])
    assert found >= _bounds(POWER, 1000)[0], found
    conv_a, conv_b = _experiment(rng, pool, n, n, 1.3, 1.3, trials=1000)
    false_positive = np.mean([r["significant"] for r in _results(conv_a, n, conv_b, n)])
    low, high = _bounds(ALPHA, 1000)
    assert low <= false_positive <= high, false_positive


def test_sample_size_per_arm_is_the_textbook_one():
    """p 0.10 vs 0.12, alpha 0.05, power 0.8: 3841 per arm (R power.prop.test)."""
    result = compare(120, 1000, 100, 1000)
    assert result["relative_lift"] == pytest.approx(0.2)
    assert result["n_per_arm_for_observed"] == 3841
    assert result["n_per_arm_for_target"] == sample_size_two_proportions(0.1, 0.1).n_control
    assert result["significant"] is False


def _campaign(campaign_id, conv_t, n_t, conv_c, n_c, salt=None, arm=(None, None)):
    return {
        "campaign_id": campaign_id,
        "segment_id": "crm_customers" if salt else "s1",
        "split_salt": salt,
        "arm_from": arm[0],
        "arm_to": arm[1],
        "launched_on": date(2026, 6, 3),
        "measured_through": date(2026, 6, 30),
        "n_t": n_t,
        "conv_t": conv_t,
        "n_c": n_c,
        "conv_c": conv_c,
    }


def test_comparison_table_has_a_lift_row_per_campaign_and_ab_rows_for_disjoint_arms():
    table = comparison_table(
        [
            _campaign("seg", 30, 100, 5, 20),
            _campaign("a", 150, 300, 40, 100, "x", (0.2, 0.6)),
            _campaign("b", 100, 300, 40, 100, "x", (0.6, 1.0)),
            _campaign("c", 100, 300, 40, 100, "x", (0.5, 0.7)),  # overlaps both
            _campaign("solo", 90, 300, 60, 300, "y", (0.5, 1.0)),
        ]
    ).to_pylist()
    lift = {r["campaign_id"]: r for r in table if r["comparison"] == "lift"}
    ab = [(r["campaign_id"], r["baseline"]) for r in table if r["comparison"] == "ab"]
    assert set(lift) == {"seg", "a", "b", "c", "solo"}
    assert lift["seg"]["baseline"] == "holdout" and lift["a"]["baseline"] == "control"
    assert ab == [("a", "b")]
    row = next(r for r in table if r["comparison"] == "ab")
    assert (row["n_treatment"], row["buyers_treatment"]) == (300, 150)
    assert (row["n_baseline"], row["buyers_baseline"]) == (300, 100)
    assert row["relative_lift"] == pytest.approx(0.5)
    assert row["significant"] is True
    assert row["relative_lift_ci_low"] > 0.0


def test_empty_arms_give_nulls_not_errors():
    row = comparison_table([_campaign("seg", 0, 0, 0, 0)]).to_pylist()[0]
    assert row["relative_lift"] is None and row["p_value"] is None
    assert row["significant"] is None and row["n_per_arm_for_target"] is None
