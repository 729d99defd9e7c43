"""Paper trading, the live twin: over a replayed capture cut into micro-batches it gives the fills
and PnL of the backtest of that capture; risk limits halt it, the kill switch stops it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kernels.codes import ASK, BID, F_LAST, F_SNAPSHOT, L2_CLEAR, L2_DELETE, L2_SET
from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.models import ConstantLatency, DataLatency, Fees, Limits, PowerProbQueue
from tapeflow.backtest.paper import PaperTrader, RiskLimits
from tapeflow.backtest.strategies import MarketMaker
from tapeflow.backtest.strategy import Context, Strategy
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import BOOK_DELTA, STATUS, TRADE
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
    """Cut the tables at random receive times, as a live source cuts micro-batches; at a cut,
    rows of other tables stamped with the cut's instant may fall on either side (a trade frame
    and a depth frame of the same instant in two batches)."""
    recv = np.concatenate([t.column("ts_recv_ns").to_numpy() for t in tables.values()])
    cuts = np.unique(rng.choice(np.sort(recv), size=max(1, len(recv) // mean_rows), replace=False))
    edges = [np.iinfo(np.int64).min, *cuts.tolist(), np.iinfo(np.int64).max]
    sides = {name: rng.random(len(edges)) < 0.5 for name in tables}
    out = []
    for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        part = {}
        for name, t in tables.items():
            r = t.column("ts_recv_ns")
            above = pc.greater(r, lo) if sides[name][j] else pc.greater_equal(r, lo)
            below = pc.less_equal(r, hi) if sides[name][j + 1] else pc.less(r, hi)
            part[name] = t.filter(pc.and_(above, below))
        out.append(part)
    return out


def _both(tables, tick_nanos, lot_nanos, make, seed, mean_rows, config=CONFIG):
    feed = build_feed(tables, config.latency, tick_nanos=tick_nanos, lot_nanos=lot_nanos)
    ref = Backtest(feed, make(), config).run()
    trader = PaperTrader("mm", make(), tick_nanos=tick_nanos, lot_nanos=lot_nanos, config=config)
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
        np.testing.assert_array_equal(paper.equity.column(name).to_numpy(),
                                      ref.equity.column(name).to_numpy())
    assert paper.report() == ref.report()


SLOW = BacktestConfig(ConstantLatency(feed_ns=3_000_000, entry_ns=30_000_000, response_ns=25_000_000),
                      PowerProbQueue(3), Fees(-0.00005, 0.0004), Limits(0.01))


@pytest.mark.parametrize(("config", "mean_rows"), [(CONFIG, 50), (SLOW, 4)], ids=["5ms", "30ms-tiny-batches"])
def test_parity_on_a_random_book(config, mean_rows):
    seed = int(np.random.default_rng().integers(1 << 31))
    print("seed", seed)
    tables = random_l2(seed)
    make = lambda: MarketMaker(half_spread_ticks=0.5, qty=0.001, max_position=0.01)  # noqa: E731
    ref, paper, rows = _both(tables, 100_000_000, 1_000_000, make, seed, mean_rows, config)
    _same(ref, paper)
    fills = rows["paper_fill"]
    assert fills.num_rows == ref.fills.num_rows
    ref_px = [round(p * 1e9) for p in ref.fills.column("price").to_pylist()]
    assert fills.column("price_nanos").to_pylist() == ref_px
    assert fills.column("qty").to_pylist() == ref.fills.column("qty").to_pylist()
    pos = rows["paper_position"]
    assert pos.column("position")[-1].as_py() == pytest.approx(paper.equity.column("position")[-1].as_py())
    assert rows["paper_order"].num_rows >= ref.counts["orders"]


def test_parity_on_the_binance_capture(real_data):
    from tapeflow.wire.capture import merge
    from tapeflow.wire.registry import get_format

    path = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    tables = merge(list(get_format("binance").decode([path])))
    t0 = tables["book_delta"].column("ts_recv_ns")[0].as_py()
    cut = {k: tables[k].filter(pc.less(tables[k]["ts_recv_ns"], t0 + 30 * 10**9))
           for k in ("book_delta", "trade")}
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
    trader = PaperTrader("mm", MarketMaker(half_spread_ticks=0.5), tick_nanos=100_000_000,
                         lot_nanos=1_000_000, config=CONFIG)
    batches = micro_batches(tables, np.random.default_rng(2), 100)
    half = len(batches) // 2
    for batch in batches[:half]:
        trader.on_batch(batch)
    assert trader.broker.ctx.orders  # quoting before the kill
    trader.kill("operator pressed stop")
    status, orders = [], []
    for batch in batches[half:]:
        out = trader.on_batch(batch)
        status += [t for name, t in out.items() if name == STATUS.name]
        orders += [t for name, t in out.items() if name == "paper_order"]
    last, result = trader.close()
    orders += [t for name, t in last.items() if name == "paper_order"]
    assert [s.column("state")[0].as_py() for s in status] == ["killed"]
    assert "operator pressed stop" in status[0].column("detail")[0].as_py()
    killed_at = status[0].column("ts_event_ns")[0].as_py()
    assert not trader.broker.ctx.orders
    assert result.equity.column("position")[-1].as_py() == 0.0
    # nothing new is quoted after the kill: only the flattening order (the journal is emitted as
    # paper_order rows and forgotten)
    journal = pa.concat_tables(orders).to_pylist()
    assert any(j["ts_event_ns"] >= killed_at and j["action"] == "cancel" for j in journal)
    assert [j for j in journal if j["ts_event_ns"] > killed_at and j["action"] == "new"
            and j["order_type"] == "limit"] == []


def test_paper_refuses_data_latency():
    with pytest.raises(ConfigError, match="running=True"):
        PaperTrader("x", MarketMaker(), tick_nanos=1, lot_nanos=1, config=BacktestConfig(DataLatency()))


def test_live_feed_equals_the_whole_capture_feed():
    """Batch by batch, the live feed holds the rows, books and level sizes of ``build_feed``."""
    from tapeflow.backtest.livefeed import LiveFeed

    seed = int(np.random.default_rng().integers(1 << 31))
    print("seed", seed)
    tables = random_l2(seed, seconds=20)
    ref = build_feed(tables, LATENCY, tick_nanos=100_000_000, lot_nanos=1_000_000)
    live = LiveFeed(100_000_000, 1_000_000, LATENCY)
    batches = micro_batches(tables, np.random.default_rng(seed), 7)
    for k, batch in enumerate(batches):
        live.append(batch, final=k == len(batches) - 1)
    got = live.feed(0)
    for name in ("t_exch", "t_local", "kind", "side", "px", "qty", "bid_ticks", "ask_ticks", "bid_qty",
                 "ask_qty", "pub", "prev_qty", "lv_seg", "lv_key", "lv_row", "lv_qty"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)


@pytest.mark.parametrize("workers", [1, 2])
def test_paper_flow_over_the_capture_replay_equals_the_backtest(real_data, tmp_path, workers):
    """Through the Bytewax flow (CaptureSource replaying the capture, routed, a session per
    instrument; ``run_main`` and a 2-worker ``cluster_main``): the fills and final equity of the
    backtest of the same capture."""
    from bytewax.testing import TestingSink, cluster_main, run_main

    from flows.market import MarketSinks
    from flows.operators import gather
    from flows.paper import build_paper_flow
    from flows.sources import CaptureSource
    from tapeflow.backtest.session import PaperSession
    from tapeflow.wire.capture import merge
    from tapeflow.wire.registry import get_format

    path = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    tables = merge(list(get_format("binance").decode([path])))
    feed = build_feed({k: tables[k] for k in ("book_delta", "trade")}, LATENCY)
    ref = Backtest(feed, MarketMaker(), CONFIG).run()
    lot_nanos = round(feed.lot * N)
    out, status = [], []
    def session() -> PaperSession:
        return PaperSession("mm", MarketMaker, tick_nanos=feed.tick_nanos, lot_nanos=lot_nanos, config=CONFIG,
                            kill_file=tmp_path / "KILL")

    flow = build_paper_flow(CaptureSource("binance", [path], batch_events=700),
                            MarketSinks(tables=TestingSink(out), status=TestingSink(status)), session)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    got = gather(out)
    assert status == []
    fills = got["paper_fill"]
    print("fills", fills.num_rows, "equity", ref.equity.column("equity")[-1].as_py())
    assert fills.num_rows == ref.fills.num_rows > 20
    assert fills.column("ts_event_ns").to_pylist() == ref.fills.column("ts_ns").to_pylist()
    ref_px = [round(p * 1e9) for p in ref.fills.column("price").to_pylist()]
    assert fills.column("price_nanos").to_pylist() == ref_px
    assert fills.column("fee").to_pylist() == ref.fills.column("fee").to_pylist()
    last = got["paper_position"].sort_by("ts_event_ns").to_pylist()[-1]
    assert last["equity"] == pytest.approx(ref.equity.column("equity")[-1].as_py(), abs=1e-9)
    assert last["position"] == ref.equity.column("position")[-1].as_py()


def test_kill_file_stops_the_flow_session(tmp_path):
    from tapeflow.backtest.session import PaperSession

    tables = random_l2(3, seconds=10)
    kill = tmp_path / "KILL"
    session = PaperSession("mm", lambda: MarketMaker(half_spread_ticks=0.5), tick_nanos=100_000_000,
                           lot_nanos=1_000_000, config=CONFIG, kill_file=kill)
    batches = micro_batches(tables, np.random.default_rng(0), 50)
    for batch in batches[:10]:
        assert "status" not in dict(session.apply(batch))
    kill.write_text("")
    states = [dict(session.apply(b)).get("status") for b in batches[10:]]
    states = [s.column("state")[0].as_py() for s in states if s is not None]
    assert states == ["killed"]
    assert session.trader.halted


def test_bad_input_halts_the_session_with_a_status_row():
    from tapeflow.backtest.session import PaperSession
    from tests.backtest.helpers import order_events

    session = PaperSession("mm", MarketMaker, tick_nanos=1, lot_nanos=1, config=CONFIG)
    items = session.apply({"order_event": order_events([(1, 1, "A", "B", 1.0, 1.0)])})
    assert [name for name, _ in items] == ["status"]
    assert "order_event" in items[0][1].column("detail")[0].as_py()
    assert session.apply({}) == [] and session.close() == []
