"""Order slots are recycled: a session may send any number of orders; the order table holds only
the orders alive (or talked about) at once, and recycling changes no fill, order id or report."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.backtest import engine
from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.models import ConstantLatency, Fees
from tapeflow.backtest.paper import PaperTrader
from tapeflow.backtest.strategy import Context, Strategy
from tapeflow.errors import ConfigError
from tapeflow.schemas.paper import PAPER_FILL, PAPER_ORDER
from tests.backtest.helpers import N, deltas

TICK, LOT = 1_000_000_000, 1_000_000_000
CONFIG = BacktestConfig(ConstantLatency(0, 100_000, 100_000), fees=Fees(0.0, 0.001))


def book(seconds: int) -> dict[str, pa.Table]:
    """A still book (bid 100, ask 101) restated every 10 ms: rows for the clock to run on."""
    rows = []
    for t in range(1, seconds * 100):
        rows += [(t * N // 100, "B", 100.0, 5.0), (t * N // 100, "A", 101.0, 5.0)]
    return {"book_delta": deltas(rows)}


class Churn(Strategy):
    """Every ``timer_ns`` once the book is valid: cancel the bid rested last time, rest a new one
    far below the book, and send eight market orders buy, sell, buy, sell... (fills: flat after each)."""

    def __init__(self, timer_ns: int = 1_000_000, *, keep_open: bool = False) -> None:
        self.timer_ns = timer_ns
        self.keep_open = keep_open
        self.resting: int | None = None

    def on_timer(self, ctx: Context) -> None:
        if not ctx.book_valid:
            return
        if self.resting is not None and not self.keep_open:
            ctx.cancel(self.resting)
        self.resting = ctx.buy(90, 1.0, "post_only")
        if not self.keep_open:
            for side in (1, -1) * 4:
                ctx.market(side, 1.0)


def test_a_paper_session_sends_more_than_65536_orders():
    tables = book(9)
    trader = PaperTrader("churn", Churn(), tick_nanos=TICK, lot_nanos=LOT, config=CONFIG)
    recv = tables["book_delta"].column("ts_recv_ns").to_numpy()
    orders, fills = [], []
    for lo in range(0, len(recv), 1500):
        out = trader.on_batch({"book_delta": tables["book_delta"].slice(lo, 1500)})
        orders += [out[PAPER_ORDER.name]] if PAPER_ORDER.name in out else []
        fills += [out[PAPER_FILL.name]] if PAPER_FILL.name in out else []
    last, result = trader.close()
    orders += [last[PAPER_ORDER.name]] if PAPER_ORDER.name in last else []
    fills += [last[PAPER_FILL.name]] if PAPER_FILL.name in last else []
    o, f = pa.concat_tables(orders), pa.concat_tables(fills)
    new = o.filter(pa.compute.equal(o.column("action"), "new"))
    ids = new.column("order_id").to_numpy()
    assert ids.size > 65_536
    np.testing.assert_array_equal(ids, np.arange(ids.size))  # ids count up, never reused
    # every market order filled, under its own id; no resting bid did (90 is far below the book)
    market = new.filter(pa.compute.equal(new.column("order_type"), "market"))
    assert f.column("order_id").to_pylist() == market.column("order_id").to_pylist()
    assert f.column("side").to_pylist() == market.column("side").to_pylist()
    report = result.report()
    assert report["orders"] == ids.size and report["fills"] == market.num_rows
    assert report["cancels"] == o.filter(pa.compute.equal(o.column("action"), "cancel")).num_rows
    assert report["final_position"] == 0.0
    # the table holds what is alive at once (an order or two, plus messages in flight): it never grew
    assert trader.broker.bt.o_i.shape[0] == engine.ORDER_SLOTS
    assert trader.broker.retained()["live_orders"] <= 2


def _run(strategy: Strategy, tables: dict[str, pa.Table], order_slots: int, *, recycle: bool = True,
         monkeypatch: pytest.MonkeyPatch | None = None):
    bt = Backtest(build_feed(tables, CONFIG.latency, tick_nanos=TICK, lot_nanos=LOT), strategy, CONFIG,
                  order_slots=order_slots)
    if not recycle:
        bt.ctx._reclaim = lambda: None  # every order keeps its own slot: the engine as it was
    bt.ctx.journal = []
    return bt, bt.run()


def test_recycling_changes_nothing_but_the_table_size():
    tables = book(2)
    ref_bt, ref = _run(Churn(), tables, 1 << 15, recycle=False)
    bt, got = _run(Churn(), tables, 4)
    assert ref.report()["orders"] > 5000
    assert ref_bt.o_i.shape[0] == 1 << 15 and bt.o_i.shape[0] <= 32  # grew a little, from 4
    assert got.fills.equals(ref.fills)
    for name in ref.equity.column_names:
        np.testing.assert_array_equal(got.column("equity", name), ref.column("equity", name))
    assert got.report() == ref.report()
    assert bt.ctx.journal == ref_bt.ctx.journal


def test_the_table_grows_with_orders_left_open():
    tables = book(1)
    bt, result = _run(Churn(5_000_000, keep_open=True), tables, 8)
    assert result.report()["orders"] == len(bt.ctx.orders) > 150  # all still resting
    assert bt.o_i.shape[0] == 256


def test_memory_that_cannot_hold_the_open_orders_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    zeros = np.zeros

    def tight(shape, *args, **kwargs):  # noqa: ANN001, ANN202
        n = shape[0] if isinstance(shape, tuple) else shape
        if n >= 64:
            raise MemoryError(f"cannot allocate {n}")
        return zeros(shape, *args, **kwargs)

    bt = Backtest(build_feed(book(1), CONFIG.latency, tick_nanos=TICK, lot_nanos=LOT),
                  Churn(5_000_000, keep_open=True), CONFIG, order_slots=32)
    monkeypatch.setattr(engine.np, "zeros", tight)
    with pytest.raises(ConfigError, match="32 orders are alive at once and memory cannot hold 64"):
        bt.run()



class CancelRacesFill(Strategy):
    """On book rows 50 us apart (orders and responses take 100 us): a market order, its cancel on the
    next row (it reaches the exchange after the fill, so its reject comes back 50 us after the fill's
    response), then on each row a bid far below the book and its cancel. Records what it sees of its
    orders at every row, and how often a done order's slot waited for a message in flight."""

    def __init__(self) -> None:
        self.n = 0
        self.market_id = -1
        self.seen: list = []
        self.waited = 0

    def on_book(self, ctx: Context) -> None:
        self.seen.append((ctx.now_ns, sorted((o.order_id, o.status, o.busy) for o in ctx.orders.values())))
        self.waited += bool(ctx._retired)
        if not ctx.book_valid:
            return
        phase, self.n = self.n % 6, self.n + 1
        if phase == 0:
            self.market_id = ctx.market(1 if self.n % 12 == 1 else -1, 1.0)
        elif phase == 1:
            ctx.cancel(self.market_id)
        else:
            ctx.cancel(ctx.buy(90, 1.0, "post_only"))


def test_a_slot_waits_for_the_messages_still_in_flight_about_its_order():
    rows = [(t * 50_000, "B" if t % 2 else "A", 100.0 if t % 2 else 101.0, 5.0) for t in range(1, 2001)]
    tables = {"book_delta": deltas(rows)}
    ref_s, got_s, eager_s = CancelRacesFill(), CancelRacesFill(), CancelRacesFill()
    ref_bt, ref = _run(ref_s, tables, 1 << 12, recycle=False)
    bt, got = _run(got_s, tables, 2)
    assert got_s.waited > 100  # done orders whose slot waited for the cancel's reject
    assert ref.report()["fills"] > 100
    assert got_s.seen == ref_s.seen and bt.ctx.journal == ref_bt.ctx.journal
    assert str(got.report()) == str(ref.report()) and got.fills.equals(ref.fills)  # str: NaN == NaN
    # a recycler that ignores the messages in flight hands the slot on too early: the stale reject
    # lands on the next order, which the strategy then sees as not busy while its cancel travels
    eager = Backtest(build_feed(tables, CONFIG.latency, tick_nanos=TICK, lot_nanos=LOT), eager_s, CONFIG,
                     order_slots=2)
    ctx = eager.ctx

    def reclaim_all() -> None:
        ctx._free += ctx._retired
        ctx._retired = []

    ctx._reclaim = reclaim_all
    eager.run()
    assert eager_s.seen != ref_s.seen
