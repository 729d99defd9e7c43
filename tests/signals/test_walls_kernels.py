"""The wall and spike JAX kernels equal their NumPy references (random books, padded-bucket edges)."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.signals_walls import wall_runs, wall_runs_ref, window_max, window_max_ref


def _side(rng: np.random.Generator, g: int, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    touch = 10_000 + np.cumsum(rng.integers(-1, 2, g))
    prices = touch[:, None] - np.arange(levels)[None, :]
    sizes = rng.integers(0, 100, (g, levels)).astype(np.float64)
    # a few large orders that stay for a while at one price, and some that come and go at once
    for start in rng.integers(0, max(1, g - 30), max(1, g // 40)):
        k = int(rng.integers(0, levels))
        sizes[start:start + int(rng.integers(1, 30)), k] += 2_000
    threshold = np.full(g, 1_000.0)
    threshold[rng.uniform(size=g) < 0.05] = np.nan  # rows with no baseline yet
    return prices.astype(np.int64), sizes, threshold


@pytest.mark.parametrize("g", [1, 5, 1024, 1500])
def test_wall_runs_equal_reference(g: int) -> None:
    rng = np.random.default_rng(g)
    prices, sizes, threshold = _side(rng, g, 6)
    got = wall_runs(prices, sizes, threshold)
    want = wall_runs_ref(prices, sizes, threshold)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert g < 1024 or got[3].max() > 1, "the random book has walls that stand"


def test_wall_runs_follow_the_price_not_the_level() -> None:
    prices = np.array([[100, 99, 98]] * 7)
    prices[4:] -= 1  # the book shifts: price 99 is now level 0 (the run goes on), then it moves
    sizes = np.array([[5, 50, 5], [5, 50, 5], [5, 5, 5], [5, 50, 5], [50, 5, 5], [5, 5, 50], [5, 50, 5]],
                     float)
    price, size, level, run = wall_runs(prices, sizes, np.full(7, 40.0))
    assert run.tolist() == [1, 2, 0, 1, 2, 1, 1]
    assert price.tolist() == [99, 99, 100, 99, 99, 97, 98] and level.tolist() == [1, 1, 0, 1, 0, 2, 1]
    assert size.tolist() == [50, 50, 5, 50, 50, 50, 50]


@pytest.mark.parametrize("n", [1, 9, 1024, 1030])
def test_window_max_equal_reference(n: int) -> None:
    rng = np.random.default_rng(n + 7)
    x = rng.exponential(10, n) * (rng.uniform(size=n) < 0.3)
    for window in (1, 3, 10):
        np.testing.assert_array_equal(window_max(x, window), window_max_ref(x, window))


def test_window_max_is_causal() -> None:
    x = np.array([0, 0, 7, 0, 0, 0, 3, 0], float)
    assert window_max(x, 3).tolist() == [0, 0, 7, 7, 7, 0, 3, 3]
