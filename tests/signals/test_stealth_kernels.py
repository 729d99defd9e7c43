"""The absorption and stealth windows (kernels/signals_stealth.py): JAX equals the NumPy reference,
and each statistic means what its docstring says on hand-built inputs."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.signals_stealth import held_volume, held_volume_ref, range_windows, range_windows_ref


@pytest.mark.parametrize("n", [1, 7, 1000, 1500])
@pytest.mark.parametrize("window", [1, 5, 100])
def test_held_volume_jax_equals_reference(n: int, window: int) -> None:
    rng = np.random.default_rng(n * 31 + window)
    touch = 1000 + np.cumsum(rng.random(n) < 0.05)
    vol = rng.integers(0, 50, n) * (rng.random(n) < 0.3).astype(np.float64)
    shown = rng.integers(1, 500, n).astype(np.float64)
    got = held_volume(touch, vol, shown, window)
    want = held_volume_ref(touch, vol, shown, window)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("n", [1, 9, 1000, 2100])
@pytest.mark.parametrize("window", [1, 20, 60])
def test_range_windows_jax_equals_reference(n: int, window: int) -> None:
    rng = np.random.default_rng(n * 7 + window)
    mid = np.cumsum(rng.integers(-2, 3, n)).astype(np.float64) / 2
    act = rng.integers(0, 40, n).astype(np.float64)
    got = range_windows(mid, act, window)
    want = range_windows_ref(mid, act, window)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-9)


def test_held_volume_restarts_when_the_touch_moves() -> None:
    touch = np.array([10, 10, 10, 10, 11, 11, 10])
    vol = np.array([5.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0])
    shown = np.array([1.0, 9.0, 2.0, 2.0, 3.0, 1.0, 4.0])
    held, pushes, peak, run = held_volume(touch, vol, shown, 3)
    # row 0 opens the run: its trades belonged to the touch before it (none); rows 1..3 add up,
    # the window keeps the last 3; row 4 opens a run at 11 (its 4 traded at 10), row 6 one at 10
    np.testing.assert_array_equal(held, [0, 1, 3, 6, 0, 6, 0])
    np.testing.assert_array_equal(pushes, [0, 1, 2, 3, 0, 1, 0])
    np.testing.assert_array_equal(peak, [1, 9, 9, 9, 3, 3, 4])
    np.testing.assert_array_equal(run, [1, 2, 3, 4, 1, 2, 1])


def test_range_windows_on_a_known_path() -> None:
    mid = np.array([0.0, 1.0, 3.0, 2.0, 2.0])
    act = np.array([9.0, 1.0, 2.0, 3.0, 4.0])
    rng, move, rv, events = range_windows(mid, act, 2)
    np.testing.assert_allclose(rng, [0, 1, 3, 2, 1])
    np.testing.assert_allclose(move, [0, 1, 3, 1, -1])
    np.testing.assert_allclose(rv, [0, 1, np.sqrt(5), np.sqrt(5), 1])
    np.testing.assert_allclose(events, [9, 10, 3, 5, 7])
