"""The live path (BookStage -> LiveMetrics, LiveBars) over a capture equals the batch rebuild."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tapeflow.book.l2 import book_snapshots, quotes_from_deltas
from tapeflow.book.stage import BookStage
from tapeflow.derived import LiveBars, LiveMetrics, metrics
from tapeflow.derived.bars import STANDARD_INTERVALS, time_bars
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, QUOTE, TRADE
from tests.derived.conftest import same_rows
from tests.derived.test_live_bars import final_revisions

S = 1_000_000_000


def _prefix(table: pa.Table, until_ns: int) -> pa.Table:
    running = np.maximum.accumulate(table.column("ts_recv_ns").to_numpy())
    return table.slice(0, int(np.searchsorted(running, until_ns, side="right")))


def _cut(table: pa.Table, lo: int, hi: int) -> pa.Table:
    # Rows in arrival order whose running-max capture time lies in (lo, hi]: a connector's micro-batch.
    running = np.maximum.accumulate(table.column("ts_recv_ns").to_numpy())
    a, b = np.searchsorted(running, [lo, hi], side="right")
    return table.slice(int(a), int(b - a))


def test_binance_first_minute_live_equals_batch(binance_tables: dict) -> None:
    deltas, trades = binance_tables["book_delta"], binance_tables["trade"]
    start = int(deltas.column("ts_recv_ns").to_numpy()[0])
    deltas, trades = _prefix(deltas, start + 60 * S), _prefix(trades, start + 60 * S)
    assert deltas.num_rows > 10_000 and trades.num_rows > 1_000
    stage, live_metrics = BookStage("l2", levels=10, interval_ns=S), LiveMetrics("1s", levels=10)
    live_bars = LiveBars(allowed_lateness_ns=0, restate_horizon_ns=3600 * S)
    cuts = np.sort(np.random.default_rng(11).integers(start, start + 60 * S, 40)).tolist()
    out_metrics, out_bars, lo = [], [], start - 1
    for hi in [*cuts, start + 61 * S]:
        d, t = _cut(deltas, lo, hi), _cut(trades, lo, hi)
        book = stage.apply({BOOK_DELTA.name: d})
        out_metrics.append(live_metrics.add(book.get(BOOK_SNAPSHOT.name, BOOK_SNAPSHOT.empty_table()),
                                            book.get(QUOTE.name, QUOTE.empty_table()), t))
        out_bars.append(live_bars.add(t))
        lo = hi
    last = stage.close().get(BOOK_SNAPSHOT.name, BOOK_SNAPSHOT.empty_table())
    out_metrics += [live_metrics.add(last, QUOTE.empty_table(), TRADE.empty_table()), live_metrics.close()]
    out_bars.append(live_bars.close())
    batch = metrics(book_snapshots(deltas, levels=10, interval_ns=S), quotes_from_deltas(deltas), trades)
    assert batch.num_rows >= 60
    same_rows(pa.concat_tables(out_metrics), batch)
    bars = pa.concat_tables(out_bars)
    for interval in STANDARD_INTERVALS:
        assert final_revisions(bars, interval) == time_bars(trades, interval).to_pylist(), interval
