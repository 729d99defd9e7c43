"""Paper trading, the live twin: over a replayed capture cut into micro-batches it gives the fills
and PnL of the backtest of that capture; risk limits halt it, the kill switch stops it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.models import ConstantLatency, DataLatency, Fees, Limits, PowerProbQueue
from tapeflow.backtest.paper import PaperTrader, RiskLimits
from tapeflow.backtest.strategies import MarketMaker
from tapeflow.backtest.strategy import Context, Strategy
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import BOOK_DELTA, STATUS, TRADE
from kernels.codes import ASK, BID, F_LAST, F_SNAPSHOT, L2_CLEAR, L2_DELETE, L2_SET
from tests.backtest.helpers import CONST, N, trades
from tests.conftest import need

LATENCY = ConstantLatency(feed_ns=0, entry_ns=5_000_000, response_ns=5_000_000)
CONFIG = BacktestConfig(LATENCY, PowerProbQueue(3), Fees(-0.00005, 0.0004), Limits(0.01))


def random_l2(seed: int, seconds: int = 60) -> dict[str, pa.Table]:
    """A random-walk L2 book (0.1 ticks, a 1-tick spread, 3 levels a side) with trades: one venue
    event every ~20 ms that moves the touch (old levels deleted) or resizes it."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("ts_event_ns", "ts_recv_ns", "sequence", "side", "action",
                                             "price_nanos", "size_nanos", "flags")}

    def add(t: int, side: int, action: int, ticks: int, size: float, flags: int) -> None:
        for k, v in zip(cols, (t, t, len(cols["sequence"]), side, action, ticks * 100_000_000,
                               int(round(size * N)), flags), strict=True):
            cols[k].append(v)

    def size() -> float:
        return float(rng.integers(1, 20)) / 1000

    bid, t = 10_000, 1
    add(t, ord("N"), L2_CLEAR, 0, 0, F_SNAPSHOT)
    for k in range(3):
        add(t, BID, L2_SET, bid - k, size(), F_SNAPSHOT)
        add(t, ASK, L2_SET, bid + 1 + k, size(), F_SNAPSHOT | (F_LAST if k == 2 else 0))
    trs = []
    while t < seconds * N:
        t += int(rng.integers(1, 40_000_000))
        move = int(rng.choice([-1, 0, 0, 0, 0, 1]))
        if move:
            trs.append((t, "B" if move > 0 else "A", (bid + (1 if move > 0 else 0)) / 10, 0.002))
            old, bid = bid, bid + move
            add(t, BID if move < 0 else ASK, L2_DELETE, old if move < 0 else old + 1, 0, 0)
            add(t, ASK if move < 0 else BID, L2_SET, bid + 1 if move < 0 else bid, size(), 0)
            add(t, BID if move < 0 else ASK, L2_SET, bid - 2 if move < 0 else bid + 3, size(), 0)
            add(t, ASK if move < 0 else BID, L2_DELETE, old + 4 if move < 0 else old - 2, 0, 0)
        add(t, BID, L2_SET, bid, size(), 0)
        add(t, ASK, L2_SET, bid + 1, size(), F_LAST)
    return {BOOK_DELTA.name: BOOK_DELTA.table(cols, constants=CONST), TRADE.name: trades(trs)}


def micro_batches(tables: dict[str, pa.Table], rng: np.random.Generator, mean_rows: int
                  ) -> list[dict[str, pa.Table]]:
    """Cut the tables at random receive times, as a live source cuts micro-batches."""
    recv = np.concatenate([t.column("ts_recv_ns").to_numpy() for t in tables.values()])
    cuts = np.unique(rng.choice(np.sort(recv), size=max(1, len(recv) // mean_rows), replace=False))
    edges = [np.iinfo(np.int64).min, *cuts.tolist(), np.iinfo(np.int64).max]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        part = {}
        for name, t in tables.items():
            r = t.column("ts_recv_ns")
            part[name] = t.filter(pc.and_(pc.greater_equal(r, lo), pc.less(r, hi)))
        out.append(part)
    return out


def _both(tables, tick_nanos, lot_nanos, make, seed, mean_rows, limits=None):
    feed = build_feed(tables, LATENCY, tick_nanos=tick_nanos, lot_nanos=lot_nanos)
    ref = Backtest(feed, make(), CONFIG).run()
    trader = PaperTrader("mm", make(), tick_nanos=tick_nanos, lot_nanos=lot_nanos, config=CONFIG, limits=limits)
    rows: dict[str, list[pa.Table]] = {}
    for batch in micro_batches(tables, np.random.default_rng(seed), mean_rows):
        for name, t in trader.on_batch(batch).items():
            rows.setdefault(name, []).append(t)
    last, paper = trader.close()
    for name, t in last.items():
        rows.setdefault(name, []).append(t)
    return ref, paper, {k: pa.concat_tables(v) for k, v in rows.items()}


def _same(ref, paper):
    assert ref.fills.num_rows > 5
    assert paper.fills.equals(ref.fills)
    for name in ref.equity.column_names:  # NaN marks (a one-sided book) compare equal here
        np.testing.assert_array_equal(paper.equity.column(name).to_numpy(), ref.equity.column(name).to_numpy())
    assert paper.report() == ref.report()


def test_parity_on_a_random_book():
    seed = int(np.random.default_rng().integers(1 << 31))
    print("seed", seed)
    tables = random_l2(seed)
    make = lambda: MarketMaker(half_spread_ticks=0.5, qty=0.001, max_position=0.01)  # noqa: E731
    ref, paper, rows = _both(tables, 100_000_000, 1_000_000, make, seed, mean_rows=50)
    _same(ref, paper)
    fills = rows["paper_fill"]
    assert fills.num_rows == ref.fills.num_rows
    assert fills.column("price_nanos").to_pylist() == [p * 100_000_000 for p in ref.fills.column("price").to_pylist()] \
        or fills.column("qty").to_pylist() == ref.fills.column("qty").to_pylist()
    pos = rows["paper_position"]
    assert pos.column("position").to_pylist()[-1] == pytest.approx(paper.equity.column("position")[-1].as_py())
    assert rows["paper_order"].num_rows >= ref.counts["orders"]


def test_parity_on_the_binance_capture(real_data):
    from tapeflow.wire.capture import merge
    from tapeflow.wire.registry import get_format

    path = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    tables = merge(list(get_format("binance").decode([path])))
    t0 = tables["book_delta"].column("ts_recv_ns")[0].as_py()
    cut = {k: tables[k].filter(pc.less(tables[k]["ts_recv_ns"], t0 + 30 * 10**9)) for k in ("book_delta", "trade")}
    feed = build_feed(cut, LATENCY)
    seed = int(np.random.default_rng().integers(1 << 31))
    print("seed", seed, "tick", feed.tick_nanos, "lot", feed.lot)
    ref, paper, _ = _both(cut, feed.tick_nanos, round(feed.lot * N), MarketMaker, seed, mean_rows=2000)
    _same(ref, paper)


class Loser(Strategy):
    """Buys at the ask and sells at the bid every timer: loses the spread each round trip."""

    timer_ns = 200_000_000

    def on_timer(self, ctx: Context) -> None:
        if ctx.orders or not ctx.book_valid:
            return
        ctx.market(1 if ctx.position <= 0 else -1, 0.002 if ctx.position else 0.001)


def test_max_daily_loss_halts_and_flattens():
    tables = random_l2(7)
    trader = PaperTrader("loser", Loser(), tick_nanos=100_000_000, lot_nanos=1_000_000, config=CONFIG,
                         limits=RiskLimits(max_position=0.01, max_daily_loss=0.01))
    status = []
    for batch in micro_batches(tables, np.random.default_rng(1), 100):
        status += [t for name, t in trader.on_batch(batch).items() if name == STATUS.name]
    _, result = trader.close()
    assert trader.halted
    assert len(status) == 1 and status[0].column("state")[0].as_py() == "halted"
    assert "max_daily_loss" in status[0].column("detail")[0].as_py()
    halted_at = status[0].column("ts_event_ns")[0].as_py()
    eq = result.equity.to_pydict()
    # the loss stops near the limit: one more round trip at most, and no trading after the halt
    assert min(eq["equity"]) > -0.01 - 0.002 * 1000.1 * 0.0004 * 3 - 0.1 * 0.002 * 2
    assert eq["position"][-1] == 0.0
    later = [f for f in result.fills.to_pylist() if f["ts_ns"] > halted_at + 20_000_000]
    assert len(later) <= 1
    # without the limit the same strategy loses far more
    free = PaperTrader("loser", Loser(), tick_nanos=100_000_000, lot_nanos=1_000_000, config=CONFIG)
    for batch in micro_batches(tables, np.random.default_rng(1), 100):
        free.on_batch(batch)
    assert free.close()[1].equity.column("equity")[-1].as_py() < -0.05
    assert not free.halted


def test_kill_switch_cancels_and_flattens():
    tables = random_l2(11)
    trader = PaperTrader("mm", MarketMaker(half_spread_ticks=0.5), tick_nanos=100_000_000, lot_nanos=1_000_000,
                         config=CONFIG)
    batches = micro_batches(tables, np.random.default_rng(2), 100)
    half = len(batches) // 2
    for batch in batches[:half]:
        trader.on_batch(batch)
    assert trader.broker.ctx.orders  # quoting before the kill
    trader.kill("operator pressed stop")
    status = []
    for batch in batches[half:]:
        status += [t for name, t in trader.on_batch(batch).items() if name == STATUS.name]
    _, result = trader.close()
    assert [s.column("state")[0].as_py() for s in status] == ["killed"]
    assert "operator pressed stop" in status[0].column("detail")[0].as_py()
    killed_at = status[0].column("ts_event_ns")[0].as_py()
    assert not trader.broker.ctx.orders
    assert result.equity.column("position")[-1].as_py() == 0.0
    # nothing new is quoted after the kill: only the flattening order
    journal = trader.broker.ctx.journal
    assert [j for j in journal if j[0] > killed_at and j[1] == "new" and j[3] == "limit"] == []


def test_paper_refuses_data_latency():
    with pytest.raises(ConfigError, match="ConstantLatency"):
        PaperTrader("x", MarketMaker(), tick_nanos=1, lot_nanos=1, config=BacktestConfig(DataLatency()))
