"""The portfolio view: several strategies and instruments as one book of PnL streams.

Each stream is a backtest's (or a paper session's) equity curve; :func:`pnl_matrix` puts them on one
time grid (the union of their sample instants, equity carried forward, 0 before a stream starts) and
differences them into per-period PnL. A weight scales a stream (weight 0.5: the strategy run at half
its size), so the portfolio's PnL is ``X @ w``.

:func:`mean_variance_weights` maximizes ``mu'w - (risk_aversion / 2) w' Sigma w`` subject to
``sum(w) = 1`` and ``lower <= w <= upper`` (long-only is ``lower = 0``), with ``mu`` the streams'
mean PnL per period and ``Sigma`` their sample covariance (ddof 1). The solver is an exact active-set
method for this small convex QP: solve the KKT system on the free weights, fix a weight that leaves
its box at the bound, free a fixed weight whose multiplier has the wrong sign, until neither happens.

:func:`portfolio_risk` gives the portfolio's VaR and CVaR, historical (on ``X @ w``) and parametric
(normal, with ``mu_p = mu'w`` and ``sigma_p = sqrt(w' Sigma w)``), the same definitions as
:mod:`tapeflow.backtest.risk` (losses positive).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from tapeflow.backtest import risk
from tapeflow.backtest.results import BacktestResult
from tapeflow.errors import ConfigError

LEVELS = (0.95, 0.99)


def pnl_matrix(results: Mapping[str, BacktestResult]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per-period PnL of every stream on one grid: ``(names, ts_ns[T], pnl[T - 1, N])``.

    Raises:
        ConfigError: no results.
    """
    if not results:
        raise ConfigError("a portfolio needs at least one backtest result")
    names = list(results)
    curves = [(r.column("equity", "ts_ns"), r.column("equity", "equity")) for r in results.values()]
    ts = np.unique(np.concatenate([c[0] for c in curves]))
    cols = []
    for t, eq in curves:
        at = np.searchsorted(t, ts, side="right") - 1
        eq = np.where(np.isfinite(eq), eq, 0.0)
        cols.append(np.where(at >= 0, eq[np.maximum(at, 0)], 0.0))
    equity = np.stack(cols, axis=1)
    return names, ts, np.diff(equity, axis=0)


def _kkt(cov: np.ndarray, mu: np.ndarray, gamma: float, free: np.ndarray, fixed_w: np.ndarray
         ) -> tuple[np.ndarray, float]:
    f = np.flatnonzero(free)
    b = np.flatnonzero(~free)
    k = f.size
    a = np.zeros((k + 1, k + 1))
    a[:k, :k] = gamma * cov[np.ix_(f, f)]
    a[:k, k] = -1.0
    a[k, :k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[:k] = mu[f] - gamma * cov[np.ix_(f, b)] @ fixed_w[b]
    rhs[k] = 1.0 - fixed_w[b].sum()
    sol = np.linalg.lstsq(a, rhs, rcond=None)[0]
    w = fixed_w.copy()
    w[f] = sol[:k]
    return w, float(sol[k])


def mean_variance_weights(mu: np.ndarray, cov: np.ndarray, *, risk_aversion: float = 1.0,
                          lower: float | Sequence[float] = 0.0, upper: float | Sequence[float] = 1.0,
                          max_iter: int = 200) -> np.ndarray:
    """Weights maximizing ``mu'w - risk_aversion/2 w'Sigma w`` with ``sum(w) = 1`` and bounds.

    Args:
        mu: mean PnL per period of each stream [N].
        cov: covariance of the streams' PnL [N, N] (symmetric, positive semi-definite).
        risk_aversion: > 0; large values give the minimum-variance portfolio.
        lower, upper: bounds per weight (scalars apply to all); ``lower=0`` is long-only.

    Raises:
        ConfigError: shapes disagree, ``risk_aversion <= 0``, or the bounds admit no weights summing to 1.
    """
    mu = np.asarray(mu, float)
    cov = np.asarray(cov, float)
    n = mu.size
    if cov.shape != (n, n) or n == 0:
        raise ConfigError(f"mu has {n} entries but the covariance is {cov.shape}")
    if not risk_aversion > 0:
        raise ConfigError(f"risk_aversion must be > 0, got {risk_aversion}")
    lo = np.broadcast_to(np.asarray(lower, float), (n,)).copy()
    hi = np.broadcast_to(np.asarray(upper, float), (n,)).copy()
    if np.any(lo > hi) or lo.sum() > 1 + 1e-12 or hi.sum() < 1 - 1e-12:
        raise ConfigError(f"no weights sum to 1 within the bounds (lower sum {lo.sum():g}, "
                          f"upper sum {hi.sum():g})")
    free = np.ones(n, bool)
    fixed = np.zeros(n)
    tol = 1e-12
    for _ in range(max_iter):
        w, nu = _kkt(cov, mu, risk_aversion, free, fixed)
        below, above = free & (w < lo - tol), free & (w > hi + tol)
        if below.any() or above.any():
            # fix the weight that leaves its box furthest at its bound, then solve again
            gap = np.where(below, lo - w, 0.0) + np.where(above, w - hi, 0.0)
            i = int(np.argmax(gap))
            free[i] = False
            fixed[i] = lo[i] if below[i] else hi[i]
            continue
        grad = risk_aversion * cov @ w - mu - nu  # d/dw of the minimized objective, less the budget term
        wrong = (~free) & (((fixed == lo) & (grad < -1e-10)) | ((fixed == hi) & (grad > 1e-10)))
        if not wrong.any():
            return np.clip(w, lo, hi)
        i = int(np.argmax(np.where(wrong, np.abs(grad), -1.0)))
        free[i] = True
    raise ConfigError(f"mean-variance weights did not converge in {max_iter} active-set steps")


@dataclass
class PortfolioReport:
    """Weights, per-period mean and volatility, and VaR/CVaR (losses positive) of a portfolio."""

    names: list[str]
    weights: dict[str, float]
    mean_pnl: float
    std_pnl: float
    risk: dict[str, float]

    def as_dict(self) -> dict:
        return {"weights": self.weights, "mean_pnl": self.mean_pnl, "std_pnl": self.std_pnl, **self.risk}


def portfolio_risk(pnl: np.ndarray, weights: np.ndarray, levels: Sequence[float] = LEVELS
                   ) -> dict[str, float]:
    """VaR and CVaR of the portfolio ``pnl @ weights``: historical and parametric (normal)."""
    port = np.asarray(pnl, float) @ np.asarray(weights, float)
    cov = np.atleast_2d(np.cov(pnl, rowvar=False, ddof=1))
    mu_p = float(np.mean(pnl, axis=0) @ weights)
    sigma_p = float(np.sqrt(max(weights @ cov @ weights, 0.0)))
    out: dict[str, float] = {}
    for level in levels:
        tag = int(round(level * 100))
        z = NormalDist().inv_cdf(level)
        out[f"var{tag}_hist"] = risk.var_historical(port, level)
        out[f"cvar{tag}_hist"] = risk.cvar_historical(port, level)
        out[f"var{tag}_param"] = z * sigma_p - mu_p
        out[f"cvar{tag}_param"] = sigma_p * NormalDist().pdf(z) / (1.0 - level) - mu_p
    return out


def portfolio(results: Mapping[str, BacktestResult], *, risk_aversion: float = 1.0,
              lower: float | Sequence[float] = 0.0, upper: float | Sequence[float] = 1.0) -> PortfolioReport:
    """Mean-variance weights over the results' PnL streams and the weighted portfolio's risk."""
    names, _, pnl = pnl_matrix(results)
    if pnl.shape[0] < 2:
        raise ConfigError(f"a portfolio needs at least 2 common PnL periods, got {pnl.shape[0]}")
    mu = pnl.mean(axis=0)
    cov = np.atleast_2d(np.cov(pnl, rowvar=False, ddof=1))
    w = mean_variance_weights(mu, cov, risk_aversion=risk_aversion, lower=lower, upper=upper)
    return PortfolioReport(names, {n: float(x) for n, x in zip(names, w, strict=True)}, float(mu @ w),
                           float(np.sqrt(max(w @ cov @ w, 0.0))), portfolio_risk(pnl, w))
