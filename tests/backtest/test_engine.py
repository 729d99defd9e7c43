"""The engine's fills, queues, latency, fees and limits on hand-made books (expected values by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.models import (
    ConstantLatency,
    Fees,
    L3FifoQueue,
    Limits,
    PowerProbQueue,
    RiskAdverseQueue,
)
from tapeflow.errors import ConfigError
from tests.backtest.helpers import N, Scripted, deltas, order_events, trades

BOOK = [(1, "B", 100.0, 5.0), (2, "A", 101.0, 5.0)]


def _run(tables, actions, *, queue=None, latency=None, fees=None, limits=None, lot=None, **kw):
    latency = latency or ConstantLatency()
    feed = build_feed(tables, latency, tick_nanos=N, lot_nanos=lot, **kw)
    st = Scripted(actions)
    cfg = BacktestConfig(latency=latency, queue=queue or RiskAdverseQueue(), fees=fees or Fees(),
                         limits=limits or Limits())
    result = Backtest(feed, st, cfg).run()
    return st, result


def test_risk_adverse_fills_only_after_the_queue_ahead_trades_away():
    # our buy joins 5 ahead at 100 (t=10); sells of 3, 2 leave front 0 (not filled: round(0) is not
    # < 0); the next sell of 1 takes front to -1: filled at t=50, at our price, as maker
    tables = {"book_delta": deltas(BOOK), "trade": trades([(30, "A", 100.0, 3.0), (40, "A", 100.0, 2.0),
                                                           (50, "A", 100.0, 1.0)])}
    st, result = _run(tables, [lambda c: c.buy(100, 1.0)], lot=N)
    assert [(f.ts_ns, f.price_ticks, f.qty, f.maker) for f in st.got] == [(50, 100, 1.0, True)]
    assert result.report()["final_position"] == 1.0


def test_power_prob_queue_by_hand():
    # front 5; the level grows to 9 (front stays 5), then falls to 5 with no trade: chg 4,
    # back 4, p = 4 / (4 + 5) (n = 1): front = 5 - (5/9) * 4 + min(4 - (4/9) * 4, 0) = 25/9 = 2.778;
    # a sell of 2.7 leaves 0.078 (0.78 lots rounds to 1: not filled), a sell of 0.2 leaves
    # -0.122 (-1.22 lots rounds to -1): filled at t=60
    rows = BOOK + [(20, "B", 100.0, 9.0), (30, "B", 100.0, 5.0)]
    tables = {"book_delta": deltas(rows), "trade": trades([(50, "A", 100.0, 2.7), (60, "A", 100.0, 0.2)])}
    st, _ = _run(tables, [lambda c: c.buy(100, 0.1)], queue=PowerProbQueue(1.0), lot=N // 10)
    assert [f.ts_ns for f in st.got] == [60]
    # RiskAdverse ignores the fall: front min(5, 5) = 5, the trades leave 2.1: no fill
    st, _ = _run(tables, [lambda c: c.buy(100, 0.1)], queue=RiskAdverseQueue(), lot=N // 10)
    assert st.got == []


def test_crossing_book_fills_and_latency_delays_the_response():
    # entry 3 ns, response 4 ns: the buy sent at t=10 rests from t=13; the ask drops to 100 at t=30:
    # filled at exchange time 30, seen at 34
    rows = BOOK + [(30, "A", 100.0, 2.0)]
    lat = ConstantLatency(feed_ns=0, entry_ns=3, response_ns=4)
    st, _ = _run({"book_delta": deltas(rows)}, [lambda c: c.buy(100, 1.0)], latency=lat, lot=N)
    assert [(f.ts_ns, f.price_ticks, f.maker) for f in st.got] == [(34, 100, True)]


def test_market_and_post_only_orders_and_fees():
    # market buy at t=10 fills at the best ask 101 as taker: fee 0.001 * 101 * 2 = 0.202;
    # a post-only sell at 100 <= best bid expires (never fills)
    fees = Fees(maker_rate=-0.0001, taker_rate=0.001)
    st, result = _run({"book_delta": deltas(BOOK + [(100, "B", 100.0, 4.0)])},
                      [lambda c: c.market(1, 2.0), lambda c: c.sell(100, 1.0, "post_only")], fees=fees, lot=N)
    assert [(f.price_ticks, f.qty, f.maker) for f in st.got] == [(101, 2.0, False)]
    assert st.got[0].fee == pytest.approx(0.202)
    rep = result.report()
    # equity at t=100: cash -202, position 2 at mid 100.5 -> -1, minus the fee
    assert rep["final_equity"] == pytest.approx(-1.202)
    assert rep["fills"] == 1 and rep["orders"] == 2


def test_position_limit_rejects_before_sending():
    st, result = _run({"book_delta": deltas(BOOK + [(100, "B", 100.0, 4.0)])},
                      [lambda c: c.buy(99, 1.0), lambda c: c.buy(98, 1.5)],
                      limits=Limits(max_position=2.0), lot=N)
    assert st.ids == [0, -1]
    assert result.counts["rejected_limit"] == 1


def test_cancel_and_modify():
    # cancelled before the trade-through at t=40: no fill; the second order is moved to 99 (queue
    # restarts with 0 ahead at a new level) and a sell trade at 99 of 1 fills it
    tables = {"book_delta": deltas(BOOK), "trade": trades([(40, "A", 99.0, 1.0), (60, "A", 99.0, 1.0)])}
    actions = [lambda c: c.buy(100, 1.0), lambda c: c.cancel(0), lambda c: c.buy(98, 1.0),
               lambda c: c.modify(1, 99, 1.0)]
    st, _ = _run(tables, actions, lot=N)
    assert [(f.order_id, f.ts_ns) for f in st.got] == [(1, 60)]


def test_l3_exact_queue_by_order_id():
    # orders 1 (5) and 2 (3) rest at 100 before ours (t=10): 8 ahead. Order 3 joins behind us.
    # Cancel of 1 -> 3 ahead. A fill of order 2 (ahead of us) does not fill us; a fill of order 3
    # (behind us) means FIFO matched ours first: filled at t=50.
    ev = order_events([(1, 1, "A", "B", 100.0, 5.0), (2, 2, "A", "B", 100.0, 3.0),
                       (3, 9, "A", "A", 101.0, 1.0),
                       (20, 3, "A", "B", 100.0, 2.0), (30, 1, "C", "B", 100.0, 5.0),
                       (40, 2, "F", "B", 100.0, 1.0), (41, 2, "C", "B", 100.0, 1.0),
                       (50, 3, "F", "B", 100.0, 2.0), (51, 3, "C", "B", 100.0, 2.0)])
    st, _ = _run({"order_event": ev}, [lambda c: c.buy(100, 1.0)], queue=L3FifoQueue(), lot=N,
                 start_synced=True)
    assert [(f.ts_ns, f.price_ticks) for f in st.got] == [(50, 100)]


def test_l3_queue_on_l2_input_is_a_clear_error():
    feed = build_feed({"book_delta": deltas(BOOK)}, ConstantLatency())
    with pytest.raises(ConfigError, match="L3 queue model needs order_event"):
        Backtest(feed, Scripted([]), BacktestConfig(queue=L3FifoQueue()))


def test_signal_follower_buys_on_a_signal_and_flattens_after_the_hold():
    from tapeflow.backtest.strategies import SignalFollower
    from tapeflow.schemas.records import SIGNAL, UNDEF_PRICE

    def signal(t: int, side: int, confidence: float) -> dict:
        return {"ts_event_ns": t, "ts_recv_ns": t, "kind": "whale", "side": side, "price_nanos": UNDEF_PRICE,
                "size_nanos": 0, "start_ns": t, "end_ns": t, "confidence": confidence,
                "score": 1.0, "detector": "whale/1", "params_hash": "", "flags": 0, "evidence": "{}"}

    rows = [signal(20, 1, 0.9), signal(25, -1, 0.1)]
    sig = SIGNAL.table({k: [r[k] for r in rows] for k in rows[0]}, constants={"venue": "test", "symbol": "X"})
    tables = {"book_delta": deltas(BOOK + [(200, "B", 100.0, 4.0)]), "signal": sig}
    feed = build_feed(tables, ConstantLatency(), tick_nanos=N, lot_nanos=N)
    st = SignalFollower(qty=1.0, min_confidence=0.5, hold_ns=50, timer_ns=10)
    result = Backtest(feed, st).run()
    fills = result.fills.to_pylist()
    # the confident buy signal at t=20 buys 1 at the ask 101; the weak sell signal is ignored; after
    # the 50 ns hold the timer at t=70 sells 1 at the bid 100
    assert [(f["ts_ns"], f["side"], f["price"]) for f in fills] == [(20, 1, 101.0), (70, -1, 100.0)]
    assert result.report()["final_position"] == 0.0


def test_data_latency_by_hand():
    from tapeflow.backtest.models import DataLatency

    # ts_recv - ts_event = 5, 2, -1 (clocks disagree); c = base 2 - min(-1) = 3: feed latency 8, 5, 2;
    # t_exch = running max(10 - 8, 20 - 5, 30 - 2) = 2, 15, 28; orders take half the feed latency
    t_local = np.array([10, 20, 30])
    lat = DataLatency(base_ns=2, order_scale=0.5)
    assert lat.exchange_times(t_local, np.array([5, 18, 31])).tolist() == [2, 15, 28]
    assert lat.entry_for(8) == 4 and lat.response_for(8) == 4
