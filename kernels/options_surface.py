"""Implied-volatility surface of one option-chain snapshot: smiles, ATM, 25-delta RR/BF, no-arbitrage counts.

NumPy only, by choice: a snapshot is a handful of expiries with a few to a few dozen strikes each,
ragged, and the work is sorting, de-duplicating and bracketed 1-D interpolation per expiry. JAX
would pad every expiry to a bucket and compile per shape to save microseconds; the array-heavy step
(implied vols of the whole chain) already runs in :mod:`kernels.options_pricing`.

Conventions (docs/options.md, "Surfaces"):

- Log-moneyness ``k = ln(K / F)`` on each option's own forward ``F``; vols are fractions; ``t_years``
  in years of 365 days; total variance ``w = iv^2 T``.
- The smile of an expiry holds its out-of-the-money options: puts with ``K < F``, calls with
  ``K >= F``, one per strike, with a finite IV.
- ATM IV: the smile interpolated linearly in ``k`` at ``k = 0``. 25-delta IVs: the OTM calls' IVs
  interpolated linearly in (forward) delta at +0.25, the OTM puts' at -0.25. Risk reversal
  ``rr25 = iv25c - iv25p``; butterfly ``bf25 = (iv25c + iv25p) / 2 - atm``.
- Never extrapolated: a value whose target is not bracketed by the chain is NaN, and the expiry's
  :class:`SurfaceReason` flags say why.
- Prices in coin (Deribit: premium / F, r = 0). Put-call parity there reads ``C - P = 1 - K / F``,
  and a call's coin price is convex in ``x = K / F`` (Black-76 is homogeneous in F and K).
"""

from __future__ import annotations

from enum import IntFlag
from typing import NamedTuple

import numpy as np

DELTA_25 = 0.25
# defaults of the no-arbitrage tolerances (docs/options.md): above the noise of Deribit's marks
# (~1e-5 coin in price, 0.005 vol points of print rounding)
CALENDAR_TOL = 1e-5  # total variance
BUTTERFLY_TOL = 1e-3  # slope dC/dx between neighbouring strikes, coin per unit of K/F
PARITY_TOL = 1e-4  # coin


class SurfaceReason(IntFlag):
    """Why an expiry's values are NaN (flags; ``OK`` where none is): the closed set of reasons."""

    OK = 0
    TOO_FEW_STRIKES = 1  # fewer than 2 OTM strikes with an IV: no smile at all
    NO_ATM_BRACKET = 2  # no smile point on one side of k = 0
    NO_25D_CALL = 4  # the OTM calls' deltas do not bracket +0.25
    NO_25D_PUT = 8  # the OTM puts' deltas do not bracket -0.25


def reason_label(flags: int) -> str:
    """``"ok"`` or the lower-case names of the set flags joined by ``,`` (the ``reasons`` column)."""
    names = [r.name.lower() for r in SurfaceReason if r and flags & r and r.name]
    return ",".join(names) if names else "ok"


class Smile(NamedTuple):
    """One expiry's OTM smile, sorted by log-moneyness (one point per strike)."""

    strike: np.ndarray
    k: np.ndarray
    iv: np.ndarray
    delta: np.ndarray
    is_call: np.ndarray


class ExpiryMetrics(NamedTuple):
    """One expiry's summary; NaN values have their reason in ``reasons``."""

    atm_iv: float
    rr25: float
    bf25: float
    n_strikes: int
    reasons: int


class Violations(NamedTuple):
    """Counts of a no-arbitrage check: points violating it beyond its tolerance, and points checked."""

    violations: int
    checked: int


def smile(strike: np.ndarray, forward: np.ndarray, iv: np.ndarray, delta: np.ndarray,
          is_call: np.ndarray) -> Smile:
    """The OTM smile of one expiry's options.

    Args:
        strike: strikes, any order.
        forward: each option's forward.
        iv: implied vols (NaN where none: dropped).
        delta: forward deltas at ``iv``.
        is_call: True for calls.

    Returns:
        Puts below their forward and calls at or above it with a finite IV, one per strike, by ``k``.
    """
    strike, forward, iv, delta = (np.asarray(a, np.float64) for a in (strike, forward, iv, delta))
    is_call = np.asarray(is_call, bool)
    otm = np.where(is_call, strike >= forward, strike < forward) & np.isfinite(iv) & (forward > 0)
    k = np.log(strike[otm] / forward[otm])
    order = np.argsort(k, kind="stable")
    picked = Smile(strike[otm][order], k[order], iv[otm][order], delta[otm][order], is_call[otm][order])
    # two OTM tickers of one strike: only when the forwards straddle it; keep the first by k
    _, first = np.unique(picked.strike, return_index=True)
    keep = np.sort(first)
    return Smile(*(a[keep] for a in picked))


def interp_inside(x: float | np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``fp(xp)`` at ``x``, NaN outside ``[min xp, max xp]`` (never extrapolated)."""
    x = np.asarray(x, np.float64)
    xp = np.asarray(xp, np.float64)
    fp = np.asarray(fp, np.float64)
    if xp.size == 0:
        return np.full(x.shape, np.nan)
    order = np.argsort(xp, kind="stable")
    xs, fs = xp[order], fp[order]
    out = np.interp(x, xs, fs)
    return np.where((x >= xs[0]) & (x <= xs[-1]), out, np.nan)


def expiry_metrics(sm: Smile) -> ExpiryMetrics:
    """ATM IV, 25-delta risk reversal and butterfly of one expiry's smile, NaN plus reasons where thin."""
    n = int(sm.k.size)
    if n < 2:
        return ExpiryMetrics(np.nan, np.nan, np.nan, n, int(SurfaceReason.TOO_FEW_STRIKES))
    reasons = SurfaceReason.OK
    atm = float(interp_inside(0.0, sm.k, sm.iv))
    if np.isnan(atm):
        reasons |= SurfaceReason.NO_ATM_BRACKET
    calls = sm.is_call & np.isfinite(sm.delta)
    puts = ~sm.is_call & np.isfinite(sm.delta)
    iv25c = float(interp_inside(DELTA_25, sm.delta[calls], sm.iv[calls]))
    iv25p = float(interp_inside(-DELTA_25, sm.delta[puts], sm.iv[puts]))
    if np.isnan(iv25c):
        reasons |= SurfaceReason.NO_25D_CALL
    if np.isnan(iv25p):
        reasons |= SurfaceReason.NO_25D_PUT
    return ExpiryMetrics(atm, iv25c - iv25p, (iv25c + iv25p) / 2.0 - atm, n, int(reasons))


def calendar_violations(k_short: np.ndarray, w_short: np.ndarray, k_long: np.ndarray, w_long: np.ndarray,
                        tol: float = CALENDAR_TOL) -> Violations:
    """Points where total variance falls from a shorter expiry to the next longer one.

    Checked at every smile point of either expiry (and ``k = 0``) inside both smiles' ranges, each
    smile's ``w`` interpolated linearly in ``k``; a violation is ``w_short - w_long > tol``.
    """
    if np.size(k_short) < 2 or np.size(k_long) < 2:
        return Violations(0, 0)
    points = np.unique(np.concatenate([np.asarray(k_short), np.asarray(k_long), [0.0]]))
    ws = interp_inside(points, k_short, w_short)
    wl = interp_inside(points, k_long, w_long)
    both = np.isfinite(ws) & np.isfinite(wl)
    return Violations(int(np.sum(ws[both] - wl[both] > tol)), int(both.sum()))


def call_coin_prices(strike: np.ndarray, forward: np.ndarray, price_coin: np.ndarray,
                     is_call: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x = K / F, call price in coin)``: puts become calls by parity ``C = P + 1 - K / F`` (r = 0)."""
    x = np.asarray(strike, np.float64) / np.asarray(forward, np.float64)
    price = np.asarray(price_coin, np.float64)
    return x, np.where(np.asarray(is_call, bool), price, price + 1.0 - x)


def butterfly_violations(x: np.ndarray, call_coin: np.ndarray, tol: float = BUTTERFLY_TOL) -> Violations:
    """Strike triples where call prices are not convex in ``x = K / F``.

    The slope between neighbouring strikes must not fall: a violation is a slope smaller than the
    previous one by more than ``tol`` (a negative second divided difference beyond it). Each inner
    strike of three or more is one check.
    """
    x = np.asarray(x, np.float64)
    c = np.asarray(call_coin, np.float64)
    ok = np.isfinite(x) & np.isfinite(c)
    x, c = x[ok], c[ok]
    order = np.argsort(x, kind="stable")
    x, c = x[order], c[order]
    distinct = np.concatenate([[True], np.diff(x) > 0]) if x.size else np.zeros(0, bool)
    x, c = x[distinct], c[distinct]
    if x.size < 3:
        return Violations(0, 0)
    slope = np.diff(c) / np.diff(x)
    drop = slope[:-1] - slope[1:]
    return Violations(int(np.sum(drop > tol)), int(drop.size))


def parity_violations(strike: np.ndarray, forward: np.ndarray, price_coin: np.ndarray, is_call: np.ndarray,
                      tol: float = PARITY_TOL) -> Violations:
    """Strikes with both a call and a put where ``|C - P - (1 - K / F)| > tol`` (coin, r = 0).

    ``F`` is the mean of the pair's two forwards (each ticker carries its own).
    """
    strike = np.asarray(strike, np.float64)
    forward = np.asarray(forward, np.float64)
    price = np.asarray(price_coin, np.float64)
    is_call = np.asarray(is_call, bool)
    # per strike the last call and the last put given (a chain may repeat a strike), vectorized:
    # a loop over strikes with a mask each was quadratic in the chain
    k_call, c = _last_per_strike(strike, np.flatnonzero(is_call))
    k_put, p = _last_per_strike(strike, np.flatnonzero(~is_call))
    k, ci, pi = np.intersect1d(k_call, k_put, assume_unique=True, return_indices=True)
    c, p = c[ci], p[pi]
    f = (forward[c] + forward[p]) / 2.0
    gap = price[c] - price[p] - (1.0 - k / f)
    ok = np.isfinite(gap)
    return Violations(int(np.sum(np.abs(gap[ok]) > tol)), int(np.sum(ok)))


def _last_per_strike(strike: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct strikes of ``rows`` (sorted) and, for each, the last of ``rows`` holding it."""
    backwards = rows[::-1]
    distinct, first_backwards = np.unique(strike[backwards], return_index=True)
    return distinct, backwards[first_backwards]


class ExpiryRow(NamedTuple):
    """One expiry of a snapshot's surface: its metrics, total variance and the checks attributed to it."""

    expiry: int
    t_years: float
    metrics: ExpiryMetrics
    atm_total_var: float
    calendar: Violations  # against the next shorter expiry
    butterfly: Violations
    parity: Violations


def surface(expiry: np.ndarray, strike: np.ndarray, forward: np.ndarray, t_years: np.ndarray, iv: np.ndarray,
            delta: np.ndarray, is_call: np.ndarray, price_coin: np.ndarray, *,
            calendar_tol: float = CALENDAR_TOL, butterfly_tol: float = BUTTERFLY_TOL,
            parity_tol: float = PARITY_TOL) -> list[ExpiryRow]:
    """The surface of one snapshot's chain (one underlying): one row per expiry, shortest first.

    Args:
        expiry: each option's expiry (any integer code, e.g. ns); options group by it.
        strike: strikes.
        forward: each option's forward.
        t_years: time to expiry (one value per expiry expected; the expiry's first is used).
        iv: implied vols (NaN where none).
        delta: forward deltas at ``iv``.
        is_call: True for calls.
        price_coin: prices in coin (premium / F), for the butterfly and parity checks.
        calendar_tol: tolerance in total variance.
        butterfly_tol: tolerance in slope (coin per unit of K / F).
        parity_tol: tolerance in coin.

    Returns:
        One :class:`ExpiryRow` per expiry with ``t_years > 0``, by ascending time to expiry.
    """
    expiry = np.asarray(expiry, np.int64)
    arrays = [np.asarray(a, np.float64) for a in (strike, forward, t_years, iv, delta, price_coin)]
    strike, forward, t_years, iv, delta, price_coin = arrays
    is_call = np.asarray(is_call, bool)
    rows: list[ExpiryRow] = []
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for e in np.unique(expiry):
        m = expiry == e
        t = float(t_years[m][0])
        if not t > 0:
            continue
        sm = smile(strike[m], forward[m], iv[m], delta[m], is_call[m])
        metrics = expiry_metrics(sm)
        w = sm.iv**2 * t
        calendar = Violations(0, 0) if previous is None else \
            calendar_violations(*previous, sm.k, w, calendar_tol)
        previous = (sm.k, w)
        x, c = call_coin_prices(strike[m], forward[m], price_coin[m], is_call[m])
        otm = np.where(is_call[m], strike[m] >= forward[m], strike[m] < forward[m])
        # one price per strike, the OTM one where there is one (its time value is what is measured)
        order = np.lexsort((~otm, x))
        butterfly = butterfly_violations(x[order], c[order], butterfly_tol)
        parity = parity_violations(strike[m], forward[m], price_coin[m], is_call[m], parity_tol)
        rows.append(ExpiryRow(int(e), t, metrics, metrics.atm_iv**2 * t, calendar, butterfly, parity))
    return rows
