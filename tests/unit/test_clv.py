"""ml.clv against published values, independent computations and simulated data.

References:
- Fader PS, Hardie BGS & Lee KL (2005), "'Counting Your Customers' the Easy Way: An Alternative
  to the Pareto/NBD Model", Marketing Science 24(2):275-284: the BG/NBD MLE on the CDNOW sample
  (calibration weeks 1-39) is r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4.
- Fader, Hardie & Lee (2005), "RFM and CLV", JMR 42(4), and Fader & Hardie (2013), "The
  Gamma-Gamma Model of Monetary Value" (brucehardie.com/notes/025): p = 6.25, q = 3.74,
  v = 15.44 on the 946 CDNOW repeat buyers.
- Hardie's BG/NBD and Gamma-Gamma spreadsheets (brucehardie.com/notes/004 and 025; the values
  as quoted in the lifetimes test suite): E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226, E[X(t)]
  for a new customer, and the conditional expected spend of the first ten CDNOW customers.

Data: bench/cdnow_data/cdnow_summary.csv (see its README).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from ml import clv

CDNOW = Path(__file__).resolve().parents[2] / "bench" / "cdnow_data" / "cdnow_summary.csv"
HOLDOUT_WEEKS = 39.0

BGNBD_TRUE = {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.43}
GG_TRUE = {"p": 6.25, "q": 3.74, "v": 15.44}


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    data = np.genfromtxt(CDNOW, delimiter=",", names=True)
    return {name: np.asarray(data[name], dtype=np.float64) for name in data.dtype.names}


@pytest.fixture(scope="module")
def cdnow_bgnbd(cdnow) -> clv.BGNBDParams:
    return clv.fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="module")
def cdnow_gg(cdnow) -> clv.GammaGammaParams:
    return clv.fit_gamma_gamma(cdnow["frequency"], cdnow["monetary_value"])


def simulate_bgnbd(rng, n, r, alpha, a, b, t_min, t_max):
    """Customers from the BG/NBD generative process, observed for T ~ U(t_min, t_max)."""
    lam = rng.gamma(r, 1.0 / alpha, n)  # Gamma(r, rate alpha)
    p = rng.beta(a, b, n)
    T = rng.uniform(t_min, t_max, n)
    drop_after = rng.geometric(p)  # inactive right after this many repeat purchases
    n_events = rng.poisson(lam * T)  # repeat purchases had the customer never dropped out
    x = np.minimum(n_events, drop_after)
    # Given n events of a Poisson process on (0, T], the k-th is T x Beta(k, n - k + 1).
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n_events - x + 1), 0.0)
    return x.astype(np.float64), tx, T


# --------------------------------------------------------------------------------------------
# Parameter recovery on simulated data
# --------------------------------------------------------------------------------------------


def _within(est, truth: dict[str, float], k: float) -> dict[str, float]:
    """Errors in standard errors; the fit's asymptotic SE must also be informative (< 10 %)."""
    assert est.converged and est.se is not None
    z = {}
    for name, value in truth.items():
        se = est.se[name]
        assert se / value < 0.10, (name, se)
        z[name] = (getattr(est, name) - value) / se
    assert all(abs(v) <= k for v in z.values()), z
    return z


def test_bgnbd_recovers_simulated_parameters():
    # Tolerance: 3 asymptotic standard errors (observed information) per parameter, a two-sided
    # 0.27 % miss rate for a correct MLE. With 20,000 customers the SEs are 1.5 % (r), 2.5 %
    # (alpha), 6 % (a) and 7-8 % (b) of the values; over seeds 0-4 every error was < 1.6 SE.
    rng = np.random.default_rng(20050301)
    x, tx, T = simulate_bgnbd(rng, 20_000, **BGNBD_TRUE, t_min=30.0, t_max=78.0)
    est = clv.fit_bgnbd(x, tx, T)
    z = _within(est, BGNBD_TRUE, k=3.0)
    print(f"BG/NBD recovery (n=20000): {est.as_dict()}; errors in SE: {z}")


def test_gamma_gamma_recovers_simulated_parameters():
    # Same 3-SE tolerance. Spend of a customer with x transactions: z_j ~ Gamma(p, nu),
    # nu ~ Gamma(q, v), so the mean zbar ~ Gamma(p x, nu x).
    rng = np.random.default_rng(20050302)
    x = rng.geometric(0.3, 10_000).astype(np.float64)
    nu = rng.gamma(GG_TRUE["q"], 1.0 / GG_TRUE["v"], len(x))
    zbar = rng.gamma(GG_TRUE["p"] * x, 1.0 / (nu * x))
    est = clv.fit_gamma_gamma(x, zbar)
    z = _within(est, GG_TRUE, k=3.0)
    print(f"Gamma-Gamma recovery (n=10000): {est.as_dict()}; errors in SE: {z}")


# --------------------------------------------------------------------------------------------
# Published CDNOW estimates
# --------------------------------------------------------------------------------------------


def test_cdnow_data_matches_the_papers(cdnow):
    assert len(cdnow["frequency"]) == 2357
    assert int(np.sum(cdnow["frequency"] > 0)) == 946  # repeat buyers in the Gamma-Gamma fit
    assert cdnow["T"].max() == pytest.approx(272 / 7, abs=1e-6)  # week 39


def test_cdnow_bgnbd_matches_published_estimates(cdnow, cdnow_bgnbd):
    p = cdnow_bgnbd
    assert p.converged and p.n == 2357
    # Published to 3 decimals: a correct fit is within half a unit of the last place.
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert getattr(p, name) == pytest.approx(value, abs=5e-4), name
    assert p.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    # The published point is (to its rounding) the optimum of our likelihood too.
    ll_published = clv.bgnbd_log_likelihood(
        clv.BGNBDParams(**published), cdnow["frequency"], cdnow["recency"], cdnow["T"]
    )
    assert p.log_likelihood - 0.01 < ll_published <= p.log_likelihood
    print(f"CDNOW BG/NBD: {p.as_dict()}")


def test_cdnow_gamma_gamma_matches_published_estimates(cdnow_gg):
    g = cdnow_gg
    assert g.converged and g.n == 946
    for name, value in {"p": 6.25, "q": 3.74, "v": 15.44}.items():
        assert getattr(g, name) == pytest.approx(value, abs=5e-3), name
    print(f"CDNOW Gamma-Gamma: {g.as_dict()}")


def test_cdnow_spreadsheet_values(cdnow, cdnow_bgnbd, cdnow_gg):
    # Hardie's spreadsheets carry their own (Solver) estimates, equal to ours to about 1e-4, so
    # derived quantities agree to about 1e-3.
    p = cdnow_bgnbd
    assert clv.expected_transactions(p, 39.0, 2, 30.43, 38.86)[0] == pytest.approx(1.226, abs=1e-3)
    t = np.array([0.1429, 1.0, 3.0, 31.8571, 32.0, 78.0])
    expected = [0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576]
    np.testing.assert_allclose(clv.expected_transactions_new(p, t), expected, atol=1e-3)
    spend = clv.conditional_expected_spend(
        cdnow_gg, cdnow["frequency"][:10], cdnow["monetary_value"][:10]
    )
    expected = [24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17]
    np.testing.assert_allclose(spend, expected, atol=0.015)
    assert cdnow_gg.population_mean_spend == pytest.approx(35.17, abs=0.01)


def test_cdnow_holdout_weeks_40_to_78(cdnow, cdnow_bgnbd):
    """Calibrated on weeks 1-39, predict each customer's purchases in weeks 40-78.

    FHL (2005) show the holdout fit graphically (by calibration frequency, Figure 4) and publish
    no per-customer error, so the model is held against naive predictors instead: the
    customer's calibration rate x / T times 39 weeks, and zero for everyone.
    """
    x, tx, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    actual = cdnow["holdout_frequency"]
    model = clv.expected_transactions(cdnow_bgnbd, HOLDOUT_WEEKS, x, tx, T)
    naive = x / T * HOLDOUT_WEEKS

    def mae(pred):
        return float(np.mean(np.abs(pred - actual)))

    def rmse(pred):
        return float(np.sqrt(np.mean((pred - actual) ** 2)))

    zero = np.zeros_like(actual)
    print(
        f"CDNOW holdout (n=2357): MAE model {mae(model):.3f} / naive {mae(naive):.3f} / "
        f"zero {mae(zero):.3f}; RMSE model {rmse(model):.3f} / naive {rmse(naive):.3f} / "
        f"zero {rmse(zero):.3f}; total predicted {model.sum():.0f} vs actual {actual.sum():.0f}"
    )
    assert mae(model) < 0.85 * mae(naive)
    assert rmse(model) < 0.80 * min(rmse(naive), rmse(zero))
    # Conditional expectations rise with calibration frequency, as the actual means do.
    means = [model[np.minimum(x, 7) == k].mean() for k in range(8)]
    assert np.all(np.diff(means) > 0)


def test_cdnow_first_90_days_after_calibration(cdnow, cdnow_bgnbd):
    """The issue's window: each customer's purchase days in the first 90 days after week 39
    (1997-10-01 to 1997-12-29, `holdout_frequency_90d`), against E[Y(90 / 7 weeks)].

    `expected_transactions_90d` is this conditional expectation for a customer with a purchase
    in the calibration window, so the per-customer error of ours and of the plain BG/NBD is one
    figure; it is held against the naive rate and zero, and its total against the actual."""
    x, tx, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    actual = cdnow["holdout_frequency_90d"]
    horizon = 90 / 7
    model = clv.expected_transactions(cdnow_bgnbd, horizon, x, tx, T)
    naive = x / T * horizon
    zero = np.zeros_like(actual)

    def mae(pred):
        return float(np.mean(np.abs(pred - actual)))

    def rmse(pred):
        return float(np.sqrt(np.mean((pred - actual) ** 2)))

    print(
        f"CDNOW first 90 days (n=2357): MAE model {mae(model):.3f} / naive {mae(naive):.3f} / "
        f"zero {mae(zero):.3f}; RMSE model {rmse(model):.3f} / naive {rmse(naive):.3f} / "
        f"zero {rmse(zero):.3f}; total predicted {model.sum():.0f} vs actual {actual.sum():.0f}"
    )
    assert mae(model) < mae(naive)
    assert rmse(model) < min(rmse(naive), rmse(zero))
    assert model.sum() == pytest.approx(actual.sum(), rel=0.15)


# --------------------------------------------------------------------------------------------
# Closed forms against numerical integration
# --------------------------------------------------------------------------------------------


def _expected_by_quadrature(params, t, x, tx, T):
    """P(alive) x E[Y(t) | alive]; alive at T: lambda ~ Gamma(r+x, alpha+T), p ~ Beta(a, b+x),
    and E[Y(t) | lambda, p] = (1 - exp(-lambda p t)) / p (FHL 2005, section 3)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b

    def integrand(q):
        no_purchase = ((alpha + T) / (alpha + T + q * t)) ** (r + x)
        return (1.0 - no_purchase) / q * stats.beta.pdf(q, a, b + x)

    inner = integrate.quad(integrand, 0.0, 1.0, limit=200, epsabs=1e-13, epsrel=1e-11)[0]
    return inner * clv.probability_alive(params, x, tx, T)[0]


@pytest.mark.parametrize(
    "params",
    [
        clv.BGNBDParams(0.243, 4.414, 0.793, 2.426),
        clv.BGNBDParams(2.0, 30.0, 1.0, 3.0),  # a = 1: the closed form's 0/0 point
        clv.BGNBDParams(0.5, 10.0, 3.0, 0.4),
    ],
)
def test_expected_transactions_matches_quadrature(params):
    cases = [  # (x, t_x, T, t): typical, large x, horizons far beyond T, a tiny horizon
        (2, 30.43, 38.86, 39.0),
        (0, 0.0, 38.86, 39.0),
        (500, 3000.0, 3010.0, 1000.0),
        (1000, 299.0, 300.0, 5000.0),
        (5, 1.0, 300.0, 1e4),
        (3, 10.0, 20.0, 0.01),
    ]
    for x, tx, T, t in cases:
        got = clv.expected_transactions(params, t, x, tx, T)[0]
        assert got == pytest.approx(_expected_by_quadrature(params, t, x, tx, T), rel=1e-6)
    for t in (1.0, 78.0, 1e5):  # a new customer: x = t_x = T = 0
        quad = _expected_by_quadrature(params, t, 0, 0.0, 0.0)
        assert clv.expected_transactions_new(params, t) == pytest.approx(quad, rel=1e-6)


def test_gradients_match_finite_differences(cdnow):
    x, tx, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    w = np.ones_like(x)
    start = np.log([0.5, 3.0, 0.7, 2.0])
    for penalizer in (0.0, 0.3):

        def f(v, pen=penalizer):
            return clv._bgnbd_objective(v, x, tx, T, w, pen)

        err = optimize.check_grad(lambda v: f(v)[0], lambda v: f(v)[1], start)
        assert err < 1e-5 * max(1.0, np.linalg.norm(f(start)[1]))
    rep = x > 0
    xs, ms = x[rep], cdnow["monetary_value"][rep]

    def g(v):
        return clv._gg_objective(v, xs, ms, np.ones_like(xs))

    start = np.log([2.0, 3.0, 10.0])
    assert optimize.check_grad(lambda v: g(v)[0], lambda v: g(v)[1], start) < 1e-5


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


def test_probability_alive_properties(cdnow_bgnbd):
    p = cdnow_bgnbd
    assert np.all(clv.probability_alive(p, [0, 0, 0], [0.0, 0.0, 0.0], [0.0, 5.0, 500.0]) == 1.0)
    T = np.linspace(10.0, 500.0, 50)
    alive = clv.probability_alive(p, np.full(50, 3.0), np.full(50, 10.0), T)
    assert np.all(np.diff(alive) < 0) and np.all((alive > 0) & (alive <= 1))
    # More purchases by the same recency and age: a better sign of life when recent.
    recent = clv.probability_alive(p, [1, 5, 20], [30.0, 30.0, 30.0], [31.0, 31.0, 31.0])
    assert np.all(np.diff(recent) > 0)
    # Invalid rows are NaN, not an error.
    bad = clv.probability_alive(p, [np.nan, 2, 2], [0.0, 40.0, -1.0], [10.0, 30.0, 30.0])
    assert np.all(np.isnan(bad))


def test_expected_transactions_increase_with_horizon(cdnow_bgnbd):
    p = cdnow_bgnbd
    t = np.array([0.0, 1.0, 4.0, 13.0, 52.0, 520.0, 5200.0])
    for x, tx, T in [(0, 0.0, 38.0), (2, 30.43, 38.86), (10, 5.0, 38.0), (25, 38.0, 38.5)]:
        e = clv.expected_transactions(p, t, np.full(len(t), x), np.full(len(t), tx), T)
        assert e[0] == 0.0 and np.all(np.diff(e) > 0), (x, e)
    new = clv.expected_transactions_new(p, t)
    assert new[0] == 0.0 and np.all(np.diff(new) > 0)
    with pytest.raises(ValueError):
        clv.expected_transactions(p, -1.0, [1], [1.0], [2.0])


def test_weights_compress_identical_rows(cdnow):
    x, tx, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    rows, counts = np.unique(np.column_stack([x, tx, T]), axis=0, return_counts=True)
    assert len(rows) < len(x)
    full = clv.fit_bgnbd(x, tx, T)
    compressed = clv.fit_bgnbd(rows[:, 0], rows[:, 1], rows[:, 2], weights=counts)
    assert compressed.n == full.n == 2357
    assert compressed.log_likelihood == pytest.approx(full.log_likelihood, abs=1e-6)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(compressed, name) == pytest.approx(getattr(full, name), rel=1e-4)


def test_penalizer_shrinks_towards_one(cdnow, cdnow_bgnbd):
    pen = clv.fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"], penalizer=0.1)
    assert pen.converged and pen.penalizer == 0.1
    assert pen.log_likelihood < cdnow_bgnbd.log_likelihood

    # The penalised optimum has the smaller penalty (else the MLE would beat it on both terms).
    def penalty(p):
        return sum(math.log(getattr(p, name)) ** 2 for name in ("r", "a", "b"))

    assert penalty(pen) < penalty(cdnow_bgnbd)


def test_conditional_expected_spend_prior_and_q_at_most_one():
    g = clv.GammaGammaParams(6.25, 3.74, 15.44)
    prior = 6.25 * 15.44 / 2.74
    out = clv.conditional_expected_spend(g, [0, np.nan, 3, 3], [0.0, np.nan, -5.0, 20.0])
    np.testing.assert_allclose(out[:3], prior)  # no usable history: the population mean
    assert out[3] == pytest.approx(6.25 * (15.44 + 60.0) / (6.25 * 3 + 2.74))
    heavy = clv.GammaGammaParams(2.0, 0.8, 10.0)  # q <= 1: infinite population mean
    assert math.isnan(heavy.population_mean_spend)
    out = clv.conditional_expected_spend(heavy, [0, 2], [0.0, 20.0])
    assert math.isnan(out[0]) and out[1] == pytest.approx(2.0 * 50.0 / 3.8)


def test_fits_reject_malformed_input():
    with pytest.raises(ValueError):
        clv.fit_bgnbd([1, 2], [1.0, 1.0, 1.0], [3.0, 3.0])
    with pytest.raises(ValueError):
        clv.fit_bgnbd([1], [5.0], [3.0])  # recency after T
    with pytest.raises(ValueError):
        clv.fit_bgnbd([], [], [])
    with pytest.raises(ValueError):
        clv.fit_gamma_gamma([0, 0], [0.0, 0.0])


# --------------------------------------------------------------------------------------------
# clv_scores
# --------------------------------------------------------------------------------------------

SCORE_KEYS = {
    "expected_transactions_short",
    "expected_transactions_long",
    "probability_alive",
    "expected_spend_per_transaction",
    "expected_spend_long",
}


def test_clv_scores_on_cdnow(cdnow, cdnow_bgnbd, cdnow_gg):
    x, tx, T, m = cdnow["frequency"], cdnow["recency"], cdnow["T"], cdnow["monetary_value"]
    # One customer with a broken history is scored with the new-customer priors.
    x, tx = x.copy(), tx.copy()
    tx[0] = np.nan
    scores, metrics = clv.clv_scores(x, tx, T, m, horizon_short=13.0, horizon_long=52.0)
    assert set(scores) == SCORE_KEYS and all(len(v) == 2357 for v in scores.values())
    assert metrics["status"] == "trained" and metrics["n_invalid"] == 1
    bg, gg = metrics["bgnbd"], metrics["gamma_gamma"]
    assert bg["status"] == gg["status"] == "trained"
    # The broken row enters neither fit (customer 1 is a repeat buyer).
    assert bg["n"] == 2356 and bg["log_likelihood"] < 0 and gg["n"] == 945
    assert bg["r"] == pytest.approx(cdnow_bgnbd.r, rel=0.01)
    assert gg["q"] == pytest.approx(cdnow_gg.q, rel=0.01)
    short, long_ = scores["expected_transactions_short"], scores["expected_transactions_long"]
    assert np.all(np.isfinite(long_)) and np.all(long_ > short)
    assert long_[0] == pytest.approx(bg["expected_transactions_new_long"])
    assert math.isnan(scores["probability_alive"][0])
    assert scores["expected_spend_per_transaction"][0] == pytest.approx(gg["population_mean_spend"])
    np.testing.assert_allclose(
        scores["expected_spend_long"], long_ * scores["expected_spend_per_transaction"]
    )


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "reason"),
    [
        ([], [], [], "0 valid customers"),
        ([3], [10.0], [20.0], "1 valid customers"),
        (np.zeros(500), np.zeros(500), np.linspace(1, 50, 500), "0 repeat buyers"),
        ([np.nan] * 200, [np.nan] * 200, [np.nan] * 200, "0 valid customers"),
    ],
)
def test_clv_scores_skips_degenerate_input(frequency, recency, T, reason):
    n = len(frequency)
    scores, metrics = clv.clv_scores(frequency, recency, T, np.zeros(n), 13.0, 52.0)
    assert metrics["status"] == "skipped" and reason in metrics["reason"]
    assert metrics["bgnbd"]["status"] == metrics["gamma_gamma"]["status"] == "skipped"
    assert set(scores) == SCORE_KEYS
    for values in scores.values():
        assert len(values) == n and np.all(np.isnan(values))


def test_clv_scores_without_spend_and_with_few_spenders():
    rng = np.random.default_rng(7)
    x, tx, T = simulate_bgnbd(rng, 2000, **BGNBD_TRUE, t_min=30.0, t_max=78.0)
    scores, metrics = clv.clv_scores(x, tx, T, None, 13.0, 52.0)
    assert metrics["status"] == "trained"
    assert metrics["gamma_gamma"]["reason"] == "no monetary values given"
    assert np.all(np.isfinite(scores["expected_transactions_long"]))
    assert np.all(np.isnan(scores["expected_spend_long"]))
    spend = np.where(np.arange(len(x)) < 5, 20.0, 0.0)  # five spenders only
    _, metrics = clv.clv_scores(x, tx, T, spend, 13.0, 52.0)
    assert metrics["gamma_gamma"]["status"] == "skipped"
    assert "min_repeat_buyers" in metrics["gamma_gamma"]["reason"]
    with pytest.raises(ValueError):
        clv.clv_scores(x, tx, T[:-1], None, 13.0, 52.0)


def test_limits_of_the_models_train_at_a_bound():
    # Identical spend for everyone: the Gamma-Gamma MLE is the no-heterogeneity limit (p, q at
    # their bound), whose population mean is that spend; the purchase data of this cohort put
    # b at its bound (one drop-out probability for all). Both are models, not failures.
    rng = np.random.default_rng(1)
    x = rng.poisson(1.0, 300).astype(np.float64)
    T = rng.uniform(1.0, 50.0, 300)
    tx = np.where(x > 0, T * rng.uniform(size=300), 0.0)
    scores, metrics = clv.clv_scores(x, tx, T, np.where(x > 0, 10.0, 0.0), 4.0, 52.0)
    assert metrics["status"] == "trained" and metrics["reason"] is None
    assert "b" in metrics["bgnbd"]["at_bound"]
    gg = metrics["gamma_gamma"]
    assert gg["status"] == "trained" and set(gg["at_bound"]) == {"p", "q"}
    np.testing.assert_allclose(scores["expected_spend_per_transaction"], 10.0, rtol=1e-4)


def test_clv_scores_never_raises_on_messy_data():
    rng = np.random.default_rng(11)
    for n in (0, 1, 2, 5, 50, 150):
        x = rng.choice([0.0, 0.0, 1.0, 3.0, 200.0, np.nan], n)
        T = rng.choice([0.0, 1.0, 30.0, 1e4, -1.0, np.inf], n)
        tx = T * rng.uniform(-0.1, 1.0, n)
        m = rng.choice([0.0, 5.0, 1e6, -3.0, np.nan], n)
        scores, metrics = clv.clv_scores(
            x, tx, T, m, 4.0, 52.0, min_customers=2, min_repeat_buyers=3
        )
        assert metrics["status"] in {"trained", "skipped"}
        assert all(len(v) == n for v in scores.values())
        for key in ("expected_transactions_long", "probability_alive"):
            values = scores[key][~np.isnan(scores[key])]
            assert np.all(values >= 0) and np.all(np.isfinite(values))
