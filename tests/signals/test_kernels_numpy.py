"""The window kernels' NumPy forms (what the live stage's small look-backs run) give the JAX forms'
bits: the same arrays, compared exactly, on random inputs shaped like the detectors' (integer
sizes in nanos, prices in ticks, half-tick mids), and fall back to JAX where a sum is not exact."""

from __future__ import annotations

import numpy as np
import pytest

import kernels.signals_windows as windows
from kernels.signals_hidden import hidden_flags, hidden_flags_np
from kernels.signals_stealth import held_volume, held_volume_np, range_windows, range_windows_np
from kernels.signals_walls import wall_runs, wall_runs_np, window_max, window_max_np
from kernels.signals_windows import (
    band_depths,
    band_depths_np,
    block_quantiles,
    block_quantiles_np,
    exact_sums,
    flow_windows,
    flow_windows_np,
    trailing_sums,
    trailing_sums_np,
)

N = 700  # one padded bucket per kernel: a JAX compile each, not more


@pytest.fixture
def jax_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(windows, "NUMPY_BELOW", 0)


def _same(got: tuple | np.ndarray, want: tuple | np.ndarray) -> None:
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype.kind == np.asarray(w).dtype.kind
        np.testing.assert_array_equal(g, np.asarray(w))  # NaN where NaN, every other bit equal


def test_numpy_forms_equal_jax(jax_only: None) -> None:
    rng = np.random.default_rng(17)
    sizes = rng.integers(1, 5_000, N) * 1_000_000.0  # nanos: integers
    sizes[rng.random(N) < 0.1] = np.nan
    # medians (the NumPy form serves no other quantile: their weights round, as XLA decides)
    _same(block_quantiles_np(sizes, 25, 4, (0.5,)), block_quantiles(sizes, 25, 4, (0.5,)))
    total = rng.integers(0, 400, N) * 1e6 * (rng.random(N) < 0.6)
    signed = total * rng.choice([-1, 1], N)
    steps = rng.integers(-3, 4, N) / 2  # half-tick mid steps
    # whale parents' bins in lots, spikes' mid steps against traded nanos (nanos squared would
    # not sum exactly: that case runs on JAX, below)
    for s, t in ((signed / 1e6, total / 1e6), (steps, total)):
        got = flow_windows_np(s, t, 20, 100)
        assert got is not None
        _same(got, flow_windows(s, t, 20, 100))
    ts = np.sort(rng.integers(0, 10_000, N))
    assert exact_sums(total)
    _same(trailing_sums_np(ts, total, 300), trailing_sums(ts, total, 300))
    touch = 100_000 + np.cumsum(rng.integers(-1, 2, N))
    prices = touch[:, None] - np.arange(10)[None, :] * rng.integers(1, 3, (N, 1))
    book = rng.integers(0, 50, (N, 10)) * 1e8
    _same(band_depths_np(prices, book, touch, 1, 1, 5, 3), band_depths(prices, book, touch, 1, 1, 5, 3))
    threshold = np.where(rng.random(N) < 0.05, np.nan, rng.integers(1, 40, N) * 1e8)
    _same(wall_runs_np(prices, book, threshold), wall_runs(prices, book, threshold))
    _same(window_max_np(total, 7), window_max(total, 7))
    shown = rng.integers(0, 30, N) * 1e8
    _same(held_volume_np(touch, total, shown, 50), held_volume(touch, total, shown, 50))
    mid = 100_000 + np.cumsum(steps)
    events = rng.integers(0, 90, N).astype(np.float64)
    got = range_windows_np(mid, events, 20)
    assert got is not None
    _same(got, range_windows(mid, events, 20))
    before = rng.integers(-1, N, N)
    after = np.minimum(before + 1, N - 1)
    px = touch[np.maximum(before, 0)] - rng.integers(-2, 3, N)
    ask = touch[:, None] + 2 + np.arange(10)[None, :]  # asks above the bids
    _same(hidden_flags_np(px, before, after, prices, book, ask, book),
          hidden_flags(px, before, after, prices, book, ask, book))


def test_inexact_sums_run_on_jax() -> None:
    rng = np.random.default_rng(3)
    signed = rng.normal(0, 10, 50)  # arbitrary floats: the order of the additions shows
    assert not exact_sums(signed)
    assert flow_windows_np(signed, np.abs(signed), 5, 10) is None
    assert range_windows_np(np.cumsum(signed), np.ones(50), 5) is None
    # squares too large for exact sums: 2e9 nanos a bin, squared, summed
    big = np.full(50, 2e9)
    assert exact_sums(big) and flow_windows_np(big, big, 5, 10) is None
