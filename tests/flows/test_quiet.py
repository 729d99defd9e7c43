"""Quiet instruments: with heartbeats (``flows.sources.Heartbeat``) a quiet instrument's grid
snapshots and metrics follow the partition's capture clock instead of waiting for its next event.

Two simulated instruments in one partition; ETH goes silent for 10 s (its rows removed from every
table). Its snapshots for those seconds come out within ~2 s of capture time (interval + one
micro-batch), where without heartbeats they wait the whole 10 s; every row equals the batch grid,
plus only the instants after an instrument's last event, which the live grid keeps emitting while
the other instrument's clock moves."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from bytewax.testing import TestingSink, run_main

from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from flows.sources import CaptureSource
from tapeflow.book.l3 import l3_book_snapshots
from tapeflow.book.rebuild import snapshots_for_format
from tapeflow.schemas import ALL_RECORDS, concat
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import TablesSource, binance_prefix, sim_market, sorted_rows

SECOND = 1_000_000_000
QUIET = "SIM-ETHUSDT"
QUIET_AT_S, QUIET_FOR_S = 40, 10
RAW = ("order_event", "trade", "book_delta")


@pytest.fixture(scope="module")
def one_partition() -> tuple[dict[str, pa.Table], tuple[int, int]]:
    """Both instruments as one stream in capture-time order, ETH silent for 10 s."""
    tables = merge(list(get_format("sim").decode(list(sim_market()))))
    first = min(int(t["ts_recv_ns"].to_numpy().min()) for t in tables.values())
    quiet = (first + QUIET_AT_S * SECOND, first + (QUIET_AT_S + QUIET_FOR_S) * SECOND)
    out = {}
    for name, t in tables.items():
        recv = t["ts_recv_ns"].to_numpy()
        eth = t["symbol"].to_numpy(zero_copy_only=False) == QUIET
        silent = eth & (recv >= quiet[0]) & (recv < quiet[1])
        t = t.filter(pa.array(~silent))
        out[name] = t.take(pc.sort_indices(t, [("ts_recv_ns", "ascending")]))  # stable: arrival order
    return out, quiet


def _run(tables: dict[str, pa.Table], heartbeat_ns: int | None) -> list[tuple[str, pa.Table]]:
    items: list = []
    source = TablesSource(tables, batch_events=2000, heartbeat_ns=heartbeat_ns)
    run_main(build_market_flow(source, MarketSinks(tables=TestingSink(items)), intervals=()))
    return items


def _lag_ns(items: list[tuple[str, pa.Table]], quiet: tuple[int, int]) -> list[int]:
    """For each of ETH's grid instants inside the silence: how far the stream's capture clock (the
    newest raw row sent to the sinks) had moved past it when its snapshot reached the sinks."""
    lags, clock = [], -1
    for name, table in items:
        if name in RAW:
            clock = max(clock, pc.max(table["ts_recv_ns"]).as_py())
        elif name == "book_snapshot" and table["symbol"][0].as_py() == QUIET:
            lags += [clock - t for t in table["ts_event_ns"].to_pylist() if quiet[0] < t < quiet[1]]
    return lags


def test_quiet_instrument_follows_the_partition_clock(
        one_partition: tuple[dict[str, pa.Table], tuple[int, int]]) -> None:
    tables, quiet = one_partition
    beats = _run(tables, SECOND)
    lags = _lag_ns(beats, quiet)
    assert len(lags) == QUIET_FOR_S - 1  # the whole seconds strictly inside the silence
    assert max(lags) < 3 * SECOND, lags
    # without heartbeats the same instants wait for ETH's next event: the first one ~9 s
    waited = _lag_ns(_run(tables, None), quiet)
    assert len(waited) == QUIET_FOR_S - 1 and max(waited) > 8 * SECOND
    metrics = gather(beats)["metric"]
    eth = metrics.filter(pc.equal(metrics["symbol"], QUIET))["ts_event_ns"].to_numpy()
    assert int(((eth > quiet[0]) & (eth < quiet[1])).sum()) == QUIET_FOR_S - 1


def test_heartbeat_rows_equal_the_batch_grid(
        one_partition: tuple[dict[str, pa.Table], tuple[int, int]]) -> None:
    tables, _ = one_partition
    live = sorted_rows(gather(_run(tables, SECOND))["book_snapshot"], ("symbol", "ts_event_ns"))
    batch = sorted_rows(l3_book_snapshots(tables["order_event"], levels=10, interval_ns=SECOND),
                        ("symbol", "ts_event_ns"))
    end = max(int(t["ts_recv_ns"].to_numpy().max()) for t in tables.values())
    for symbol in ("SIM-BTCUSDT", QUIET):
        mine = live.filter(pc.equal(live["symbol"], symbol))
        want = batch.filter(pc.equal(batch["symbol"], symbol))
        last = pc.max(want["ts_event_ns"]).as_py()
        head = mine.filter(pc.less_equal(mine["ts_event_ns"], last))
        assert head.equals(want), symbol
        # after the instrument's last event the live grid goes on with the clock: the last book
        tail = mine.filter(pc.greater(mine["ts_event_ns"], last))
        stamps = tail["ts_event_ns"].to_numpy()
        assert np.array_equal(stamps, last + SECOND * np.arange(1, len(stamps) + 1))
        assert (stamps < end).all()
        same = tail.drop_columns(["ts_event_ns"]).to_pylist()
        assert all(r == want.drop_columns(["ts_event_ns"]).to_pylist()[-1] for r in same)


def test_heartbeats_carry_the_partition_watermark() -> None:
    from tapeflow.live.batching import WATERMARK, Heartbeat

    beat = Heartbeat(SECOND)
    trade = ALL_RECORDS["trade"]
    rows = {"ts_event_ns": [1, 2], "ts_recv_ns": [SECOND + 5, 2 * SECOND], "venue": ["v", "v"],
            "symbol": ["A", "B"], "sequence": [1, 2], "trade_id": ["1", "2"], "price_nanos": [1, 1],
            "size_nanos": [1, 1], "aggressor_side": [66, 65], "flags": [0, 0]}
    first = beat.stamp({"trade": trade.table(rows)})
    assert first[WATERMARK].to_pylist() == [{"venue": "v", "symbol": s, "ts_recv_ns": 2 * SECOND}
                                            for s in ("A", "B")]
    later = concat(trade, [trade.table({**rows, "ts_recv_ns": [2 * SECOND, 2 * SECOND]})])
    assert WATERMARK not in beat.stamp({"trade": later})  # no new whole second passed
    status = ALL_RECORDS["status"].empty_table()
    assert WATERMARK not in beat.stamp({"status": status})


@pytest.mark.realdata
def test_heartbeats_keep_parity_on_the_real_capture() -> None:
    path = binance_prefix()
    got: list = []
    source = CaptureSource("binance", [path], batch_events=97, heartbeat_ns=SECOND)
    run_main(build_market_flow(source, MarketSinks(tables=TestingSink(got)), intervals=()))
    want, _ = snapshots_for_format("binance", [path], levels=10, interval_ns=SECOND)
    assert want.num_rows == 84
    assert sorted_rows(gather(got)["book_snapshot"], ("ts_event_ns",)).equals(want)
