"""The hidden-liquidity JAX kernels equal their NumPy references (random books, padded-bucket edges)."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.signals_hidden import hidden_flags, hidden_flags_ref, level_refills, level_refills_ref

TICK = 10_000_000


def _side(rng, g, levels, touch, sign):
    gaps = rng.integers(1, 3, (g, levels)).cumsum(axis=1) - 1
    prices = touch[:, None] - sign * gaps * TICK
    sizes = (rng.integers(1, 5, (g, levels)) * 100 * (rng.uniform(size=(g, levels)) < 0.8)).astype(np.float64)
    return np.where(sizes > 0, prices, 0), sizes


def _book(rng, g, levels):
    mid = 10_000 + np.cumsum(rng.integers(-1, 2, g))
    spread = rng.integers(1, 4, g)
    bid_p, bid_s = _side(rng, g, levels, mid * TICK, 1)
    ask_p, ask_s = _side(rng, g, levels, (mid + spread) * TICK, -1)
    return bid_p, bid_s, ask_p, ask_s


@pytest.mark.parametrize("n, g", [(1, 1), (37, 20), (1024, 300), (1500, 1100)])
def test_hidden_flags_equal_reference(n, g):
    rng = np.random.default_rng(n * 7 + g)
    book = _book(rng, g, 5)
    rows = rng.integers(-1, g, n)
    after = np.where(rows + 1 < g, rows + 1, -1)
    # prices at the levels, inside the spread and off the book
    bid_p, _, ask_p, _ = book
    r = np.maximum(rows, 0)
    price = np.where(rng.uniform(size=n) < 0.5, bid_p[r, rng.integers(0, 5, n)],
                     ask_p[r, 0] - rng.integers(0, 3, n) * TICK)
    got = hidden_flags(price, rows, after, *book)
    want = hidden_flags_ref(price, rows, after, *book)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    if n > 30:
        assert want[0].any() and (~want[0]).any() and (want[2] > 0).any(), "every outcome is exercised"


def test_hidden_flags_empty_inputs():
    book = _book(np.random.default_rng(1), 4, 3)
    none = np.zeros(0, np.int64)
    inside_b, inside_a, shown = hidden_flags(none, none, none, *book)
    assert len(inside_b) == len(inside_a) == len(shown) == 0


@pytest.mark.parametrize("g, lag", [(2, 0), (50, 1), (1024, 2), (1300, 0)])
def test_level_refills_equal_reference(g, lag):
    rng = np.random.default_rng(g + lag)
    bid_p, bid_s, _, _ = _book(rng, g, 4)
    traded = rng.integers(0, 4, (g, 4)) * 100.0 * (rng.uniform(size=(g, 4)) < 0.3)
    got = level_refills(bid_p, bid_s, traded, lag)
    want = level_refills_ref(bid_p, bid_s, traded, lag)
    np.testing.assert_allclose(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert (want[0][0] == 0).all() and not want[1][0].any(), "row 0 has no interval before it"


def test_level_refills_tell_a_refill_from_a_fall():
    prices = np.array([[100], [100], [100], [100]]) * TICK
    sizes = np.array([[300.0], [300.0], [0.0], [300.0]])
    traded = np.array([[0.0], [300.0], [300.0], [0.0]])
    unexplained, kept = level_refills(prices, sizes, traded, 0)
    # row 1: traded 300 and the level still shows 300: all of it unexplained (a refill);
    # row 2: traded 300 and the level fell by 300: explained, and depleted
    assert unexplained[:, 0].tolist() == [0.0, 300.0, 0.0, 0.0]
    assert kept[:, 0].tolist() == [False, True, False, False]
    # a refill landing in the next interval counts when the look-ahead reaches it
    unexplained, _ = level_refills(prices, sizes, traded, 1)
    assert unexplained[2, 0] == 300.0
