"""Degraded windows reach the derived rows: a latency spike injected into the real Binance capture's
capture times opens one ``degraded`` window, and exactly the snapshots, metrics and bars inside it
carry ``F_MAYBE_BAD_BOOK``; outside it every row equals the batch rebuild."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from bytewax.testing import TestingSink, run_main

from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from tapeflow.book.l2 import book_snapshots, quotes_from_deltas
from tapeflow.derived import metrics
from tapeflow.derived.bars import time_bars
from tapeflow.live.health import FeedHealth, LatencyBreaker
from tapeflow.schemas.records import F_MAYBE_BAD_BOOK
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import TablesSource, binance_prefix, same_rows, sorted_rows

SECOND = 1_000_000_000
SPIKE_AT_S, SPIKE_FOR_S, SPIKE_NS = 30, 5, 3 * SECOND  # +3 s latency for 5 s of capture, 30 s in
INTERVALS = ("1s", "1m")
BAR_KEYS = ("venue", "symbol", "interval", "ts_event_ns", "revision")


def _add_flag(table: pa.Table, mask: np.ndarray) -> pa.Table:
    flags = table["flags"].to_numpy() | np.where(mask, F_MAYBE_BAD_BOOK, 0).astype(np.uint8)
    i = table.column_names.index("flags")
    return table.set_column(i, table.schema.field(i), pa.array(flags, pa.uint8()))


def _in(table: pa.Table, column: str, window: tuple[int, int]) -> np.ndarray:
    ts = table[column].to_numpy()
    return (ts >= window[0]) & (ts < window[1])


@pytest.fixture(scope="module")
def spiked() -> tuple[dict[str, pa.Table], tuple[int, int]]:
    """The decoded prefix with ``SPIKE_NS`` added to the capture time of every row captured in
    ``[t0, t1)``: the feed's latency jumps by 3 s there, then falls back."""
    tables = merge(list(get_format("binance").decode([binance_prefix()])))
    first = min(int(t["ts_recv_ns"].to_numpy().min()) for t in tables.values() if t.num_rows)
    t0 = first + SPIKE_AT_S * SECOND
    spike = (t0, t0 + SPIKE_FOR_S * SECOND)
    out = {}
    for name, t in tables.items():
        recv = t["ts_recv_ns"].to_numpy()
        late = np.where(_in(t, "ts_recv_ns", spike), recv + SPIKE_NS, recv)
        i = t.column_names.index("ts_recv_ns")
        out[name] = t.set_column(i, t.schema.field(i), pa.array(late, pa.int64()))
    return out, spike


@pytest.mark.realdata
def test_exactly_the_rows_of_the_degraded_window_are_flagged(
        spiked: tuple[dict[str, pa.Table], tuple[int, int]]) -> None:
    tables, spike = spiked
    got: list = []
    status: list = []
    flow = build_market_flow(TablesSource(tables, batch_events=500), MarketSinks(
        tables=TestingSink(got), status=TestingSink(status)), intervals=INTERVALS,
        new_health=lambda: FeedHealth(LatencyBreaker(SECOND)))
    run_main(flow)
    out, rows = gather(got), gather(status)["status"].to_pylist()

    # one window, opened by the spike and closed after it
    opened = [r for r in rows if r["state"] == "degraded"]
    closed = [r for r in rows if r["state"] == "recovered"]
    assert len(opened) == 1 and len(closed) == 1, rows
    # the grid follows the running max of capture times, so the window closes at the feed's
    # high-water mark when it recovers: here the last late row (t1 + 3 s), past the recovering row
    shifted = (spike[0] + SPIKE_NS, spike[1] + SPIKE_NS)
    late_max = max(int(t["ts_recv_ns"].to_numpy()[_in(t, "ts_recv_ns", shifted)].max(initial=-1))
                   for t in tables.values())
    assert spike[1] <= closed[0]["until_ns"] <= late_max
    window = (opened[0]["ts_recv_ns"], max(closed[0]["until_ns"], late_max + 1))
    # the first late row is captured at t0 + 3 s: the window opens with the batch that holds it
    assert spike[0] + SPIKE_NS <= window[0] <= spike[0] + SPIKE_NS + SECOND

    # snapshots: the batch grid over the same rows, plus the flag on the instants in the window
    batch = book_snapshots(tables["book_delta"], levels=10, interval_ns=SECOND)
    want_snaps = _add_flag(batch, _in(batch, "ts_event_ns", window))
    inside = int(_in(batch, "ts_event_ns", window).sum())
    assert inside >= 3, (window[0] - spike[0], window[1] - spike[0])
    assert inside < batch.num_rows // 2
    snaps = sorted_rows(out["book_snapshot"], ("ts_event_ns",))
    assert snaps.equals(want_snaps)
    assert int(((snaps["flags"].to_numpy() & F_MAYBE_BAD_BOOK) != 0).sum()) == inside + int(
        ((batch["flags"].to_numpy() & F_MAYBE_BAD_BOOK) != 0).sum())

    # input rows captured in the window are flagged (so the bars they build are), the rest untouched
    trades = tables["trade"]
    flagged_trades = _add_flag(trades, _in(trades, "ts_recv_ns", window))
    assert out["trade"].equals(flagged_trades)
    assert 0 < int(_in(trades, "ts_recv_ns", window).sum()) < trades.num_rows

    # bars: the final revisions equal time_bars over the flagged trades, and bars with no trade
    # captured in the window equal the batch bars of the unflagged trades
    final = {}
    for row in sorted_rows(out["bar"], BAR_KEYS).to_pylist():
        final[(row["interval"], row["ts_event_ns"])] = {k: v for k, v in row.items() if k != "revision"}
    for interval in INTERVALS:
        want = time_bars(flagged_trades, interval).drop_columns(["revision"]).to_pylist()
        plain = {r["ts_event_ns"]: r for r in time_bars(trades, interval).to_pylist()}
        assert [final[(interval, r["ts_event_ns"])] for r in want] == want
        assert len(want) == sum(1 for k in final if k[0] == interval)
        bad = [r for r in want if r["flags"] & F_MAYBE_BAD_BOOK and not plain[r["ts_event_ns"]]["flags"]]
        assert bad, interval
        if interval == "1s":
            # a 1 s bar is flagged iff one of its trades was captured in the window (counted from the trades)
            opens = trades["ts_event_ns"].to_numpy() // SECOND * SECOND
            touched = set(opens[_in(trades, "ts_recv_ns", window)].tolist())
            assert {r["ts_event_ns"] for r in bad} == touched

    # metrics follow their snapshot's flag; everything else equals the batch metrics
    quotes = quotes_from_deltas(tables["book_delta"])
    want_metrics = metrics(want_snaps, quotes, flagged_trades, interval="1s", levels=10)
    assert same_rows(sorted_rows(out["metric"], ("ts_event_ns",)), want_metrics)
    metric_flags = out["metric"]["flags"].to_numpy() & F_MAYBE_BAD_BOOK
    assert metric_flags[_in(out["metric"], "ts_event_ns", window)].all()
