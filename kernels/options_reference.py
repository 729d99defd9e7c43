"""NumPy reference of :mod:`kernels.options_pricing` (same functions, same arguments, same results).

Independent where it can be: prices through SciPy's ``ndtr`` (not XLA's erfc), greeks from their
closed forms (not ``jax.grad``), and the implied volatility by the same safeguarded Newton iterated
until no option moves any more (up to :data:`MAX_ITERATIONS`), not a fixed number of steps. Used by
the tests (parity) and by ``bench/options_iv.py`` (the peer the JAX kernel is measured against).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from kernels.options_pricing import Greeks, IVReason

MAX_ITERATIONS = 100
_S_MAX = 40.0
_SQRT_2PI = float(np.sqrt(2.0 * np.pi))
_EPS = float(np.finfo(np.float64).eps)
_CONVERGED_REL = 1e-7
_UPPER_FRACTION = 0.5
_TINY = 1e-290  # the kernel's floor (XLA flushes subnormals), kept here so the reasons agree


def _arrays(*values: object) -> list[np.ndarray]:
    return [np.asarray(v, dtype=np.bool_ if i == len(values) - 1 else np.float64)
            for i, v in enumerate(values)]


def _flat(*values: object) -> list[np.ndarray]:
    return [np.ravel(a) for a in np.broadcast_arrays(*_arrays(*values))]


def _d1_d2(spot: np.ndarray, strike: np.ndarray, t: np.ndarray, rate: np.ndarray, carry: np.ndarray,
           vol: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sd = vol * np.sqrt(t)
    d1 = (np.log(spot / strike) + (rate - carry) * t) / sd + 0.5 * sd
    return d1, d1 - sd, sd


def bs_price(spot: np.ndarray, strike: np.ndarray, t_years: np.ndarray, rate: np.ndarray, vol: np.ndarray,
             is_call: np.ndarray, carry: np.ndarray | float = 0.0) -> np.ndarray:
    """Reference of :func:`kernels.options_pricing.bs_price`."""
    s, k, t, r, v, q, c = _arrays(spot, strike, t_years, rate, vol, carry, is_call)
    d1, d2, _ = _d1_d2(s, k, t, r, q, v)
    fwd_df, k_df = s * np.exp(-q * t), k * np.exp(-r * t)
    return np.where(c, fwd_df * ndtr(d1) - k_df * ndtr(d2), k_df * ndtr(-d2) - fwd_df * ndtr(-d1))


def black76_price(forward: np.ndarray, strike: np.ndarray, t_years: np.ndarray, rate: np.ndarray,
                  vol: np.ndarray, is_call: np.ndarray) -> np.ndarray:
    """Reference of :func:`kernels.options_pricing.black76_price`."""
    return bs_price(forward, strike, t_years, rate, vol, is_call, carry=rate)


def bs_greeks(spot: np.ndarray, strike: np.ndarray, t_years: np.ndarray, rate: np.ndarray, vol: np.ndarray,
              is_call: np.ndarray, carry: np.ndarray | float = 0.0) -> Greeks:
    """Closed-form Black-Scholes greeks (reference of :func:`kernels.options_pricing.bs_greeks`)."""
    s, k, t, r, v, q, c = _arrays(spot, strike, t_years, rate, vol, carry, is_call)
    d1, d2, sd = _d1_d2(s, k, t, r, q, v)
    dq, dr = np.exp(-q * t), np.exp(-r * t)
    pdf = np.exp(-0.5 * d1 * d1) / _SQRT_2PI
    sign = np.where(c, 1.0, -1.0)
    delta = sign * dq * ndtr(sign * d1)
    gamma = dq * pdf / (s * sd)
    vega = s * dq * pdf * np.sqrt(t)
    theta = (-s * dq * pdf * v / (2.0 * np.sqrt(t)) + sign * q * s * dq * ndtr(sign * d1)
             - sign * r * k * dr * ndtr(sign * d2))
    rho = sign * k * t * dr * ndtr(sign * d2)
    return Greeks(delta, gamma, vega, theta, rho)


def black76_greeks(forward: np.ndarray, strike: np.ndarray, t_years: np.ndarray, rate: np.ndarray,
                   vol: np.ndarray, is_call: np.ndarray) -> Greeks:
    """Closed-form Black-76 greeks; rho holds the forward fixed (-T P)."""
    g = bs_greeks(forward, strike, t_years, rate, vol, is_call, carry=rate)
    price = black76_price(forward, strike, t_years, rate, vol, is_call)
    t = np.asarray(t_years, np.float64)
    # bs_greeks' theta and rho move the forward with r - q = 0 already; rho also moves the carry
    return Greeks(g.delta, g.gamma, g.vega, g.theta, -t * price)


def _normalized(x: np.ndarray, s: np.ndarray, theta: np.ndarray, upper: np.ndarray) -> np.ndarray:
    d1 = x / s + 0.5 * s
    d2 = d1 - s
    beta = theta * (np.exp(0.5 * x) * ndtr(theta * d1) - np.exp(-0.5 * x) * ndtr(theta * d2))
    distance = np.exp(0.5 * x) * ndtr(-d1) + np.exp(-0.5 * x) * ndtr(d2)
    return np.where(upper, distance, beta)


def _solve(u: np.ndarray, forward: np.ndarray, strike: np.ndarray, t: np.ndarray, is_call: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        finite = np.isfinite(u) & np.isfinite(forward) & np.isfinite(strike) & np.isfinite(t)
        intrinsic = np.where(is_call, np.maximum(forward - strike, 0), np.maximum(strike - forward, 0))
        time_value = u - intrinsic
        rounding = np.maximum(4.0 * _EPS * np.abs(u), _TINY * np.sqrt(np.abs(forward * strike)))
        reason = np.select(
            [~finite | (forward <= 0) | (strike <= 0), t <= 0, u <= 0,
             u >= np.where(is_call, forward, strike), time_value < -rounding, time_value <= rounding],
            [IVReason.BAD_INPUT, IVReason.NON_POSITIVE_TIME, IVReason.NON_POSITIVE_PRICE,
             IVReason.ABOVE_UPPER_BOUND, IVReason.BELOW_INTRINSIC, IVReason.NO_VEGA], IVReason.OK)
        vol = np.full(u.shape, np.nan)
        ok = np.flatnonzero(reason == IVReason.OK)
        f, k = forward[ok], strike[ok]
        x = np.log(f / k)
        theta = np.where(x <= 0, 1.0, -1.0)
        target = time_value[ok] / np.sqrt(f * k)
        bound = np.exp(0.5 * theta * x)
        s_c = np.sqrt(2.0 * np.abs(x))
        at_c = _normalized(x, np.where(s_c > 0, s_c, 1.0), theta, np.zeros(len(x), bool))
        low = (s_c > 0) & (target < at_c)
        upper = ~low & (target > _UPPER_FRACTION * bound)
        goal = np.where(upper, bound - target, target)
        s = np.where(low, s_c, np.maximum(s_c, _SQRT_2PI * target))
        lo, hi = np.where(low, 0.0, s_c), np.where(low, s_c, _S_MAX)
        for _ in range(MAX_ITERATIONS):
            v = _normalized(x, s, theta, upper)
            d1 = x / s + 0.5 * s
            vega = np.exp(0.5 * x - 0.5 * d1 * d1) / _SQRT_2PI
            f_err = np.select([low, upper], [np.log(v / goal), np.log(goal / v)], v - goal)
            lo, hi = np.where(f_err < 0, s, lo), np.where(f_err > 0, s, hi)
            w_next = 1.0 / (s * s) + f_err / (0.5 * vega / v * s ** 3)
            s_low = np.where(w_next > 0, w_next, np.nan) ** -0.5
            s_next = np.select([low, upper], [s_low, s - f_err * v / vega], s - f_err / vega)
            good = np.isfinite(s_next) & (s_next >= lo) & (s_next <= hi)
            new = np.where(f_err == 0, s, np.where(good, s_next, 0.5 * (lo + hi)))
            if np.array_equal(new, s):
                break
            s = new
        converged = np.abs(_normalized(x, s, theta, upper) - goal) <= _CONVERGED_REL * goal
        sub = reason[ok]
        sub[~converged] = IVReason.NO_CONVERGENCE
        reason[ok] = sub
        vol[ok] = np.where(converged, s / np.sqrt(t[ok]), np.nan)
    return vol, reason.astype(np.int8)


def black76_implied_vol(price: np.ndarray, forward: np.ndarray, strike: np.ndarray, t_years: np.ndarray,
                        rate: np.ndarray, is_call: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference of :func:`kernels.options_pricing.black76_implied_vol`."""
    shape = np.broadcast_shapes(*(np.shape(a) for a in (price, forward, strike, t_years, rate, is_call)))
    p, f, k, t, r, c = _flat(price, forward, strike, t_years, rate, is_call)
    vol, reason = _solve(p * np.exp(r * t), f, k, t, c)
    return vol.reshape(shape), reason.reshape(shape)


def bs_implied_vol(price: np.ndarray, spot: np.ndarray, strike: np.ndarray, t_years: np.ndarray,
                   rate: np.ndarray, is_call: np.ndarray, carry: np.ndarray | float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Reference of :func:`kernels.options_pricing.bs_implied_vol`."""
    shape = np.broadcast_shapes(*(np.shape(a) for a in (price, spot, strike, t_years, rate, carry, is_call)))
    p, s, k, t, r, q, c = _flat(price, spot, strike, t_years, rate, carry, is_call)
    vol, reason = _solve(p * np.exp(r * t), s * np.exp((r - q) * t), k, t, c)
    return vol.reshape(shape), reason.reshape(shape)
