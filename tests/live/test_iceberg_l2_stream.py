"""The L2 iceberg live (``tapeflow.signals.stream_iceberg_l2``) equals the batch, row for row: the
simulator's level view (the book rebuilt on the grid and the trades, no order ids: the route a
price-level venue's input takes through ``tapeflow signals detect``) with planted icebergs, overlap
mode, 15 minutes (the look-back keeps about 30 s), fed at three cut sizes with a recovery snapshot
(pickle) half way; the Binance USD-M capture (real, L2) through the flow's signals stage; and the
rule that an instrument with order ids gets no L2 iceberg."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.signals import iceberg_l2, stream
from tapeflow.signals.config import DEFAULT_PATH, Thresholds, load
from tapeflow.signals.detect import _tick, detect_tables
from tapeflow.signals.stream_iceberg_l2 import StreamingIcebergL2
from tests.live.stream_feeds import TRADE_COLS, day_arrays, feeds, of_kind, run_live

S = 1_000_000_000
SYMBOL = "SIM-AAA"


@pytest.fixture(scope="module")
def level_view(tmp_path_factory: pytest.TempPathFactory):
    from tapeflow.simulator import simulate

    root = tmp_path_factory.mktemp("icebergl2sim")
    summary = simulate(5151, 1, 15 * 60 * S, root, "equity", progress=False, episodes_per_hour=16,
                       overlap=True)
    thresholds = load(DEFAULT_PATH)
    trades, snapshots, grid = day_arrays("sim", sorted(summary.files), thresholds)
    batch = of_kind(detect_tables(trades, snapshots, thresholds), "iceberg")
    return trades, grid, batch, snapshots


@pytest.mark.parametrize("rows_per_batch", [23, 211, 1500])
def test_l2_icebergs_over_cuts_of_the_level_view_equal_the_batch(level_view, rows_per_batch: int) -> None:
    trades, grid, batch, _ = level_view
    symbol = trades.column("symbol")[0].as_py()
    thresholds = load(DEFAULT_PATH)
    live, detector = run_live(lambda: StreamingIcebergL2("sim", symbol),
                              feeds(trades, grid, thresholds, rows_per_batch, tick=_tick(grid)))
    print(f"{rows_per_batch} rows per batch: batch {batch.num_rows} L2 icebergs, live {live.num_rows}; "
          f"look-back from row {detector.first_row}, {len(detector.grid['ts'])} kept of {len(grid['ts'])}")
    assert set(batch.column("detector").to_pylist()) == {"iceberg_l2/1"}
    assert batch.num_rows >= 2, "the simulated day has too few L2 icebergs to compare"
    assert detector.first_row > 0  # the look-back was cut
    # bounded: the chain gap (30 s of 100 ms rows), the look-ahead and the batch not yet judged
    assert len(detector.grid["ts"]) <= 300 + 12 + rows_per_batch
    assert of_kind(live, "iceberg").to_pylist() == batch.to_pylist()


class _Loose:
    """The default thresholds with a looser L2 iceberg (two refills of any size make a chain): the
    real capture has no alert at the defaults, and parity holds at any thresholds."""

    def __init__(self, base: Thresholds) -> None:
        self.base = base

    def __getattr__(self, name: str) -> object:
        if name == "base":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.base, name)

    def for_instrument(self, name: str, symbol: str, preset: str | None = None) -> dict:
        params = self.base.for_instrument(name, symbol, preset)
        if name == "iceberg_l2":
            params = {**params, "min_refills": 2, "min_hidden_x_shown": 0.0, "mm_window_ns": 0,
                      "refractory_ns": 5 * S}
        return params


def _binance() -> list[Path]:
    root = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data"))
    path = root / "binance" / "usdm_btcusdt_20240808.gz"
    if not path.is_file():
        pytest.skip(f"the Binance USD-M capture is absent at {path} (TAPEFLOW_REAL_DATA)")
    return [path]


def test_l2_icebergs_live_equal_the_batch_on_the_binance_capture() -> None:
    paths = _binance()
    loose = _Loose(load(DEFAULT_PATH))
    trades, _, grid = day_arrays("binance", paths, loose)  # type: ignore[arg-type]
    venue, symbol = trades.column("venue")[0].as_py(), trades.column("symbol")[0].as_py()
    tr = {c: trades.column(c).to_numpy() for c in TRADE_COLS}
    params = loose.for_instrument("iceberg_l2", symbol)
    # the call detect_tables makes for an instrument without order ids (the whole suite: minutes)
    batch = of_kind(iceberg_l2.detect(tr, grid, params, venue, symbol).table(), "iceberg")
    live, detector = run_live(lambda: StreamingIcebergL2(venue, symbol),
                              feeds(trades, grid, loose, 97, tick=_tick(grid)))  # type: ignore[arg-type]
    print(f"Binance: {len(grid['ts'])} grid rows, batch {batch.num_rows} L2 icebergs, live {live.num_rows}")
    assert batch.num_rows >= 3, "the loosened L2 iceberg should alert on the real capture"
    assert detector.first_row > 0
    assert of_kind(live, "iceberg").to_pylist() == batch.to_pylist()


def test_l2_icebergs_through_the_stage_equal_the_batch(level_view, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage's per-instrument core (``StreamingSignals``) fed the level view (trades and grid
    snapshots, no order events) 600 rows at a time, with a pickle round trip half way."""
    trades, _, batch, snapshots = level_view
    monkeypatch.setattr(stream, "LIVE_DETECTORS", {"iceberg_l2": stream.LIVE_DETECTORS["iceberg_l2"]})
    thresholds = load(DEFAULT_PATH)
    symbol = trades.column("symbol")[0].as_py()
    core = stream.StreamingSignals("sim", symbol)
    recv = trades.column("ts_recv_ns").to_numpy()
    parts, done, n = [], 0, snapshots.num_rows
    for i, lo in enumerate(range(0, n, 600)):
        if i == n // 1200:
            core = pickle.loads(pickle.dumps(core))
        snaps = snapshots.slice(lo, 600)
        upto = int(np.searchsorted(recv, snaps.column("ts_recv_ns")[-1].as_py(), side="right"))
        parts.append(core.add(trades.slice(done, upto - done), snaps, thresholds))
        done = upto
    parts.append(core.add(trades.slice(done), None, thresholds, final=True))
    live = of_kind(pa.concat_tables(parts), "iceberg")
    assert batch.num_rows >= 2
    assert live.to_pylist() == batch.to_pylist()


def test_an_instrument_with_order_ids_gets_no_l2_iceberg(level_view) -> None:
    trades, grid, _, _ = level_view
    detector = StreamingIcebergL2("sim", SYMBOL)
    events = pa.table({"order_id": [1]})
    thresholds = load(DEFAULT_PATH)
    out = []
    for i, feed in enumerate(feeds(trades, grid, thresholds, 900, tick=_tick(grid))):
        out += detector.add(feed if i else stream.Feed(feed.trades, feed.grid, events, feed.tick,
                                                       feed.thresholds, feed.final))
    assert out == [] and detector.grid is None
