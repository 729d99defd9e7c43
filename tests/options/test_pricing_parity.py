"""The JAX pricing kernels against their NumPy reference, and Hypothesis round trips.

The reference prices through SciPy's ndtr, takes greeks from their closed forms and iterates the
implied-vol Newton to convergence, so agreement checks XLA's erfc, ``jax.grad`` and the fixed
iteration count, not one code path against itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import options_pricing as op
from kernels import options_reference as ref
from kernels.options_pricing import IVReason
from tests.options.grid import UNDERLYING, grid

RTOL = 1e-11


@pytest.fixture(scope="module")
def g() -> dict[str, np.ndarray]:
    return grid()


def _close(a: np.ndarray, b: np.ndarray, rtol: float = RTOL, atol: float = 1e-13) -> None:
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_prices_and_greeks_equal_the_reference(g: dict[str, np.ndarray]) -> None:
    args = (UNDERLYING, g["strike"], g["t"], g["rate"], g["vol"], g["is_call"])
    _close(op.black76_price(*args), ref.black76_price(*args))
    _close(op.bs_price(*args, carry=0.03), ref.bs_price(*args, carry=0.03))
    for ours, theirs in ((op.black76_greeks(*args), ref.black76_greeks(*args)),
                         (op.bs_greeks(*args, carry=0.03), ref.bs_greeks(*args, carry=0.03))):
        for name in ours._fields:
            # gamma at one-minute expiries is 1/(F vol sqrt T): relative agreement is what holds
            _close(getattr(ours, name), getattr(theirs, name), rtol=1e-8, atol=1e-12)


def test_implied_vols_and_reasons_equal_the_reference(g: dict[str, np.ndarray]) -> None:
    args = (UNDERLYING, g["strike"], g["t"], g["rate"], g["vol"], g["is_call"])
    price = ref.black76_price(*args)
    bumped = np.concatenate([price, price * 1.5, price * 0.5, price - 1.0])  # some outside the bounds
    rep = lambda a: np.tile(a, 4)  # noqa: E731
    ours = op.black76_implied_vol(bumped, UNDERLYING, rep(g["strike"]), rep(g["t"]), rep(g["rate"]),
                                  rep(g["is_call"]))
    theirs = ref.black76_implied_vol(bumped, UNDERLYING, rep(g["strike"]), rep(g["t"]), rep(g["rate"]),
                                     rep(g["is_call"]))
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert {IVReason.OK, IVReason.BELOW_INTRINSIC, IVReason.ABOVE_UPPER_BOUND,
            IVReason.NON_POSITIVE_PRICE} <= set(ours[1].tolist())
    both = ours[1] == IVReason.OK
    _close(ours[0][both], theirs[0][both], rtol=1e-9, atol=0)
    assert np.isnan(ours[0][~both]).all() and np.isnan(theirs[0][~both]).all()


def test_shapes_broadcast_and_scalars_work() -> None:
    strikes = np.array([95.0, 100.0, 105.0])
    vol, reason = op.black76_implied_vol(np.full((2, 3), 5.0), 100.0, strikes, 0.5, 0.0, True)
    assert vol.shape == reason.shape == (2, 3)
    assert op.black76_price(100.0, 100.0, 1.0, 0.0, 0.2, True).shape == ()
    assert op.black76_greeks(100.0, 100.0, 1.0, 0.0, 0.2, [True, False]).delta.shape == (2,)


def test_one_compile_per_bucket() -> None:
    op.black76_implied_vol(np.full(70, 5.0), 100.0, 100.0, 0.5, 0.0, True)  # bucket 128
    before = op._solve_chain._cache_size()
    for n in (65, 100, 127, 128):
        op.black76_implied_vol(np.full(n, 5.0), 100.0, 100.0, 0.5, 0.0, True)
    assert op._solve_chain._cache_size() == before


@settings(max_examples=300, deadline=None)
@given(log_moneyness=st.floats(-3.0, 3.0), t_years=st.floats(1e-5, 10.0), vol=st.floats(0.01, 4.0),
       rate=st.floats(-0.02, 0.2), is_call=st.booleans())
def test_round_trip_price_to_vol(log_moneyness: float, t_years: float, vol: float, rate: float,
                                 is_call: bool) -> None:
    strike = UNDERLYING * np.exp(log_moneyness)
    price = float(op.black76_price(UNDERLYING, strike, t_years, rate, vol, is_call))
    vega = float(op.black76_greeks(UNDERLYING, strike, t_years, rate, vol, is_call).vega)
    iv, reason = op.black76_implied_vol(price, UNDERLYING, strike, t_years, rate, is_call)
    legs = UNDERLYING + strike  # the price is a difference of legs no larger than this
    if price > 1e-280 and vega > 0 and 64 * np.finfo(float).eps * legs / vega < 1e-7:
        assert reason == IVReason.OK
        assert abs(float(iv) - vol) <= 1e-6
    elif reason == IVReason.OK:  # no vega to pin it: whatever vol it gives reprices the price
        again = float(op.black76_price(UNDERLYING, strike, t_years, rate, float(iv), is_call))
        assert again == pytest.approx(price, rel=1e-7)
    else:
        assert reason in (IVReason.NO_VEGA, IVReason.NON_POSITIVE_PRICE, IVReason.BELOW_INTRINSIC,
                          IVReason.ABOVE_UPPER_BOUND)


def test_a_price_at_the_float64_floor_has_no_vol_in_either() -> None:
    """Found by the round trip: a put 37 % out of the money at 1 % vol over 6.9 years is worth 2.3e-307,
    whose legs are subnormal; XLA flushes those to zero, so the kernel said ``no_convergence`` where the
    reference solved it. Both now call it ``no_vega`` (below 1e-290 sqrt(F K))."""
    strike = UNDERLYING * np.exp(-0.984375)
    price = float(ref.black76_price(UNDERLYING, strike, 6.9375, 0.0, 0.01, False))
    assert 0 < price < 1e-300
    for kernel in (op, ref):
        iv, reason = kernel.black76_implied_vol(price, UNDERLYING, strike, 6.9375, 0.0, False)
        assert np.isnan(iv) and reason == IVReason.NO_VEGA
