"""External check: the reference market maker through hftbacktest and through tapeflow on the same
30 s of the real Binance capture, same queue (PowerProb n=3), latency (5 ms each way) and fees.

Tolerance: the fill count, the position at every 100 ms step and the fee are equal; cash within
1e-6 USDT (both sum the same float64 products in the same order; 1e-6 leaves room for a different
summation order, 8 orders of magnitude below one tick x one lot = 1e-4 USDT).
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.models import ConstantLatency, Fees, PowerProbQueue, RiskAdverseQueue
from tapeflow.backtest.strategies import MarketMaker
from tapeflow.wire.capture import merge
from tapeflow.wire.registry import get_format
from tests.conftest import need

pytest.importorskip("hftbacktest", reason="hftbacktest (a bench dependency) is not installed")


@pytest.fixture(scope="module")
def feed(real_data):
    path = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    tables = merge(list(get_format("binance").decode([path])))
    t0 = tables["book_delta"].column("ts_recv_ns")[0].as_py()
    cut = {k: tables[k].filter(pc.less(tables[k]["ts_recv_ns"], t0 + 30 * 10**9))
           for k in ("book_delta", "trade")}
    return build_feed(cut, LATENCY)


LATENCY = ConstantLatency(feed_ns=0, entry_ns=5_000_000, response_ns=5_000_000)
FEES = Fees(maker_rate=-0.00005, taker_rate=0.0004)


def _both(feed, queue):
    from tapeflow.backtest.hbt import run_market_maker

    params = {"half_spread_ticks": 0.5, "qty": 0.001, "max_position": 0.01, "timer_ns": 100_000_000,
              "start_ns": int(feed.t_local[0]) + 5 * 10**9}
    mm = MarketMaker(**params)
    result = Backtest(feed, mm, BacktestConfig(latency=LATENCY, queue=queue, fees=FEES)).run()
    theirs = run_market_maker(feed, queue=queue, latency=LATENCY, fees=FEES, **params)
    return np.array(mm.trace), result, theirs


@pytest.mark.parametrize("queue", [PowerProbQueue(3.0), RiskAdverseQueue()], ids=["power3", "risk_adverse"])
def test_market_maker_agrees_with_hftbacktest(feed, queue):
    ours, result, theirs = _both(feed, queue)
    k = min(len(ours), len(theirs.step_ts))
    assert k >= 290  # 30 s of 100 ms steps (the last may fall past the data on one side)
    print(f"{type(queue).__name__}: fills {int(ours[k - 1, 4])} vs {int(theirs.step_state[k - 1, 3])}, "
          f"cash {ours[k - 1, 2]:.6f} vs {theirs.step_state[k - 1, 1]:.6f}")
    assert int(ours[k - 1, 4]) == int(theirs.step_state[k - 1, 3]) > 10
    np.testing.assert_array_equal(ours[:k, 1], theirs.step_state[:k, 0])
    assert ours[k - 1, 2] == pytest.approx(theirs.step_state[k - 1, 1], abs=1e-6)
    assert ours[k - 1, 3] == pytest.approx(theirs.step_state[k - 1, 2], abs=1e-9)
    assert result.report()["fills"] == int(ours[-1, 4])
