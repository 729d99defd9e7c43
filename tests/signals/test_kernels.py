"""The JAX window kernels equal their NumPy references (random inputs, padded-bucket edges)."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.signals_windows import (
    band_depths,
    band_depths_ref,
    block_quantiles,
    block_quantiles_ref,
    bucket,
    flow_windows,
    flow_windows_ref,
    trailing_sums,
    trailing_sums_ref,
)


def test_bucket_pads_to_powers_of_two():
    assert [bucket(n) for n in (0, 1, 64, 65, 1024, 1025, 5000)] == [64, 64, 64, 128, 1024, 2048, 8192]


@pytest.mark.parametrize("n", [1, 7, 250, 1024, 1500])
def test_block_quantiles_equal_reference(n):
    rng = np.random.default_rng(n)
    x = np.exp(rng.normal(0, 1.5, n)) * 100
    for block, lookback in ((10, 4), (64, 2), (1, 3)):
        got = block_quantiles(x, block, lookback, (0.5, 0.999))
        want = block_quantiles_ref(x, block, lookback, (0.5, 0.999))
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
        assert np.isnan(got[:min(n, block)]).all(), "the first block has no past"


def test_block_quantiles_use_only_earlier_blocks():
    x = np.r_[np.ones(10), np.full(10, 100.0)]
    got = block_quantiles(x, 10, 1, (0.5,))[:, 0]
    assert np.isnan(got[:10]).all() and (got[10:] == 1.0).all()


@pytest.mark.parametrize("n", [1, 50, 1030])
def test_flow_windows_equal_reference(n):
    rng = np.random.default_rng(n + 1)
    total = rng.exponential(10, n) * (rng.uniform(size=n) < 0.6)
    signed = total * rng.choice([-1, 1], n)
    for window, baseline in ((1, 1), (5, 30), (60, 600)):
        got = flow_windows(signed, total, window, baseline)
        want = flow_windows_ref(signed, total, window, baseline)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-9)
        # the RMS comes from a difference of running sums of squares: cancellation leaves ~1e-6
        # where the reference has an exact 0 (values here are of order 10)
        np.testing.assert_allclose(got[2], want[2], rtol=1e-9, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("n", [1, 700])
def test_trailing_sums_equal_reference(n):
    rng = np.random.default_rng(n + 2)
    # irregular times with ties (prints of two sides at one instant), sorted
    ts = np.sort(rng.integers(0, 30, n).cumsum() * 1_000_000 // 7)
    x = rng.exponential(100.0, n)
    for window in (1, 5_000_000, 10**12):
        np.testing.assert_allclose(trailing_sums(ts, x, window), trailing_sums_ref(ts, x, window),
                                   rtol=1e-12, atol=1e-9)


def test_trailing_sums_leave_out_the_instant_itself_and_the_window_edge():
    ts = np.array([0, 10, 10, 20, 35])
    got = trailing_sums(ts, np.array([1.0, 2.0, 4.0, 8.0, 16.0]), 10)
    # at 10: only the print at 0 (not the other one at 10); at 20: both at 10 and not 0 (its edge
    # is inside: ts >= 20 - 10); at 35: nothing within 10
    assert got.tolist() == [0.0, 1.0, 1.0, 6.0, 0.0]


def _book(rng, g, levels, side_sign, tick):
    touch = 10_000 * tick + side_sign * np.cumsum(rng.integers(-1, 2, g)) * tick
    gaps = rng.integers(1, 3, (g, levels)).cumsum(axis=1) - 1
    prices = touch[:, None] - side_sign * gaps * tick
    sizes = rng.integers(0, 500, (g, levels)) * (rng.uniform(size=(g, levels)) < 0.85)
    sizes[:, 0] = np.maximum(sizes[:, 0], 1)
    return prices.astype(np.int64), sizes.astype(np.float64), prices[:, 0].copy()


@pytest.mark.parametrize("side_sign", [1, -1])
@pytest.mark.parametrize("g", [3, 400, 1100])
def test_band_depths_equal_reference(side_sign, g):
    rng = np.random.default_rng([g, side_sign + 1])
    tick = 10_000_000
    prices, sizes, touch = _book(rng, g, 6, side_sign, tick)
    for ticks, lag in ((3, 1), (5, 10), (10, 2)):
        got = band_depths(prices, sizes, touch, side_sign, tick, ticks, lag)
        want = band_depths_ref(prices, sizes, touch, side_sign, tick, ticks, lag)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_band_depths_counts_a_pull_and_ignores_a_shift():
    tick = 1
    # bids 100..96 with 10 each; row 1: three levels emptied (a pull); row 2: all back
    prices = np.array([[100, 99, 98, 97, 96]] * 3)
    sizes = np.array([[10, 10, 10, 10, 10], [10, 0, 0, 0, 10], [10, 10, 10, 10, 10]], float)
    then, now, pulled = band_depths(prices, sizes, prices[:, 0], 1, tick, 4, 1)
    assert then.tolist() == [50, 50, 20] and now.tolist() == [50, 20, 50] and pulled.tolist() == [0, 3, 0]
