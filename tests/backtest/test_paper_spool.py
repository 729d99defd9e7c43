"""A paper session streams its fills and equity samples to disk (Parquet parts) and keeps only a
short tail in memory; the final report, read back from the parts, equals the backtest's in-memory
one; a session restored from a snapshot rewrites the parts after it and counts none twice."""

from __future__ import annotations

import gc
import json
import pickle

import numpy as np
import pyarrow as pa

from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.paper import PaperTrader
from tapeflow.backtest.strategies import MarketMaker
from tests.backtest.test_paper import CONFIG, micro_batches, random_l2

TICK, LOT = 100_000_000, 1_000_000
# an equity sample every 50 ms: many samples from a short session
FINE = BacktestConfig(CONFIG.latency, CONFIG.queue, CONFIG.fees, CONFIG.limits, equity_interval_ns=50_000_000)


def _mm() -> MarketMaker:
    return MarketMaker(half_spread_ticks=0.5, qty=0.001, max_position=0.01)


def _same(ref, got) -> None:
    assert got.fills.equals(ref.fills)
    for name in ref.equity.column_names:
        np.testing.assert_array_equal(got.column("equity", name), ref.column("equity", name))
    assert got.report() == ref.report()


def _feed(trader: PaperTrader, batches: list) -> int:
    most = 0
    for b in batches:
        trader.on_batch(b)
        if not trader.broker.started:
            continue
        ctx = trader.broker.ctx
        most = max(most, len(ctx.fills) + len(ctx.samples))
    return most


def test_spilled_report_equals_the_in_memory_one(tmp_path):
    seed = int(np.random.default_rng().integers(1 << 31))
    print("seed", seed)
    tables = random_l2(seed, seconds=30)
    ref = Backtest(build_feed(tables, FINE.latency, tick_nanos=TICK, lot_nanos=LOT), _mm(), FINE).run()
    assert ref.fills.num_rows > 10 and ref.equity.num_rows > 500
    batches = micro_batches(tables, np.random.default_rng(seed), 50)
    out = tmp_path / "session"
    trader = PaperTrader("mm", _mm(), tick_nanos=TICK, lot_nanos=LOT, config=FINE, results_dir=out,
                         spill_rows=64)
    most = _feed(trader, batches)
    _, got = trader.close()
    _same(ref, got)
    # the tail in memory stayed short: one spill's worth plus a batch's samples and fills
    assert most < 64 + 40, most
    parts = sorted((out / "equity").glob("part-*.parquet"))
    assert len(parts) >= ref.equity.num_rows // 100
    assert sum(pa.parquet.read_metadata(p).num_rows for p in parts) <= ref.equity.num_rows
    assert json.loads((out / "report.json").read_text())["fills"] == ref.report()["fills"]
    # a temporary spool (no results directory) is removed once the session's result is released
    # (the result streams its report from the parts)
    temp = PaperTrader("mm", _mm(), tick_nanos=TICK, lot_nanos=LOT, config=FINE, spill_rows=64)
    _feed(temp, batches)
    where = temp.broker.spool.directory
    assert where is not None and any(where.iterdir())
    _, again = temp.close()
    _same(ref, again)
    assert where.exists()
    del temp, again
    gc.collect()
    assert not where.exists()


def test_a_session_restored_from_a_snapshot_rewrites_the_parts_after_it(tmp_path):
    seed = int(np.random.default_rng().integers(1 << 31))
    print("seed", seed)
    tables = random_l2(seed, seconds=20)
    ref = Backtest(build_feed(tables, FINE.latency, tick_nanos=TICK, lot_nanos=LOT), _mm(), FINE).run()
    batches = micro_batches(tables, np.random.default_rng(seed), 50)
    half = len(batches) // 2
    trader = PaperTrader("mm", _mm(), tick_nanos=TICK, lot_nanos=LOT, config=FINE,
                         results_dir=tmp_path / "s", spill_rows=32)
    _feed(trader, batches[:half])
    snapshot = pickle.dumps(trader)
    written = dict(trader.broker.spool.parts)
    _feed(trader, batches[half:])  # the crashed run: parts past the snapshot are on disk
    assert trader.broker.spool.parts["equity"] > written["equity"]
    restored = pickle.loads(snapshot)
    _feed(restored, batches[half:])
    _, got = restored.close()
    _same(ref, got)
