"""Customer lifetime value: BG/NBD repeat purchases and Gamma-Gamma spend, on numpy arrays.

A compact implementation on scipy (``scipy.optimize``, ``scipy.special``). The maintained
libraries (``lifetimes``, ``pymc-marketing``) do not fit the project's install budget, so the two
models are written out here from the papers, with published values as the tests' reference:

- BG/NBD: Fader, Hardie & Lee (2005), "'Counting Your Customers' the Easy Way: An Alternative to
  the Pareto/NBD Model", Marketing Science 24(2):275-284. Transactions of an active customer are
  Poisson(lambda), lambda ~ Gamma(r, alpha) (rate alpha); after each *repeat* transaction the
  customer drops out for good with probability p, p ~ Beta(a, b).
- Gamma-Gamma: Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
  Analysis", JMR 42(4):415-430, and Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary
  Value" (brucehardie.com/notes/025). The value of a transaction is Gamma(p, nu) (rate nu),
  nu ~ Gamma(q, v) (rate v); it is assumed independent of the transaction process.

Inputs are one row per customer (or per group of identical customers, see ``weights``):

- ``frequency`` x: the number of *repeat* transactions (all transactions minus the first);
- ``recency`` t_x: the time of the last transaction, measured from the first one (0 if x = 0);
- ``T``: the customer's age, from the first transaction to the end of the observation period;
- ``monetary_value``: the mean value of the repeat transactions (the first one is excluded, as in
  the papers).

Times are in one unit that the caller chooses (days or weeks); alpha is in that unit, and so are
the horizons ``t``. ``weights`` are counts of identical rows, so a caller may compress its data to
the distinct (x, t_x, T) triples.

Functions here are pure: they raise ``ValueError`` on malformed input (mismatched lengths,
negative counts, recency after T) and do no I/O. :func:`clv_scores` is the pipeline entry point:
it never raises on degenerate data (empty, a single customer, no repeat buyers); it skips a model
with a stated reason and returns NaN, or the documented new-customer prior, instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy import optimize, special

__all__ = [
    "BGNBDParams",
    "CLVResult",
    "GammaGammaParams",
    "bgnbd_log_likelihood",
    "clv_scores",
    "conditional_expected_spend",
    "expected_transactions",
    "expected_transactions_new",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "probability_alive",
]

MIN_CUSTOMERS = 100
MIN_REPEAT_BUYERS = 20
# Optimisation runs on log-parameters within bounds, so that a degenerate fit (a parameter
# running off to 0 or infinity) stops at a bound. Shape parameters (r, a, b, p, q) stop at 1e6:
# beyond it the gamma or beta mixing distribution is a point mass for every practical purpose
# (no heterogeneity), and larger values only cost precision (betaln/gammaln differences of
# numbers ~1e9). Scale parameters (alpha, v) carry the caller's units and get a wider range.
_SHAPE_BOUNDS = (math.log(1e-8), math.log(1e6))
_SCALE_BOUNDS = (-30.0, 30.0)
_BGNBD_BOUNDS = [_SHAPE_BOUNDS, _SCALE_BOUNDS, _SHAPE_BOUNDS, _SHAPE_BOUNDS]
_GG_BOUNDS = [_SHAPE_BOUNDS, _SHAPE_BOUNDS, _SCALE_BOUNDS]
# Accept a fit the optimiser did not certify if the quadratic model of the log-likelihood
# leaves less than this to gain (in log-likelihood units, far below any sampling error).
_MAX_REMAINING_GAIN = 1e-3
# Near a = 1 the closed forms of E[Y(t)] are 0/0; they are continuous in a, so interpolate.
_A_NEAR_ONE = 1e-5


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BGNBDParams:
    """BG/NBD parameters; ``alpha`` is in the caller's time unit.

    ``log_likelihood`` is the (unpenalised) total over the fitted customers, ``n`` their number
    (the sum of the weights), ``se`` asymptotic standard errors from the observed information
    (None when the Hessian is not positive definite), ``at_bound`` the parameters that stopped
    at an optimisation bound (see ``_SHAPE_BOUNDS``: a and b there together mean one drop-out
    probability for all, r there one purchase rate for all). Constructing one by hand
    (published values) leaves the fit statistics at their defaults.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = math.nan
    converged: bool = False
    n: float = 0
    se: dict[str, float] | None = None
    penalizer: float = 0.0
    at_bound: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "a": self.a,
            "b": self.b,
            "log_likelihood": self.log_likelihood,
            "converged": self.converged,
            "n": self.n,
            "se": self.se,
            "penalizer": self.penalizer,
            "at_bound": list(self.at_bound),
        }


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma parameters (``v`` is Fader & Hardie's gamma, in the currency unit).

    ``n`` is the number of repeat buyers the fit used; the other fields as for BGNBDParams.
    """

    p: float
    q: float
    v: float
    log_likelihood: float = math.nan
    converged: bool = False
    n: float = 0
    se: dict[str, float] | None = None
    at_bound: tuple[str, ...] = ()

    @property
    def population_mean_spend(self) -> float:
        """E[spend per transaction] of a customer with no history: p v / (q - 1); NaN if q <= 1."""
        return self.p * self.v / (self.q - 1.0) if self.q > 1.0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "p": self.p,
            "q": self.q,
            "v": self.v,
            "log_likelihood": self.log_likelihood,
            "converged": self.converged,
            "n": self.n,
            "se": self.se,
            "at_bound": list(self.at_bound),
            "population_mean_spend": self.population_mean_spend,
        }


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _vector(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays differ in length: {lengths}")
    return next(iter(lengths.values()), 0)


def _rfm(frequency: Any, recency: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three as float64 vectors, broadcast together (a scalar T serves every customer)."""
    x, tx, age = _vector("frequency", frequency), _vector("recency", recency), _vector("T", T)
    try:
        x, tx, age = (np.array(v) for v in np.broadcast_arrays(x, tx, age))
    except ValueError:
        _same_length(frequency=x, recency=tx, T=age)  # raises, naming the lengths
    return x, tx, age


def _valid_rfm(x: np.ndarray, tx: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Rows the BG/NBD can use: finite, x >= 0, 0 <= t_x <= T (t_x is ignored when x = 0)."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(age) & (x >= 0) & (age >= 0)
        ok &= (x == 0) | (np.isfinite(tx) & (tx >= 0) & (tx <= age))
    return ok


def _check_rfm(x: np.ndarray, tx: np.ndarray, age: np.ndarray) -> None:
    bad = ~_valid_rfm(x, tx, age)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} rows are not valid BG/NBD input (finite, frequency >= 0, "
            f"0 <= recency <= T); first is row {i}: x={x[i]}, t_x={tx[i]}, T={age[i]}"
        )


def _weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _vector("weights", weights)
    if len(w) != n:
        raise ValueError(f"weights has {len(w)} rows, the data {n}")
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise ValueError("weights must be finite and non-negative")
    return w


def _dot(w: np.ndarray, v: np.ndarray) -> float:
    """Weighted sum without BLAS (whose threads spin on a busy machine: 10x slower here)."""
    return float(np.sum(w * v))


def _count(total: float) -> float:
    return int(total) if float(total).is_integer() else float(total)


# --------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------


def _bgnbd_terms(theta: np.ndarray, x: np.ndarray, tx: np.ndarray, age: np.ndarray):
    """log L per customer (the BG/NBD likelihood of FHL 2005) and the pieces its gradient needs."""
    r, alpha, a, b = theta
    repeat = x > 0
    log_alpha = math.log(alpha)
    common = special.gammaln(r + x) - special.gammaln(r) + r * log_alpha
    log_beta_ab = special.betaln(a, b)
    log_a_t = np.log(alpha + age)
    term1 = special.betaln(a, b + x) - log_beta_ab - (r + x) * log_a_t
    # Dropped out right after the x-th repeat transaction (only possible when x > 0).
    log_a_tx = np.log(alpha + np.where(repeat, tx, 0.0))
    b_x1 = np.where(repeat, b + x - 1.0, 1.0)
    term2 = np.where(
        repeat, special.betaln(a + 1.0, b_x1) - log_beta_ab - (r + x) * log_a_tx, -np.inf
    )
    both = np.logaddexp(term1, term2)
    share2 = np.exp(term2 - both)  # weight of the drop-out term, 0 when x = 0
    return common + both, share2, log_a_t, log_a_tx, b_x1, repeat


def _bgnbd_objective(
    log_theta: np.ndarray,
    x: np.ndarray,
    tx: np.ndarray,
    age: np.ndarray,
    w: np.ndarray,
    penalizer: float,
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood (per unit weight) + penalty, and its gradient in log-space."""
    theta = np.exp(log_theta)
    r, alpha, a, b = theta
    ll, s2, log_a_t, log_a_tx, b_x1, repeat = _bgnbd_terms(theta, x, tx, age)
    s1 = 1.0 - s2
    dg = special.digamma
    psi_abx = dg(a + b + x)
    d_r = dg(r + x) - dg(r) + math.log(alpha) - s1 * log_a_t - s2 * log_a_tx
    d_alpha = r / alpha - (r + x) * (s1 / (alpha + age) + s2 / (alpha + np.where(repeat, tx, 0.0)))
    d_a = s1 * (dg(a) - psi_abx) + s2 * (dg(a + 1.0) - psi_abx) - (dg(a) - dg(a + b))
    d_b = s1 * (dg(b + x) - psi_abx) + s2 * (dg(b_x1) - psi_abx) - (dg(b) - dg(a + b))
    total_w = w.sum()
    value = -_dot(w, ll) / total_w
    grad = -np.array([_dot(w, d) for d in (d_r, d_alpha, d_a, d_b)]) / total_w * theta
    if penalizer:
        # L2 on the log of the dimensionless parameters (r, a, b), which shrinks them towards 1;
        # alpha is left alone because its value depends on the time unit.
        shrink = np.array([1.0, 0.0, 1.0, 1.0])
        value += penalizer * float(np.sum(shrink * log_theta**2))
        grad = grad + 2.0 * penalizer * shrink * log_theta
    return value, grad


def bgnbd_log_likelihood(
    params: BGNBDParams, frequency: Any, recency: Any, T: Any, weights: Any = None
) -> float:
    """Total BG/NBD log-likelihood of the data under ``params`` (unpenalised)."""
    x, tx, age = _rfm(frequency, recency, T)
    _check_rfm(x, tx, age)
    w = _weights(weights, len(x))
    theta = np.array([params.r, params.alpha, params.a, params.b], dtype=np.float64)
    return _dot(w, _bgnbd_terms(theta, x, tx, age)[0])


def _minimise(fun, starts: list[np.ndarray], bounds) -> tuple[np.ndarray, bool]:
    """Best of L-BFGS-B runs from ``starts``; a Nelder-Mead polish when L-BFGS-B stops early.

    Returns the log-parameters and whether an optimiser reported success.
    """
    best = None
    for start in starts:
        start = np.clip(start, [lo for lo, _ in bounds], [hi for _, hi in bounds])
        with np.errstate(all="ignore"):
            res = optimize.minimize(
                fun,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9},
            )
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        return starts[0], False
    theta, converged = best.x, bool(best.success)
    if not converged:
        with np.errstate(all="ignore"):
            polish = optimize.minimize(
                lambda v: fun(v)[0],
                best.x,
                method="Nelder-Mead",
                bounds=bounds,
                options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-12},
            )
        if np.isfinite(polish.fun) and polish.fun <= best.fun:
            theta, converged = polish.x, bool(polish.success)
    return theta, converged


def _curvature(fun, log_theta: np.ndarray, total_w: float, names: tuple[str, ...], bounds):
    """Standard errors, parameters at a bound and the log-likelihood still to gain.

    The Hessian of the total negative log-likelihood (in log-parameters) is a central
    difference of the analytic gradient. Standard errors follow by the delta method (None when
    the Hessian is not positive definite). The remaining gain, g' H^-1 g / 2 over the
    parameters not at a bound, is the improvement a Newton step would still make: NaN when
    that Hessian is not positive definite.
    """
    k, h = len(log_theta), 1e-5
    hess = np.empty((k, k))
    for j in range(k):
        step = np.zeros(k)
        step[j] = h
        hess[:, j] = (fun(log_theta + step)[1] - fun(log_theta - step)[1]) / (2 * h)
    hess = 0.5 * (hess + hess.T) * total_w  # the objective is a mean; the information a total
    grad = fun(log_theta)[1] * total_w
    at_bound = np.array(
        [min(v - lo, hi - v) < 1e-6 for v, (lo, hi) in zip(log_theta, bounds, strict=True)]
    )
    se = None
    try:
        np.linalg.cholesky(hess)
        se_log = np.sqrt(np.diag(np.linalg.inv(hess)))
        se = {n: float(v * s) for n, v, s in zip(names, np.exp(log_theta), se_log, strict=True)}
    except np.linalg.LinAlgError:
        pass
    free = ~at_bound
    gain = 0.0
    if free.any():
        try:
            sub = hess[np.ix_(free, free)]
            np.linalg.cholesky(sub)
            gain = 0.5 * float(grad[free] @ np.linalg.solve(sub, grad[free]))
        except np.linalg.LinAlgError:
            gain = math.nan
    return se, tuple(n for n, b in zip(names, at_bound, strict=True) if b), gain


def fit_bgnbd(
    frequency: Any,
    recency: Any,
    T: Any,
    weights: Any = None,
    penalizer: float = 0.0,
) -> BGNBDParams:
    """Maximum-likelihood BG/NBD fit (L-BFGS-B on log-parameters, analytic gradient).

    ``penalizer`` adds ``penalizer * (log(r)^2 + log(a)^2 + log(b)^2)`` to the mean negative
    log-likelihood (0 = plain MLE); it stabilises small or degenerate samples. Raises ValueError
    on invalid rows or when no row has positive weight; a sample without repeat buyers has no
    finite MLE (the fit stops at a bound), which callers should screen for (clv_scores does).
    """
    x, tx, age = _rfm(frequency, recency, T)
    _check_rfm(x, tx, age)
    w = _weights(weights, len(x))
    if not (penalizer >= 0 and math.isfinite(penalizer)):
        raise ValueError(f"penalizer must be finite and >= 0, got {penalizer}")
    keep = w > 0
    x, tx, age, w = x[keep], tx[keep], age[keep], w[keep]
    if len(x) == 0:
        raise ValueError("fit_bgnbd needs at least one row with positive weight")

    def fun(v):
        return _bgnbd_objective(v, x, tx, age, w, penalizer)

    # Start at the pooled purchase rate (E[lambda] = r / alpha), then a second, more
    # heterogeneous start; the better optimum wins.
    rate = max(_dot(w, x) / max(_dot(w, age), 1e-12), 1e-8)
    starts = [np.log([1.0, 1.0 / rate, 1.0, 1.0]), np.log([0.25, 0.25 / rate, 0.5, 2.5])]
    log_theta, converged = _minimise(fun, starts, _BGNBD_BOUNDS)
    theta = np.exp(log_theta)
    ll = _dot(w, _bgnbd_terms(theta, x, tx, age)[0])
    names = ("r", "alpha", "a", "b")
    se, at_bound, gain = _curvature(fun, log_theta, float(w.sum()), names, _BGNBD_BOUNDS)
    converged = converged or gain < _MAX_REMAINING_GAIN
    r, alpha, a, b = (float(v) for v in theta)
    n = _count(w.sum())
    return BGNBDParams(r, alpha, a, b, ll, converged, n, se, float(penalizer), at_bound)


def _theta(params: BGNBDParams) -> tuple[float, float, float, float]:
    r, alpha, a, b = (float(params.r), float(params.alpha), float(params.a), float(params.b))
    if not all(math.isfinite(v) and v > 0 for v in (r, alpha, a, b)):
        raise ValueError(f"BG/NBD parameters must be finite and positive, got {params}")
    return r, alpha, a, b


def _log_odds_dead(theta, x, tx, age) -> np.ndarray:
    """log[a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x)], -inf for x = 0."""
    r, alpha, a, b = theta
    repeat = x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (
            np.log(a)
            - np.log(np.where(repeat, b + x - 1.0, 1.0))
            + (r + x) * (np.log(alpha + age) - np.log(alpha + np.where(repeat, tx, age)))
        )
    return np.where(repeat, out, -np.inf)


def _growth(theta, t, x, age) -> np.ndarray:
    """(a + b + x - 1) / (a - 1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)].

    z = t / (alpha + T + t). The expected number of transactions in (T, T + t] of a customer who
    is alive at T (FHL 2005 eq. 10 without its P(alive) factor; E[X(t)] when x = T = 0).
    2F1 is evaluated after Euler's transformation, 2F1(A, B; C; z) = (1 - z)^(C-A-B)
    2F1(C-A, C-B; C; z), which turns the product into (1 - z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1;
    z): the first two arguments no longer grow with x, so large x and long horizons stay in
    scipy's accurate range. Non-finite values fall back to the untransformed form; the result is
    clipped to [0, (r + x) t / (alpha + T)], the bound of a customer who never drops out.
    """
    r, alpha, a, b = theta
    if abs(a - 1.0) < _A_NEAR_ONE:
        # 0/0 at a = 1: interpolate linearly between a = 1 -/+ eps (error O(eps^2)).
        lo = _growth_at((r, alpha, 1.0 - _A_NEAR_ONE, b), t, x, age)
        hi = _growth_at((r, alpha, 1.0 + _A_NEAR_ONE, b), t, x, age)
        share = (a - (1.0 - _A_NEAR_ONE)) / (2.0 * _A_NEAR_ONE)
        return (1.0 - share) * lo + share * hi
    return _growth_at(theta, t, x, age)


def _growth_at(theta, t, x, age) -> np.ndarray:
    r, alpha, a, b = theta
    t, x, age = np.broadcast_arrays(
        np.asarray(t, float), np.asarray(x, float), np.asarray(age, float)
    )
    c = a + b + x - 1.0
    log1m_z = np.log(alpha + age) - np.log(alpha + age + t)  # log(1 - z), exact for large t
    z = -np.expm1(log1m_z)
    with np.errstate(all="ignore"):
        f = special.hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
        # 1 - (1 - z)^(a - 1) F, via expm1 when F > 0 (no cancellation as a -> 1)
        one_minus = np.where(
            f > 0,
            -np.expm1((a - 1.0) * log1m_z + np.log(np.abs(f))),
            1.0 - np.exp((a - 1.0) * log1m_z) * f,
        )
        direct = 1.0 - np.exp((r + x) * log1m_z) * special.hyp2f1(r + x, b + x, c, z)
        one_minus = np.where(np.isfinite(one_minus), one_minus, direct)
        out = c / (a - 1.0) * one_minus
        upper = (r + x) * t / (alpha + age)
    out = np.where(t > 0, out, 0.0)
    return np.clip(out, 0.0, upper)


def probability_alive(params: BGNBDParams, frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """P(alive at T | x, t_x, T) = 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) for x > 0.

    1 for x = 0: under the BG/NBD a customer can only drop out right after a repeat
    transaction, so one who has made none is alive by construction (a known quirk of the model).
    Invalid rows (see the module docstring) are NaN.
    """
    theta = _theta(params)
    x, tx, age = _rfm(frequency, recency, T)
    ok = _valid_rfm(x, tx, age)
    xs, txs, ages = np.where(ok, x, 0.0), np.where(ok, tx, 0.0), np.where(ok, age, 0.0)
    alive = np.exp(-np.logaddexp(0.0, _log_odds_dead(theta, xs, txs, ages)))
    return np.where(ok, alive, np.nan)


def expected_transactions(
    params: BGNBDParams, t: Any, frequency: Any, recency: Any, T: Any
) -> np.ndarray:
    """E[Y(t) | x, t_x, T]: expected transactions in (T, T + t] (FHL 2005 eq. 10).

    ``t`` is a scalar horizon or one per customer, in the unit of ``T``. Invalid rows are NaN.
    """
    theta = _theta(params)
    x, tx, age = _rfm(frequency, recency, T)
    horizon = np.broadcast_to(np.asarray(t, dtype=np.float64), x.shape)
    if np.any(horizon < 0) or not np.all(np.isfinite(horizon)):
        raise ValueError("horizon t must be finite and >= 0")
    ok = _valid_rfm(x, tx, age)
    xs, txs, ages = np.where(ok, x, 0.0), np.where(ok, tx, 0.0), np.where(ok, age, 0.0)
    alive = np.exp(-np.logaddexp(0.0, _log_odds_dead(theta, xs, txs, ages)))
    return np.where(ok, _growth(theta, horizon, xs, ages) * alive, np.nan)


def expected_transactions_new(params: BGNBDParams, t: Any) -> np.ndarray | float:
    """E[X(t)] for a customer just acquired (FHL 2005): repeat transactions in (0, t].

    The cold-start prior for a customer with no history. Scalar in, scalar out.
    """
    theta = _theta(params)
    horizon = np.asarray(t, dtype=np.float64)
    if np.any(horizon < 0) or not np.all(np.isfinite(horizon)):
        raise ValueError("horizon t must be finite and >= 0")
    out = _growth(theta, horizon, np.zeros_like(horizon), np.zeros_like(horizon))
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------


def _gg_data(frequency: Any, monetary_value: Any) -> tuple[np.ndarray, np.ndarray]:
    x, m = _vector("frequency", frequency), _vector("monetary_value", monetary_value)
    _same_length(frequency=x, monetary_value=m)
    return x, m


def _gg_usable(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(x) & (x > 0) & np.isfinite(m) & (m > 0)


def _gg_terms(theta: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """log f(zbar | x) of the Gamma-Gamma model (Fader & Hardie 2013)."""
    p, q, v = theta
    px = p * x
    return (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * math.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(v + x * m)
    )


def _gg_objective(log_theta, x, m, w) -> tuple[float, np.ndarray]:
    theta = np.exp(log_theta)
    p, q, v = theta
    px = p * x
    dg = special.digamma
    log_vxm = np.log(v + x * m)
    d_p = x * (dg(px + q) - dg(px) + np.log(m) + np.log(x) - log_vxm)
    d_q = dg(px + q) - dg(q) + math.log(v) - log_vxm
    d_v = q / v - (px + q) / (v + x * m)
    total_w = w.sum()
    value = -_dot(w, _gg_terms(theta, x, m)) / total_w
    grad = -np.array([_dot(w, d) for d in (d_p, d_q, d_v)]) / total_w * theta
    return value, grad


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, frequency: Any, monetary_value: Any, weights: Any = None
) -> float:
    """Total Gamma-Gamma log-likelihood over the rows with frequency > 0 and spend > 0."""
    x, m = _gg_data(frequency, monetary_value)
    w = _weights(weights, len(x))
    use = _gg_usable(x, m)
    theta = np.array([params.p, params.q, params.v], dtype=np.float64)
    return _dot(w[use], _gg_terms(theta, x[use], m[use]))


def fit_gamma_gamma(frequency: Any, monetary_value: Any, weights: Any = None) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma fit on the repeat buyers.

    Only rows with frequency > 0 and a finite, positive monetary_value (the mean of the repeat
    transactions) enter; others are ignored. Raises ValueError when none is left.
    """
    x, m = _gg_data(frequency, monetary_value)
    w = _weights(weights, len(x))
    use = _gg_usable(x, m) & (w > 0)
    x, m, w = x[use], m[use], w[use]
    if len(x) == 0:
        raise ValueError("fit_gamma_gamma needs a repeat buyer (frequency > 0, spend > 0)")

    def fun(v):
        return _gg_objective(v, x, m, w)

    # Starts matched to the weighted mean spend, E[zbar] = p v / (q - 1).
    mean = _dot(w, m) / float(w.sum())
    starts = [np.log([p, q, mean * (q - 1.0) / p]) for p, q in ((1.0, 2.0), (5.0, 4.0))]
    log_theta, converged = _minimise(fun, starts, _GG_BOUNDS)
    theta = np.exp(log_theta)
    ll = _dot(w, _gg_terms(theta, x, m))
    se, at_bound, gain = _curvature(fun, log_theta, float(w.sum()), ("p", "q", "v"), _GG_BOUNDS)
    converged = converged or gain < _MAX_REMAINING_GAIN
    p, q, v = (float(t) for t in theta)
    return GammaGammaParams(p, q, v, ll, converged, _count(w.sum()), se, at_bound)


def conditional_expected_spend(
    params: GammaGammaParams, frequency: Any, monetary_value: Any
) -> np.ndarray:
    """E[spend per transaction | x, zbar] = p (v + x zbar) / (p x + q - 1).

    A weighted mean of the population mean p v / (q - 1) and the customer's own mean zbar, with
    weight p x / (p x + q - 1) on zbar. Customers without usable history (frequency 0 or
    missing, or a missing or non-positive monetary_value) get the population mean, the
    cold-start prior. That mean is infinite when q <= 1, so those customers are NaN then; so is
    any customer with p x + q <= 1.
    """
    p, q, v = float(params.p), float(params.q), float(params.v)
    x, m = _gg_data(frequency, monetary_value)
    use = _gg_usable(x, m)
    xs, ms = np.where(use, x, 0.0), np.where(use, m, 0.0)
    denom = p * xs + q - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = p * (v + xs * ms) / denom
    return np.where(denom > 0, out, np.nan)


# --------------------------------------------------------------------------------------------
# Scores for the pipeline
# --------------------------------------------------------------------------------------------


class CLVResult(NamedTuple):
    """``scores``: one float64 array per output, aligned with the input rows; ``metrics``."""

    scores: dict[str, np.ndarray]
    metrics: dict[str, Any]


@dataclass
class _Model:
    status: str = "skipped"
    reason: str | None = None
    params: Any = None
    extra: dict = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        out = {"status": self.status, "reason": self.reason, **self.extra}
        if self.params is not None:
            out.update(self.params.as_dict())
        return out


def _fit_bgnbd_or_skip(x, tx, age, min_customers, min_repeat, penalizer) -> _Model:
    n, n_repeat = len(x), int(np.sum(x > 0))
    counts = {"n_customers": n, "n_repeat_buyers": n_repeat}
    if n < min_customers:
        return _Model(reason=f"{n} valid customers < min_customers={min_customers}", extra=counts)
    if n_repeat < min_repeat:
        reason = f"{n_repeat} repeat buyers < min_repeat_buyers={min_repeat}"
        return _Model(reason=reason, extra=counts)
    # Identical (x, t_x, T) rows are fitted once, with their count as weight.
    rows, counts_w = np.unique(
        np.column_stack([x, np.where(x > 0, tx, 0.0), age]), axis=0, return_counts=True
    )
    try:
        params = fit_bgnbd(rows[:, 0], rows[:, 1], rows[:, 2], counts_w, penalizer)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:  # pragma: no cover
        return _Model(reason=f"BG/NBD fit failed: {exc}", extra=counts)
    if not params.converged:
        return _Model(reason="BG/NBD optimiser did not converge", params=params, extra=counts)
    # A parameter at a bound is a limit of the model (no heterogeneity, no drop-out), whose
    # predictions stay defined: reported in the metrics (at_bound), not a reason to skip.
    return _Model("trained", None, params, counts)


def _fit_gg_or_skip(x, m, min_repeat) -> _Model:
    usable = _gg_usable(x, m)
    n_usable = int(usable.sum())
    counts = {"n_repeat_buyers_with_spend": n_usable}
    if n_usable < min_repeat:
        reason = f"{n_usable} repeat buyers with spend > 0 < min_repeat_buyers={min_repeat}"
        return _Model(reason=reason, extra=counts)
    try:
        params = fit_gamma_gamma(x[usable], m[usable])
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:  # pragma: no cover
        return _Model(reason=f"Gamma-Gamma fit failed: {exc}", extra=counts)
    if not params.converged:
        return _Model(reason="Gamma-Gamma optimiser did not converge", params=params, extra=counts)
    with np.errstate(all="ignore"):  # constant columns give NaN, not a warning
        corr = float(np.corrcoef(x[usable], m[usable])[0, 1]) if n_usable > 2 else math.nan
    counts["corr_frequency_monetary"] = corr  # the model assumes ~0; reported, not enforced
    model = _Model("trained", None, params, counts)
    if params.q <= 1.0:
        model.reason = "q <= 1: no finite population mean, customers without history get NaN"
    return model


def clv_scores(
    frequency: Any,
    recency: Any,
    T: Any,
    monetary: Any,
    horizon_short: float,
    horizon_long: float,
    min_customers: int = MIN_CUSTOMERS,
    min_repeat_buyers: int = MIN_REPEAT_BUYERS,
    penalizer: float = 0.0,
    time_unit: str = "weeks",
) -> CLVResult:
    """Fit BG/NBD and Gamma-Gamma on one cohort and score every customer.

    ``monetary`` is the mean repeat-transaction value (or None to skip spend). Horizons are in
    the unit of ``T`` (``time_unit`` is only recorded in the metrics). Scores, one per row:

    - ``expected_transactions_short`` / ``_long``: E[Y(horizon) | x, t_x, T];
    - ``probability_alive``;
    - ``expected_spend_per_transaction``: Gamma-Gamma conditional mean;
    - ``expected_spend_long``: expected_transactions_long x expected_spend_per_transaction
      (undiscounted, margin not applied).

    Rows with an invalid history (NaN, negative, recency > T) do not enter the fits; they get
    the new-customer priors (E[X(t)] and the population mean spend) and a NaN probability_alive.
    A model is skipped, with the reason in ``metrics``, when there are fewer than
    ``min_customers`` valid customers or ``min_repeat_buyers`` repeat buyers, or its optimiser
    fails: a skipped BG/NBD makes every transaction score and probability NaN, a skipped
    Gamma-Gamma every spend score NaN. Degenerate input never raises; arrays of different
    lengths, negative horizons or a negative penalizer do (ValueError).
    """
    x, tx, age = _rfm(frequency, recency, T)
    n = len(x)
    m = np.full(n, np.nan) if monetary is None else _vector("monetary", monetary)
    _same_length(frequency=x, recency=tx, T=age, monetary=m)
    for name, h in (("horizon_short", horizon_short), ("horizon_long", horizon_long)):
        if not (math.isfinite(h) and h >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {h}")
    if not (math.isfinite(penalizer) and penalizer >= 0):
        raise ValueError(f"penalizer must be finite and >= 0, got {penalizer}")

    valid = _valid_rfm(x, tx, age)
    bg = _fit_bgnbd_or_skip(
        x[valid], tx[valid], age[valid], min_customers, min_repeat_buyers, penalizer
    )
    gg = (
        _Model(reason="no monetary values given")
        if monetary is None
        else _fit_gg_or_skip(x[valid], m[valid], min_repeat_buyers)
    )

    nan = np.full(n, np.nan)
    scores = {
        "expected_transactions_short": nan.copy(),
        "expected_transactions_long": nan.copy(),
        "probability_alive": nan.copy(),
        "expected_spend_per_transaction": nan.copy(),
        "expected_spend_long": nan.copy(),
    }
    if bg.status == "trained":
        p = bg.params
        for key, h in (("short", horizon_short), ("long", horizon_long)):
            col = expected_transactions(p, h, x, tx, age)
            col[~valid] = expected_transactions_new(p, h)
            scores[f"expected_transactions_{key}"] = col
        scores["probability_alive"] = probability_alive(p, x, tx, age)
        bg.extra["expected_transactions_new_short"] = float(
            expected_transactions_new(p, horizon_short)
        )
        bg.extra["expected_transactions_new_long"] = float(
            expected_transactions_new(p, horizon_long)
        )
    if gg.status == "trained":
        history = np.where(valid, x, np.nan)  # invalid rows get the prior
        scores["expected_spend_per_transaction"] = conditional_expected_spend(gg.params, history, m)
    scores["expected_spend_long"] = (
        scores["expected_transactions_long"] * scores["expected_spend_per_transaction"]
    )

    status = bg.status
    reasons = [
        f"{name}: {mdl.reason}" for name, mdl in (("bgnbd", bg), ("gamma_gamma", gg)) if mdl.reason
    ]
    metrics = {
        "status": status,
        "reason": "; ".join(reasons) or None,
        "n": n,
        "n_invalid": int(n - valid.sum()),
        "time_unit": time_unit,
        "horizon_short": float(horizon_short),
        "horizon_long": float(horizon_long),
        "min_customers": min_customers,
        "min_repeat_buyers": min_repeat_buyers,
        "bgnbd": bg.metrics(),
        "gamma_gamma": gg.metrics(),
    }
    return CLVResult(scores, metrics)
