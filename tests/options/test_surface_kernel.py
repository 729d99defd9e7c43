"""``kernels.options_surface`` on hand-built chains whose answers are known in closed form.

Chains are priced here with Black-76 written out (SciPy's normal CDF), independent of the code under
test: F = 100, r = 0, prices in coin (premium / F), deltas N(d1) and N(d1) - 1.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from kernels.options_surface import (
    SurfaceReason,
    butterfly_violations,
    calendar_violations,
    call_coin_prices,
    expiry_metrics,
    parity_violations,
    reason_label,
    smile,
    surface,
)

F = 100.0


def _d1(k: np.ndarray, vol: np.ndarray, t: float) -> np.ndarray:
    return (-k + 0.5 * vol**2 * t) / (vol * np.sqrt(t))


def _chain(vol_of_k, t: float = 0.25, strikes: np.ndarray | None = None):  # noqa: ANN001, ANN202
    """Calls and puts at every strike: (strike, forward, iv, delta, is_call, price_coin)."""
    strikes = np.linspace(50.0, 200.0, 301) if strikes is None else strikes
    strike = np.concatenate([strikes, strikes])
    is_call = np.arange(strike.size) < strikes.size
    k = np.log(strike / F)
    vol = vol_of_k(k)
    d1 = _d1(k, vol, t)
    d2 = d1 - vol * np.sqrt(t)
    call = F * norm.cdf(d1) - strike * norm.cdf(d2)
    price = np.where(is_call, call, call - (F - strike)) / F
    delta = np.where(is_call, norm.cdf(d1), norm.cdf(d1) - 1.0)
    return strike, np.full(strike.size, F), vol, delta, is_call, price


def test_flat_smile_gives_the_flat_vol_and_zero_rr_and_bf() -> None:
    strike, fwd, iv, delta, is_call, _ = _chain(lambda k: np.full_like(k, 0.65))
    sm = smile(strike, fwd, iv, delta, is_call)
    assert np.all(sm.is_call == (sm.strike >= F)) and np.all(np.diff(sm.k) > 0)
    m = expiry_metrics(sm)
    assert m.reasons == SurfaceReason.OK and reason_label(m.reasons) == "ok"
    assert m.atm_iv == pytest.approx(0.65, abs=1e-12)
    assert m.rr25 == pytest.approx(0.0, abs=1e-12) and m.bf25 == pytest.approx(0.0, abs=1e-12)
    assert m.n_strikes == 301


def _k_at_delta(target: float, vol_of_k, t: float, call: bool) -> float:  # noqa: ANN001
    def f(k: float) -> float:
        d = norm.cdf(_d1(np.array(k), vol_of_k(np.array(k)), t))
        return float(d - (target if call else target + 1.0))
    return brentq(f, -0.6, 0.6, xtol=1e-14)


@pytest.mark.parametrize("slope", [-0.3, 0.2])
def test_linear_skew_gives_the_closed_form_atm_and_rr(slope: float) -> None:
    t = 0.25

    def vol_of_k(k: np.ndarray) -> np.ndarray:
        return 0.6 + slope * k

    strike, fwd, iv, delta, is_call, _ = _chain(vol_of_k, t)
    m = expiry_metrics(smile(strike, fwd, iv, delta, is_call))
    kc = _k_at_delta(0.25, vol_of_k, t, call=True)
    kp = _k_at_delta(-0.25, vol_of_k, t, call=False)
    assert m.atm_iv == pytest.approx(0.6, abs=1e-12)  # linear in k: exact at k = 0
    expected_rr = slope * (kc - kp)
    assert np.sign(m.rr25) == np.sign(slope) and abs(expected_rr) > 0.05
    assert m.rr25 == pytest.approx(expected_rr, abs=2e-4)  # interpolation in delta, 0.5 % strike grid
    assert m.bf25 == pytest.approx(slope * (kc + kp) / 2.0, abs=2e-4)


def test_thin_chains_are_nan_with_reasons_never_a_guess() -> None:
    flat = lambda k: np.full_like(k, 0.5)  # noqa: E731
    one = _chain(flat, strikes=np.array([110.0]))
    m = expiry_metrics(smile(*one[:5]))
    assert np.isnan([m.atm_iv, m.rr25, m.bf25]).all() and m.n_strikes == 1
    assert reason_label(m.reasons) == "too_few_strikes"
    # calls only above the forward: the ATM point and the 25-delta put are not bracketed
    above = _chain(flat, strikes=np.array([105.0, 120.0, 150.0]))
    m = expiry_metrics(smile(*above[:5]))
    assert np.isnan([m.atm_iv, m.rr25, m.bf25]).all() and m.n_strikes == 3
    assert reason_label(m.reasons) == "no_atm_bracket,no_25d_put"
    # strikes near the money only: ATM fine, neither 25-delta side reached
    near = _chain(flat, strikes=np.array([98.0, 99.0, 101.0, 102.0]))
    m = expiry_metrics(smile(*near[:5]))
    assert m.atm_iv == pytest.approx(0.5) and np.isnan(m.rr25) and np.isnan(m.bf25)
    assert reason_label(m.reasons) == "no_25d_call,no_25d_put"
    # a NaN IV is not a smile point
    strike, fwd, iv, delta, is_call, _ = _chain(flat, strikes=np.array([90.0, 110.0]))
    iv[is_call] = np.nan
    assert smile(strike, fwd, iv, delta, is_call).strike.tolist() == [90.0]


def test_calendar_violation_is_counted_and_a_clean_term_structure_is_not() -> None:
    k = np.linspace(-0.5, 0.5, 11)
    short_w = np.full(k.size, 0.36 * 0.1)
    assert calendar_violations(k, short_w, k, np.full(k.size, 0.36 * 0.2)) == (0, 11)
    planted = np.full(k.size, 0.36 * 0.2)
    planted[7] = 0.36 * 0.05  # one strike of the longer expiry below the shorter one's variance
    assert calendar_violations(k, short_w, k, planted) == (1, 11)
    # only the overlap of the two smiles is compared
    assert calendar_violations(k, short_w, k[:3], planted[:3]) == (0, 3)
    assert calendar_violations(k[:1], short_w[:1], k, planted) == (0, 0)


def test_butterfly_violation_is_counted_and_black76_prices_are_convex() -> None:
    strike, fwd, _, _, is_call, price = _chain(lambda k: 0.8 + 0.3 * k**2, strikes=np.linspace(60, 160, 21))
    x, c = call_coin_prices(strike, fwd, price, is_call)
    assert np.allclose(c[is_call], c[~is_call], atol=1e-12)  # parity turns each put into its call
    clean = butterfly_violations(x[is_call], c[is_call])
    assert clean == (0, 19)
    bumped = c[is_call].copy()
    bumped[10] += 0.01  # a call 1 % of the forward too dear: concave at strike 10
    assert butterfly_violations(x[is_call], bumped) == (1, 19)
    dented = c[is_call].copy()
    dented[10] -= 0.01  # too cheap: the triples centred on its neighbours 9 and 11 turn concave
    assert butterfly_violations(x[is_call], dented) == (2, 19)


def test_parity_violation_is_counted_and_a_clean_pair_is_not() -> None:
    flat = lambda k: np.full_like(k, 0.7)  # noqa: E731
    strike, fwd, _, _, is_call, price = _chain(flat, strikes=np.array([80.0, 100.0, 120.0]))
    assert parity_violations(strike, fwd, price, is_call) == (0, 3)
    price = price.copy()
    price[(~is_call) & (strike == 120.0)] += 5e-4
    assert parity_violations(strike, fwd, price, is_call) == (1, 3)
    # a strike with only a call is not checked
    assert parity_violations(strike[:4], fwd[:4], price[:4], is_call[:4]) == (0, 1)


def test_surface_rows_term_structure_and_checks() -> None:
    parts = []
    for code, (t, vol) in enumerate([(0.5, 0.6), (0.1, 0.8)]):  # given out of order
        chain = _chain(lambda k, v=vol: np.full_like(k, v), t, np.linspace(60, 160, 21))
        parts.append((np.full(chain[0].size, 10 - code), np.full(chain[0].size, t), *chain))
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    expiry, t_years, strike, fwd, iv, delta, is_call, price = cols
    rows = surface(expiry, strike, fwd, t_years, iv, delta, is_call, price)
    assert [r.expiry for r in rows] == [9, 10]
    assert [r.metrics.atm_iv for r in rows] == pytest.approx([0.8, 0.6])
    assert [r.atm_total_var for r in rows] == pytest.approx([0.064, 0.18])
    assert rows[0].calendar == (0, 0) and rows[1].calendar.violations == 0 and rows[1].calendar.checked > 20
    assert all(r.butterfly == (0, 19) and r.parity == (0, 21) for r in rows)
    # swap the expiries' times: the longer one now has less variance everywhere
    swapped = surface(expiry, strike, fwd, np.where(expiry == 9, 0.5, 0.1), iv, delta, is_call, price)
    assert swapped[1].calendar.violations == swapped[1].calendar.checked > 20


def test_parity_counts_equal_a_plain_loop_over_strikes_on_ragged_chains() -> None:
    """Repeated strikes (the last call and put count), strikes with one side only, NaN prices."""
    from kernels.options_surface import parity_violations

    def loop(strike, forward, price, is_call, tol):  # noqa: ANN001, ANN202
        violations = checked = 0
        for k in np.unique(strike[is_call]):
            c = np.flatnonzero(is_call & (strike == k))
            p = np.flatnonzero(~is_call & (strike == k))
            if p.size == 0:
                continue
            gap = price[c[-1]] - price[p[-1]] - (1.0 - k / ((forward[c[-1]] + forward[p[-1]]) / 2.0))
            if np.isfinite(gap):
                checked += 1
                violations += int(abs(gap) > tol)
        return violations, checked

    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        strike = rng.choice([80.0, 90.0, 100.0, 110.0, 120.0], n)
        forward = 100.0 + rng.normal(0, 0.5, n)
        is_call = rng.random(n) < 0.5
        price = np.where(is_call, np.maximum(1 - strike / forward, 0), np.maximum(strike / forward - 1, 0))
        price = price + rng.choice([0.0, 0.0, 2e-4, -3e-4, np.nan], n)
        got = parity_violations(strike, forward, price, is_call, 1e-4)
        assert (got.violations, got.checked) == loop(strike, forward, price, is_call, 1e-4)
