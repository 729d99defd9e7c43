"""European option prices, greeks and implied volatility in JAX (float64), vectorized over a chain.

Two models, one formula: Black-Scholes on a spot ``S`` with rate ``r`` and a continuous dividend or
carry yield ``q`` (forward ``F = S e^{(r-q)T}``), and Black-76 on a forward or futures price ``F``
(Deribit's convention: ``F`` is the option's ``underlying_price``), which is Black-Scholes with
``q = r``. Units: prices in the underlying's quote currency, ``t_years`` in years (ACT/365 where the
caller has timestamps), ``rate``/``carry``/``vol`` continuously compounded per year, as fractions
(0.65, not 65 %).

Greeks are derivatives of the price function taken by ``jax.grad`` (``vmap``-ed over the chain):
``delta`` = dP/dS (dP/dF for Black-76), ``gamma`` = d2P/dS2, ``vega`` = dP/dvol (per 1.0 of vol),
``theta`` = -dP/dT (per year, everything else fixed), ``rho`` = dP/dr (per 1.0 of rate; Black-76
holds ``F`` fixed, so rho = -T P).

Implied volatility: the price is turned into its undiscounted out-of-the-money counterpart (put-call
parity), normalized by ``sqrt(F K)``, and ``s = vol sqrt(T)`` is found by a Newton iteration
safeguarded by a bracket (a step leaving it bisects) for :data:`IV_ITERATIONS` fixed steps, in three
regimes as in Jaeckel's "Let's be rational": below the inflection point ``s_c = sqrt(2 |ln(F/K)|)``
on the log price in ``w = 1/s^2`` (where ``ln price`` is nearly linear in ``w``); above it on the
price from a start left of the root (the price is concave there, so Newton climbs monotonically);
and past half the price's bound on the log of its distance to the bound (where the price is flat
and Newton on it would crawl). Where no volatility reproduces the price the result is NaN with an
:class:`IVReason`.

Entry points take NumPy arrays (broadcast together), pad them to power-of-two buckets and call a
kernel jitted at this boundary, so a chain compiles once per bucket size, not once per length.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import jax
import numpy as np

# float64 is the point (1e-8 in price, 1e-6 in vol): enable x64 at the kernel boundary, as the other
# JAX kernels do, before any array is made
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402  (after x64 is on)

IV_ITERATIONS = 10  # over s in [1e-4, 12], |ln F/K| <= 6 the worst case converged after 9 (8 fail the tests)
_UPPER_FRACTION = 0.5  # beyond this fraction of its bound a price is solved as its distance to the bound
_S_MAX = 40.0  # the bracket's top in s = vol sqrt(T): a normalized price within 1e-300 of its bound
_SQRT_2PI = float(np.sqrt(2.0 * np.pi))
_LN_SQRT_2PI = float(np.log(_SQRT_2PI))
_EPS = float(np.finfo(np.float64).eps)
# the price the solved vol gives, relative to the target, else NO_CONVERGENCE: far in the tails the
# normalized price is a difference of two near-equal legs, noisy at ~3e-9 relative
_CONVERGED_REL = 1e-7
_MIN_BUCKET = 64
# a normalized time value below this is NO_VEGA: XLA's CPU code flushes subnormal floats to zero, and
# the legs of such a price (2.3e-307 for a put 37 % out of the money at 1 % vol) are subnormal
_TINY = 1e-290


class IVReason(IntEnum):
    """Why an implied volatility is NaN (``OK`` where it is not); the closed set of reason codes."""

    OK = 0
    BAD_INPUT = 1  # a non-finite input, or an underlying or strike that is not positive
    NON_POSITIVE_TIME = 2  # at or past expiry
    NON_POSITIVE_PRICE = 3  # the price is zero or negative
    BELOW_INTRINSIC = 4  # below the discounted intrinsic value (the no-arbitrage lower bound)
    ABOVE_UPPER_BOUND = 5  # at or above the discounted forward (call) or strike (put)
    NO_VEGA = 6  # the time value is within the price's rounding (or below 1e-290 sqrt(F K)): no vol is
    #              pinned down
    NO_CONVERGENCE = 7  # the iteration ended without reproducing the price (none seen on the test grid)

    @property
    def label(self) -> str:
        """The lower-case name written to tables (``below_intrinsic``)."""
        return self.name.lower()


IV_REASON_LABELS: tuple[str, ...] = tuple(r.label for r in IVReason)


class Greeks(NamedTuple):
    """First and second order sensitivities, each an array shaped like the inputs."""

    delta: np.ndarray  # dP/dS (Black-76: dP/dF)
    gamma: np.ndarray  # d2P/dS2
    vega: np.ndarray  # dP/dvol, per 1.0 of vol
    theta: np.ndarray  # -dP/dT, per year
    rho: np.ndarray  # dP/dr, per 1.0 of rate


def bucket(n: int) -> int:
    """The padded length for ``n`` options: the next power of two, at least 64."""
    return max(_MIN_BUCKET, 1 << max(0, int(n - 1).bit_length()))


def _ndtr(z: jax.Array) -> jax.Array:
    # erfc directly: jax.scipy's ndtr evaluates erf and erfc on every element (7x the cost), and
    # XLA's float64 erfc is within 2e-15 relative over the whole range
    return 0.5 * jax.lax.erfc(-z * 0.7071067811865476)


def _gbs(spot: jax.Array, strike: jax.Array, t: jax.Array, rate: jax.Array, carry: jax.Array,
         vol: jax.Array, is_call: jax.Array) -> jax.Array:
    sd = vol * jnp.sqrt(t)
    d1 = (jnp.log(spot / strike) + (rate - carry) * t) / sd + 0.5 * sd
    d2 = d1 - sd
    fwd_df = spot * jnp.exp(-carry * t)
    k_df = strike * jnp.exp(-rate * t)
    call = fwd_df * _ndtr(d1) - k_df * _ndtr(d2)
    put = k_df * _ndtr(-d2) - fwd_df * _ndtr(-d1)
    return jnp.where(is_call, call, put)


def _black76(forward: jax.Array, strike: jax.Array, t: jax.Array, rate: jax.Array, vol: jax.Array,
             is_call: jax.Array) -> jax.Array:
    return _gbs(forward, strike, t, rate, rate, vol, is_call)


@jax.jit
def _gbs_prices(spot, strike, t, rate, carry, vol, is_call):  # noqa: ANN001, ANN202
    return _gbs(spot, strike, t, rate, carry, vol, is_call)


@jax.jit
def _b76_prices(forward, strike, t, rate, vol, is_call):  # noqa: ANN001, ANN202
    return _black76(forward, strike, t, rate, vol, is_call)


def _sensitivities(price, under, t, rate, vol):  # noqa: ANN001, ANN202
    """(delta, gamma, vega, theta, rho) of ``price(under, t, rate, vol)`` at one option, by jax.grad."""
    d_under = jax.grad(price, argnums=0)
    args = (under, t, rate, vol)
    return (d_under(*args), jax.grad(d_under, argnums=0)(*args), jax.grad(price, argnums=3)(*args),
            -jax.grad(price, argnums=1)(*args), jax.grad(price, argnums=2)(*args))


def _gbs_greeks_one(spot, strike, t, rate, vol, is_call, carry):  # noqa: ANN001, ANN202
    return _sensitivities(lambda s, t_, r, v: _gbs(s, strike, t_, r, carry, v, is_call), spot, t, rate, vol)


def _b76_greeks_one(forward, strike, t, rate, vol, is_call):  # noqa: ANN001, ANN202
    # rate moves the discount and the carry together: F stays fixed, so rho = -T P
    return _sensitivities(lambda f, t_, r, v: _black76(f, strike, t_, r, v, is_call), forward, t, rate, vol)


_gbs_greeks = jax.jit(jax.vmap(_gbs_greeks_one))
_b76_greeks = jax.jit(jax.vmap(_b76_greeks_one))


def _normalized(x: jax.Array, s: jax.Array, theta: jax.Array, upper: jax.Array, ex_half: jax.Array,
                ex_neg_half: jax.Array) -> jax.Array:
    """The out-of-the-money option's price / sqrt(F K) (``beta``), or where ``upper`` its distance to
    its bound ``e^{theta x/2}`` (``e^{x/2} N(-d1) + e^{-x/2} N(d2)``: a sum, so no cancellation)."""
    d1 = x / s + 0.5 * s
    d2 = d1 - s
    n1 = _ndtr(jnp.where(upper, -d1, theta * d1))
    n2 = _ndtr(jnp.where(upper, d2, theta * d2))
    return jnp.where(upper, ex_half * n1 + ex_neg_half * n2, theta * (ex_half * n1 - ex_neg_half * n2))


def _solve_one(u: jax.Array, forward: jax.Array, strike: jax.Array, t: jax.Array,
               is_call: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Implied vol of one undiscounted Black price ``u``; ``(vol, IVReason code)``."""
    finite = jnp.isfinite(u) & jnp.isfinite(forward) & jnp.isfinite(strike) & jnp.isfinite(t)
    bad = ~finite | (forward <= 0) | (strike <= 0)
    intrinsic = jnp.where(is_call, jnp.maximum(forward - strike, 0.0), jnp.maximum(strike - forward, 0.0))
    time_value = u - intrinsic  # the out-of-the-money option's price, by put-call parity
    # lost in the price's rounding, or so small that XLA (flushing subnormals to zero) cannot solve it
    rounding = jnp.maximum(4.0 * _EPS * jnp.abs(u), _TINY * jnp.sqrt(jnp.abs(forward * strike)))
    reason = jnp.select(
        [bad, t <= 0, u <= 0, u >= jnp.where(is_call, forward, strike), time_value < -rounding,
         time_value <= rounding],
        [int(IVReason.BAD_INPUT), int(IVReason.NON_POSITIVE_TIME), int(IVReason.NON_POSITIVE_PRICE),
         int(IVReason.ABOVE_UPPER_BOUND), int(IVReason.BELOW_INTRINSIC), int(IVReason.NO_VEGA)],
        int(IVReason.OK))
    solvable = reason == IVReason.OK
    # benign stand-ins where unsolvable, so the loop stays finite; their results are masked at the end
    f_ = jnp.where(solvable, forward, 1.0)
    k_ = jnp.where(solvable, strike, 1.0)
    x = jnp.log(f_ / k_)
    theta = jnp.where(x <= 0, 1.0, -1.0)  # the out-of-the-money side: call when K >= F
    ex_half, ex_neg_half = jnp.exp(0.5 * x), jnp.exp(-0.5 * x)
    target = jnp.where(solvable, time_value, 0.1) / jnp.sqrt(f_ * k_)
    bound = jnp.exp(0.5 * theta * x)  # beta as s -> infinity
    s_c = jnp.sqrt(2.0 * jnp.abs(x))
    no = jnp.zeros_like(x, dtype=bool)
    low = (s_c > 0) & (target < _normalized(x, jnp.where(s_c > 0, s_c, 1.0), theta, no, ex_half, ex_neg_half))
    upper = ~low & (target > _UPPER_FRACTION * bound)
    # the upper regime solves for the distance to the bound, computed from the price once
    goal = jnp.where(upper, bound - target, target)
    ln_goal = jnp.log(goal)
    # sqrt(2 pi) beta is a lower bound of the root (beta <= s / sqrt(2 pi))
    s0 = jnp.where(low, s_c, jnp.maximum(s_c, _SQRT_2PI * target))
    lo0 = jnp.where(low, 0.0, s_c)
    hi0 = jnp.where(low, s_c, _S_MAX)

    mid = ~low & ~upper
    # f rises with s: ln beta below s_c, minus the log distance near the bound
    log_sign = jnp.where(low, 1.0, -1.0)

    def step(_: int, state: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        s, lo, hi = state
        v = _normalized(x, s, theta, upper, ex_half, ex_neg_half)
        inv_s = 1.0 / s
        d1 = x * inv_s + 0.5 * s  # XLA shares it with _normalized's
        vega = jnp.exp(0.5 * x - 0.5 * d1 * d1 - _LN_SQRT_2PI)  # d beta / d s = -d distance / d s
        f = jnp.where(mid, v - goal, log_sign * (jnp.log(v) - ln_goal))
        lo = jnp.where(f < 0, s, lo)
        hi = jnp.where(f > 0, s, hi)
        step_s = f / vega  # mid: the Newton step; times v for the log regimes
        # low: Newton on ln beta in w = 1/s^2, where it is nearly linear (d ln beta/dw = -vega s^3 / 2 beta)
        w_next = inv_s * inv_s + 2.0 * step_s * v * inv_s * inv_s * inv_s
        s_next = jnp.where(low, jax.lax.rsqrt(w_next), s - jnp.where(upper, step_s * v, step_s))
        # NaN (a negative w, an underflowed price) fails both comparisons: the step bisects
        ok = (s_next >= lo) & (s_next <= hi)
        s = jnp.where(f == 0, s, jnp.where(ok, s_next, 0.5 * (lo + hi)))
        return s, lo, hi

    s, _, _ = jax.lax.fori_loop(0, IV_ITERATIONS, step, (s0, lo0, hi0))
    got = _normalized(x, s, theta, upper, ex_half, ex_neg_half)
    converged = jnp.abs(got - goal) <= _CONVERGED_REL * goal
    reason = jnp.where(solvable & ~converged, int(IVReason.NO_CONVERGENCE), reason)
    vol = jnp.where(reason == IVReason.OK, s / jnp.sqrt(jnp.where(solvable, t, 1.0)), jnp.nan)
    return vol, reason.astype(jnp.int8)


_solve_chain = jax.jit(jax.vmap(_solve_one))


def _padded(*arrays: object) -> tuple[int, list[np.ndarray]]:
    """Broadcast to one 1-D length ``n`` and pad to :func:`bucket` with a benign option (F=K=T=1)."""
    flat = [np.ravel(a) for a in np.broadcast_arrays(*[np.asarray(a) for a in arrays])]
    n = len(flat[0]) if flat else 0
    size = bucket(n)
    out = []
    for a in flat:
        fill = True if a.dtype == np.bool_ else 1.0
        padded = np.full(size, fill, dtype=np.bool_ if a.dtype == np.bool_ else np.float64)
        padded[:n] = a
        out.append(padded)
    return n, out


def _shape(*arrays: object) -> tuple[int, ...]:
    return np.broadcast_shapes(*[np.shape(a) for a in arrays])


def bs_price(spot: np.ndarray, strike: np.ndarray, t_years: np.ndarray, rate: np.ndarray, vol: np.ndarray,
             is_call: np.ndarray, carry: np.ndarray | float = 0.0) -> np.ndarray:
    """Black-Scholes prices of European options on a spot (arrays broadcast together).

    Args:
        spot: underlying price.
        strike: strike price, same currency.
        t_years: time to expiry in years (> 0).
        rate: risk-free rate, continuously compounded per year.
        vol: volatility per sqrt(year), as a fraction.
        is_call: True for calls, False for puts.
        carry: dividend or carry yield q, continuously compounded per year.

    Returns:
        float64 prices, shaped like the broadcast inputs.
    """
    shape = _shape(spot, strike, t_years, rate, vol, is_call, carry)
    n, (s, k, t, r, q, v, c) = _padded(spot, strike, t_years, rate, carry, vol, np.asarray(is_call, bool))
    return np.asarray(_gbs_prices(s, k, t, r, q, v, c))[:n].reshape(shape)


def black76_price(forward: np.ndarray, strike: np.ndarray, t_years: np.ndarray, rate: np.ndarray,
                  vol: np.ndarray, is_call: np.ndarray) -> np.ndarray:
    """Black-76 prices of European options on a forward or future (discounted at ``rate``).

    Args:
        forward: forward or futures price (Deribit: ``underlying_price``).
        strike, t_years, rate, vol, is_call: as for :func:`bs_price`.

    Returns:
        float64 prices in the forward's currency (Deribit quotes them divided by ``forward``).
    """
    shape = _shape(forward, strike, t_years, rate, vol, is_call)
    n, (f, k, t, r, v, c) = _padded(forward, strike, t_years, rate, vol, np.asarray(is_call, bool))
    return np.asarray(_b76_prices(f, k, t, r, v, c))[:n].reshape(shape)


def bs_greeks(spot: np.ndarray, strike: np.ndarray, t_years: np.ndarray, rate: np.ndarray, vol: np.ndarray,
              is_call: np.ndarray, carry: np.ndarray | float = 0.0) -> Greeks:
    """Black-Scholes greeks by ``jax.grad`` of :func:`bs_price` (arguments as there)."""
    shape = _shape(spot, strike, t_years, rate, vol, is_call, carry)
    n, (s, k, t, r, v, q, c) = _padded(spot, strike, t_years, rate, vol, carry, np.asarray(is_call, bool))
    out = _gbs_greeks(s, k, t, r, v, c, q)
    return Greeks(*(np.asarray(g)[:n].reshape(shape) for g in out))


def black76_greeks(forward: np.ndarray, strike: np.ndarray, t_years: np.ndarray, rate: np.ndarray,
                   vol: np.ndarray, is_call: np.ndarray) -> Greeks:
    """Black-76 greeks by ``jax.grad`` of :func:`black76_price`; delta and gamma are in the forward."""
    shape = _shape(forward, strike, t_years, rate, vol, is_call)
    n, (f, k, t, r, v, c) = _padded(forward, strike, t_years, rate, vol, np.asarray(is_call, bool))
    out = _b76_greeks(f, k, t, r, v, c)
    return Greeks(*(np.asarray(g)[:n].reshape(shape) for g in out))


def black76_implied_vol(price: np.ndarray, forward: np.ndarray, strike: np.ndarray, t_years: np.ndarray,
                        rate: np.ndarray, is_call: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Implied Black-76 volatility of each price, with the reason where there is none.

    Args:
        price: option price in the forward's currency (Deribit: ``mark_price * forward``).
        forward, strike, t_years, rate, is_call: as for :func:`black76_price`.

    Returns:
        ``(vol, reason)``: float64 vols (NaN where none) and int8 :class:`IVReason` codes.
    """
    shape = _shape(price, forward, strike, t_years, rate, is_call)
    n, (p, f, k, t, r, c) = _padded(price, forward, strike, t_years, rate, np.asarray(is_call, bool))
    vol, reason = _solve_chain(p * np.exp(r * t), f, k, t, c)
    return np.asarray(vol)[:n].reshape(shape), np.asarray(reason)[:n].reshape(shape)


def bs_implied_vol(price: np.ndarray, spot: np.ndarray, strike: np.ndarray, t_years: np.ndarray,
                   rate: np.ndarray, is_call: np.ndarray, carry: np.ndarray | float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Implied Black-Scholes volatility (spot, rate, carry); see :func:`black76_implied_vol`."""
    shape = _shape(price, spot, strike, t_years, rate, is_call, carry)
    n, (p, s, k, t, r, q, c) = _padded(price, spot, strike, t_years, rate, carry, np.asarray(is_call, bool))
    forward = s * np.exp((r - q) * t)
    vol, reason = _solve_chain(p * np.exp(r * t), forward, k, t, c)
    return np.asarray(vol)[:n].reshape(shape), np.asarray(reason)[:n].reshape(shape)

