"""The cross-strike kernels: the JAX window flows equal the NumPy reference (random tapes, bucket
edges included), the participation rule and the causal baseline on hand-built input."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.signals_cross_strike import participation, rolling_median, window_flows, window_flows_ref

S = 1_000_000_000


@pytest.mark.parametrize("n, n_inst", [(1, 1), (63, 5), (64, 7), (65, 64), (300, 65), (1000, 120)])
def test_window_flows_equal_the_reference(n: int, n_inst: int) -> None:
    rng = np.random.default_rng(n * 1000 + n_inst)
    t = np.sort(rng.integers(0, 600 * S, n))
    t[n // 3: n // 3 + 3] = t[n // 3]  # equal times: every trade at an instant is in its window
    inst = rng.integers(0, n_inst, n)
    flow = rng.normal(0, 3, n)
    net, gross = window_flows(t, inst, flow, n_inst, 60 * S)
    ref_net, ref_gross = window_flows_ref(t, inst, flow, n_inst, 60 * S)
    np.testing.assert_allclose(net, ref_net, atol=1e-9)
    np.testing.assert_allclose(gross, ref_gross, atol=1e-9)


@pytest.mark.parametrize("block_rows", [1, 7, 64, 100])
def test_window_flows_in_blocks_equal_one_call(block_rows: int) -> None:
    rng = np.random.default_rng(block_rows)
    t = np.sort(rng.integers(0, 300 * S, 400))
    inst = rng.integers(0, 9, 400)
    flow = rng.normal(0, 3, 400)
    ref = window_flows_ref(t, inst, flow, 9, 20 * S)
    got = window_flows(t, inst, flow, 9, 20 * S, block_rows=block_rows)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-9)
    np.testing.assert_allclose(got[1], ref[1], atol=1e-9)


def test_window_flows_of_nothing() -> None:
    net, gross = window_flows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 3, S)
    assert net.shape == gross.shape == (0, 3)


def test_the_window_is_trailing_and_open_at_its_start() -> None:
    t = np.array([0, 10, 60, 61]) * S
    net, gross = window_flows(t, np.zeros(4, np.int64), np.array([1.0, -2.0, 4.0, 8.0]), 1, 60 * S)
    # at 60 s the trade at 0 s has left (the window is (t - 60 s, t]); at 61 s so has nothing else
    assert net[:, 0].tolist() == [1.0, -1.0, 2.0, 10.0]
    assert gross[:, 0].tolist() == [1.0, 3.0, 6.0, 14.0]


def test_participation_needs_size_one_sidedness_and_trades() -> None:
    #            big buy  two-way   small    big sell  one big buy print
    net = np.array([[9.0, 1.0, 2.0, -8.0, 9.0]])
    gross = np.array([[9.0, 11.0, 2.0, 8.0, 9.0]])
    n_net = np.array([[3.0, 0.0, 2.0, -2.0, 1.0]])
    n_gross = np.array([[3.0, 4.0, 2.0, 2.0, 1.0]])
    p = participation(net, gross, n_net, n_gross, threshold=4.0, one_sided=0.8, min_trades=2)
    assert (p.n_buy[0], p.n_sell[0], p.flow_buy[0], p.flow_sell[0]) == (1, 1, 9.0, 8.0)
    p1 = participation(net, gross, n_net, n_gross, threshold=4.0, one_sided=0.8, min_trades=1)
    assert p1.n_buy[0] == 2 and p1.flow_buy[0] == 18.0


def test_rolling_median_is_causal_and_per_group() -> None:
    values = np.array([1.0, 100.0, 2.0, 200.0, 3.0, 300.0, 50.0])
    group = np.array([0, 1, 0, 1, 0, 1, 0])
    out = rolling_median(values, group, lookback=2, min_count=2)
    # row 4 (group 0): median of its two previous group-0 values (1, 2); row 6: of (2, 3)
    assert np.isnan(out[:4]).all()
    assert out[4] == 1.5 and out[5] == 150.0 and out[6] == 2.5
