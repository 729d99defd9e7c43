"""The JAX pricing kernels against QuantLib (a test-only dependency) on the shared grid.

Prices to 1e-8, greeks to 1e-7 relative, implied vols to 1e-6 wherever the price pins the vol down
(64 ulp of the price's larger leg move the vol by less than 1e-7); elsewhere (near-zero vega: deep in
or out of the money at short expiries) the kernel either says why there is no vol or returns one
that reprices to the price. Outside the no-arbitrage bounds both QuantLib and the kernel refuse.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from kernels import options_pricing as op
from kernels import options_reference as ref
from kernels.options_pricing import IVReason
from tests.options.grid import UNDERLYING, grid

ql = pytest.importorskip("QuantLib", reason="QuantLib is the test-only reference (pip install '.[test]')")

EPS = np.finfo(np.float64).eps
CARRY = 0.02  # the spot grid's dividend yield


def _ql_type(is_call: bool) -> int:
    return ql.Option.Call if is_call else ql.Option.Put


def _ql_implied_sd(is_call: bool, strike: float, forward: float, price: float, discount: float) -> float:
    return ql.blackFormulaImpliedStdDev(_ql_type(is_call), strike, forward, price, discount, 0.0,
                                        ql.nullDouble(), 1e-14, 1000)


def _calculator(forward: float, strike: float, t: float, rate: float, vol: float, is_call: bool):  # noqa: ANN202
    payoff = ql.PlainVanillaPayoff(_ql_type(is_call), strike)
    return ql.BlackCalculator(payoff, forward, vol * np.sqrt(t), np.exp(-rate * t))


def _ql_columns(g: dict[str, np.ndarray], spot: bool) -> dict[str, np.ndarray]:
    """QuantLib's price and greeks per grid row: Black-76 on F = 100, or Black-Scholes on S = 100."""
    out: dict[str, list[float]] = {k: [] for k in ("price", "delta", "gamma", "vega", "theta", "rho")}
    for k, t, v, r, c in zip(g["strike"], g["t"], g["vol"], g["rate"], g["is_call"], strict=True):
        q = CARRY if spot else r
        forward = UNDERLYING * np.exp((r - q) * t)
        calc = _calculator(forward, k, t, r, v, bool(c))
        out["price"].append(calc.value())
        out["vega"].append(calc.vega(t))
        out["theta"].append(calc.theta(UNDERLYING, t))
        if spot:
            out["delta"].append(calc.delta(UNDERLYING))
            out["gamma"].append(calc.gamma(UNDERLYING))
            out["rho"].append(calc.rho(t))
        else:
            out["delta"].append(calc.deltaForward())
            out["gamma"].append(calc.gammaForward())
            # Black-76 holds the forward fixed: the rate moves the discount and the carry together
            out["rho"].append(calc.rho(t) + calc.dividendRho(t))
    return {k: np.array(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def g() -> dict[str, np.ndarray]:
    return grid()


@pytest.mark.parametrize("spot", [False, True], ids=["black76", "black_scholes"])
def test_prices_and_greeks_match_quantlib(g: dict[str, np.ndarray], spot: bool) -> None:
    ref = _ql_columns(g, spot)
    args = (UNDERLYING, g["strike"], g["t"], g["rate"], g["vol"], g["is_call"])
    if spot:
        price, greeks = op.bs_price(*args, carry=CARRY), op.bs_greeks(*args, carry=CARRY)
    else:
        price, greeks = op.black76_price(*args), op.black76_greeks(*args)
    worst = np.max(np.abs(price - ref["price"]))
    print(f"{len(price)} options: worst price error {worst:.2e} (underlying {UNDERLYING})")
    assert worst <= 1e-8
    for name in ("delta", "gamma", "vega", "theta", "rho"):
        np.testing.assert_allclose(getattr(greeks, name), ref[name], rtol=1e-7, atol=1e-10, err_msg=name)


def _well_posed(g: dict[str, np.ndarray], forward: np.ndarray, price: np.ndarray,
                vega: np.ndarray) -> np.ndarray:
    """The options whose price pins the vol down: above the kernel's float64 floor (1e-290 sqrt(F K),
    ``no_vega`` below it), and 64 ulp of the larger of the two legs the price is the difference of (the
    out-of-the-money option's strike leg) move the vol by less than 1e-7."""
    sd = g["vol"] * np.sqrt(g["t"])
    d2 = np.log(forward / g["strike"]) / sd - 0.5 * sd
    otm_call = g["strike"] >= forward
    leg = g["strike"] * np.exp(-g["rate"] * g["t"]) * ndtr(np.where(otm_call, d2, -d2))
    leg = np.maximum(leg, price)
    return (price > 1e-280) & (vega > 0) & (64 * EPS * leg / np.where(vega > 0, vega, 1.0) < 1e-7)


@pytest.mark.parametrize("spot", [False, True], ids=["black76", "black_scholes"])
def test_implied_vol_matches_truth_and_quantlib(g: dict[str, np.ndarray], spot: bool) -> None:
    """Prices from the NumPy reference (SciPy's ndtr: accurate far in the tails, where QuantLib's
    normal distribution is not: 7.3e-16 for a put worth 5.1e-16) are inverted back to their vols;
    QuantLib inverts the same prices where its own price agrees with them to 1e-10 and its solver's
    accuracy (1e-14 in price) pins the vol."""
    args = (UNDERLYING, g["strike"], g["t"], g["rate"], g["vol"], g["is_call"])
    q = CARRY if spot else g["rate"]
    forward = UNDERLYING * np.exp((g["rate"] - q) * g["t"])
    if spot:
        price, vega = ref.bs_price(*args, carry=CARRY), ref.bs_greeks(*args, carry=CARRY).vega
        iv, reason = op.bs_implied_vol(price, UNDERLYING, g["strike"], g["t"], g["rate"], g["is_call"], CARRY)
    else:
        price, vega = ref.black76_price(*args), ref.black76_greeks(*args).vega
        iv, reason = op.black76_implied_vol(price, UNDERLYING, g["strike"], g["t"], g["rate"], g["is_call"])
    posed = _well_posed(g, forward, price, vega)
    assert posed.sum() > len(price) // 3, "the grid must hold mostly well-posed options"
    assert (reason[posed] == IVReason.OK).all(), np.unique(reason[posed])
    err = np.abs(iv[posed] - g["vol"][posed])
    print(f"{posed.sum()} well-posed of {len(price)}: worst |iv - vol| {err.max():.2e}")
    assert err.max() <= 1e-6

    ql_price = _ql_columns(g, spot)["price"]
    # QuantLib's solver stops when the price is within 1e-14 absolute: it returns 0 for a put worth
    # 1e-41, so it is asked only where that accuracy pins the vol to 1e-7 (vega above 1e-7)
    checkable = posed & (np.abs(ql_price - price) <= 1e-10 * price) & (vega > 1e-7)
    ql_iv = np.full(len(price), np.nan)
    for i in np.flatnonzero(checkable):
        r, t = g["rate"][i], g["t"][i]
        try:
            sd = _ql_implied_sd(bool(g["is_call"][i]), g["strike"][i], forward[i], price[i], np.exp(-r * t))
        except RuntimeError:
            continue
        ql_iv[i] = sd / np.sqrt(t)
    solved = np.isfinite(ql_iv)
    worst = np.max(np.abs(iv[solved] - ql_iv[solved]))
    print(f"QuantLib prices {checkable.sum()} of them alike, solved {solved.sum()}: worst |ours - QuantLib| "
          f"{worst:.2e}")
    assert solved.sum() >= 0.6 * posed.sum()
    assert worst <= 1e-6

    # near-zero vega: a reason, or a vol that reprices to the price within its rounding
    rest = ~posed
    assert rest.sum() > 0
    fine = rest & (reason == IVReason.OK)
    allowed = {IVReason.NO_VEGA, IVReason.NON_POSITIVE_PRICE, IVReason.BELOW_INTRINSIC,
               IVReason.ABOVE_UPPER_BOUND}
    assert set(reason[rest & ~fine].tolist()) <= {int(r) for r in allowed}
    again_args = (UNDERLYING, g["strike"][fine], g["t"][fine], g["rate"][fine], iv[fine], g["is_call"][fine])
    again = op.bs_price(*again_args, carry=CARRY) if spot else op.black76_price(*again_args)
    np.testing.assert_allclose(again, price[fine], rtol=1e-7, atol=0)


def test_no_vol_outside_the_bounds_with_the_reason() -> None:
    forward, strike, t = 100.0, 90.0, 0.25
    cases = [  # (price, is_call, t, forward, reason)
        (9.0, True, t, forward, IVReason.BELOW_INTRINSIC),  # call worth less than F - K
        (100.0, True, t, forward, IVReason.ABOVE_UPPER_BOUND),  # call worth the whole forward
        (90.5, False, t, forward, IVReason.ABOVE_UPPER_BOUND),  # put worth more than the strike
        (0.0, False, t, forward, IVReason.NON_POSITIVE_PRICE),
        (-1.0, True, t, forward, IVReason.NON_POSITIVE_PRICE),
        (10.5, True, 0.0, forward, IVReason.NON_POSITIVE_TIME),
        (10.5, True, -1.0, forward, IVReason.NON_POSITIVE_TIME),
        (10.5, True, t, -5.0, IVReason.BAD_INPUT),
        (np.nan, True, t, forward, IVReason.BAD_INPUT),
        (10.0, True, t, forward, IVReason.NO_VEGA),  # exactly intrinsic: every small vol gives it
    ]
    price, call, tt, fwd, want = (np.array(c) for c in zip(*cases, strict=True))
    iv, reason = op.black76_implied_vol(price, fwd, strike, tt, 0.0, call)
    assert np.isnan(iv).all()
    assert reason.tolist() == [int(w) for w in want]
    assert [IVReason(r).label for r in reason[:2]] == ["below_intrinsic", "above_upper_bound"]
    for p, c in ((9.0, True), (100.5, True)):  # QuantLib finds none either (at 100.0 it stops at its cap, 24)
        with pytest.raises(RuntimeError):
            _ql_implied_sd(c, strike, forward, p, 1.0)
