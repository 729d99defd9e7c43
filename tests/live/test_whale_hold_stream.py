"""The whale's hold check (``whale.max_hold_ticks``) in the live stage: a block or sweep is decided
``hold_ns`` after its print, from the mid on the grid, so prints pend across micro-batches; the
rows must still equal the batch detector's over the whole day."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.schemas.records import ASK, BID, BOOK_SNAPSHOT
from tapeflow.signals import stream as stream_module
from tapeflow.signals import whale
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.detect import _grid_arrays, _tick
from tapeflow.signals.stream import StreamingSignals
from tests.signals.prints import print_table

S = 1_000_000_000
T0 = 1_704_205_800_000_000_000
KEY = [(c, "ascending") for c in ("kind", "side", "ts_event_ns", "detector")]
LEVELS = 3


def _day():
    rng = np.random.default_rng(11)
    n = 800  # 40 min of ordinary prints, one every 3 s: the look-back (blocks of 125) is cut
    ts = list(T0 + np.arange(n) * 3 * S)
    side = list(rng.choice([BID, ASK], n))
    size = list(np.maximum(1, rng.lognormal(np.log(100), 0.3, n)).astype(np.int64))
    price = [10_000] * n
    jumps = []  # (from, ticks): the mid steps there and stays (just after the sweep's print)
    for k, t0 in enumerate(range(120, 2300, 130)):
        at = T0 + t0 * S + S // 2
        ts += [at] * 5
        side += [BID if k % 2 else ASK] * 5
        size += [300] * 5
        price += [10_000 + i for i in range(5)]
        if k % 3 == 0:  # every third sweep is a jump's: the mid moves 5 ticks its way and holds
            jumps.append((at, 5 if k % 2 else -5))
    trades = print_table(ts, price, size, side)
    rows = 2400 * 4  # 40 min of a 250 ms grid
    gts = T0 + np.arange(rows) * (S // 4)
    shift = np.zeros(rows, np.int64)
    for at, ticks in jumps:
        shift[gts > at] += ticks
    k = np.arange(LEVELS)
    bid_p, ask_p = (10_000 + shift)[:, None] - k, (10_001 + shift)[:, None] + k
    sizes = rng.integers(80, 121, (rows, 2, LEVELS))
    grid = BOOK_SNAPSHOT.table({
        "ts_event_ns": gts, "ts_recv_ns": gts + 1000, "sequence": np.arange(rows),
        "levels": np.full(rows, LEVELS, np.uint16), "flags": np.zeros(rows, np.uint8),
        "bid_price_nanos": list(bid_p), "bid_size_nanos": list(sizes[:, 0]),
        "ask_price_nanos": list(ask_p), "ask_size_nanos": list(sizes[:, 1])},
        constants={"venue": "sim", "symbol": "SIMA"})
    return trades, grid, {at for at, _ in jumps}


def _whales(table: pa.Table) -> pa.Table:
    return table.filter(pc.equal(table.column("kind"), "whale")).sort_by(KEY)


def _batch(trades: pa.Table, grid: pa.Table, params: dict) -> pa.Table:
    # what detect_tables runs for whales (its other detectors cost minutes here)
    tr = {c: trades.column(c).to_numpy() for c in
          ("ts_event_ns", "ts_recv_ns", "price_nanos", "size_nanos", "aggressor_side")}
    book = _grid_arrays(grid)
    return _whales(whale.detect(tr, params, "sim", "SIMA", book=book, tick=_tick(book)).table())


@pytest.mark.parametrize("batch_rows", [53])
def test_streaming_whales_with_the_hold_check_equal_the_batch_detector(batch_rows: int, monkeypatch) -> None:
    monkeypatch.setattr(stream_module, "LIVE_DETECTORS", {})
    thresholds = load(DEFAULT_PATH)
    params = thresholds.for_instrument("whale", "SIMA")
    assert params["max_hold_ticks"] > 0
    trades, grid, jumps = _day()
    batch = _batch(trades, grid, params)
    unchecked = _batch(trades, grid, {**params, "max_hold_ticks": 0.0})
    starts = {r["start_ns"] for r in batch.to_pylist() if '"sweep"' in r["evidence"]}
    # the jumps' sweeps are left out; the others alert after their hold, the mid back within a tick
    assert starts == {r["start_ns"] for r in unchecked.to_pylist() if '"sweep"' in r["evidence"]} - jumps
    assert len(starts) >= 8 and len(jumps & {r["start_ns"] for r in unchecked.to_pylist()}) >= 4
    assert all(abs(json.loads(e)["held_ticks"]) <= 1 for e in batch.column("evidence").to_pylist()
               if '"sweep"' in e)
    stream = StreamingSignals("sim", "SIMA")
    gts = grid.column("ts_event_ns").to_numpy()
    parts, sent = [], 0
    for i in range(0, trades.num_rows, batch_rows):
        part = trades.slice(i, batch_rows)
        # the grid rows up to this batch's last trade arrive with it (a batch can end mid-hold)
        upto = int(np.searchsorted(gts, part.column("ts_event_ns")[-1].as_py(), side="right"))
        parts.append(stream.add(part, grid.slice(sent, upto - sent), thresholds))
        sent = upto
    parts.append(stream.add(None, grid.slice(sent), thresholds, final=True))
    live = _whales(pa.concat_tables(parts))
    assert stream.dropped_prints > 0 and stream.dropped_rows > 0  # both look-backs were cut
    assert live.to_pylist() == batch.to_pylist()
