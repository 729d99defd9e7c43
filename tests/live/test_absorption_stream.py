"""Absorption live (``tapeflow.signals.stream_absorption``) equals ``tapeflow signals detect``, row
for row: a simulated crypto market with planted absorption episodes (overlap mode), 15 minutes,
longer than the look-back (8 baseline blocks of 30 s), fed through the flow's signals stage and
straight to the detector at three cut sizes, each with a recovery snapshot (pickle) half way; and
LOBSTER AMZN (a real day with absorption alerts) in cuts of its rebuilt grid."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.signals import absorption, stream
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.detect import _tick
from tapeflow.signals.stream import LiveSignals
from tapeflow.signals.stream_absorption import StreamingAbsorption
from tests.live.stream_feeds import TRADE_COLS, day_arrays, feeds, of_kind, overlap_day, run_live

S = 1_000_000_000
SYMBOL = "SIM-BTCUSDT"


@pytest.fixture(scope="module")
def day() -> tuple[list[Path], pa.Table]:
    # the day tests/live/test_composite_stream.py reads too: simulated and detected once per process
    paths, every = overlap_day()
    return paths, of_kind(every, "absorption")


def test_absorption_through_the_signals_stage_equals_detect(day, monkeypatch: pytest.MonkeyPatch) -> None:
    from tapeflow.live.batching import cut_batches
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    paths, batch = day
    # only this detector beside the stage's own (whale, withdrawal): the others have their tests
    monkeypatch.setattr(stream, "LIVE_DETECTORS", {"absorption": stream.LIVE_DETECTORS["absorption"]})
    stage = LiveSignals(DEFAULT_PATH)
    batches = list(cut_batches(merge(list(get_format("sim").decode(paths))), 4000, None))
    parts = []
    for i, b in enumerate(batches):
        if i == len(batches) // 2:
            stage = pickle.loads(pickle.dumps(stage))  # a Bytewax recovery snapshot mid-stream
        parts.append(stage.apply("sim", SYMBOL, b))
    parts.append(stage.close())
    live = of_kind(pa.concat_tables(parts), "absorption")
    detector = stage.stream.detectors["absorption"]
    print(f"{len(batches)} batches: batch {batch.num_rows} absorption rows, live {live.num_rows}; "
          f"look-back from grid row {detector.first_row}, {len(detector.grid['ts'])} rows kept")
    assert batch.num_rows >= 2, "the simulated day has too few absorption alerts to compare"
    assert detector.first_row > 0  # the look-back was cut
    assert live.to_pylist() == batch.to_pylist()


@pytest.fixture(scope="module")
def arrays(day) -> tuple[pa.Table, dict]:
    trades, _, grid = day_arrays("sim", day[0], load(DEFAULT_PATH))
    return trades, grid


@pytest.mark.parametrize("rows_per_batch", [29, 160, 1333])
def test_absorption_over_cuts_of_the_grid_equals_detect(day, arrays, rows_per_batch: int) -> None:
    batch = day[1]
    thresholds = load(DEFAULT_PATH)
    trades, grid = arrays
    live, detector = run_live(lambda: StreamingAbsorption("sim", SYMBOL),
                              feeds(trades, grid, thresholds, rows_per_batch, tick=_tick(grid)))
    print(f"{rows_per_batch} rows per batch: {live.num_rows} rows; look-back from row {detector.first_row}, "
          f"{len(detector.grid['ts'])} kept of {len(grid['ts'])}")
    assert detector.first_row > 0
    # bounded: the 8 baseline blocks, the one filling and one more for the cut's rounding
    assert len(detector.grid["ts"]) <= 10 * 300 + rows_per_batch
    assert of_kind(live, "absorption").to_pylist() == batch.to_pylist()


def _amzn() -> list[Path]:
    root = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data")) / "lobster"
    folder = root / "LOBSTER_SampleFile_AMZN_2012-06-21_1"
    files = sorted(folder.glob("AMZN_2012-06-21_*_1.csv")) if folder.is_dir() else []
    if len(files) != 2:
        pytest.skip(f"LOBSTER AMZN message and orderbook files absent under {folder} (TAPEFLOW_REAL_DATA)")
    return files


def test_absorption_live_equals_batch_on_lobster_amzn() -> None:
    files = _amzn()
    thresholds = load(DEFAULT_PATH)
    trades, _, grid = day_arrays("lobster", files, thresholds)
    symbol = trades.column("symbol")[0].as_py()
    venue = trades.column("venue")[0].as_py()
    tick = _tick(grid)
    tr = {c: trades.column(c).to_numpy() for c in TRADE_COLS}
    params = thresholds.for_instrument("absorption", symbol, None)
    # the call detect_tables makes for this instrument (the whole suite would take minutes)
    batch = of_kind(absorption.detect(grid, tr, tick, params, venue, symbol).table(), "absorption")
    live, detector = run_live(lambda: StreamingAbsorption(venue, symbol),
                              feeds(trades, grid, thresholds, 4096, tick=tick))
    print(f"AMZN: {len(grid['ts'])} grid rows, batch {batch.num_rows} absorption rows, live {live.num_rows}")
    assert batch.num_rows == 2  # docs/signals.md: two absorption alerts on the AMZN day
    assert len(detector.grid["ts"]) <= 10 * 300 + 4096
    assert of_kind(live, "absorption").to_pylist() == batch.to_pylist()


def test_a_run_longer_than_the_look_back_keeps_its_peak_and_length() -> None:
    """A bid held at one price for 6 minutes (past the look-back of 8 blocks of 30 s), which
    showed its peak size only in its first second, absorbs a push at the end: the alert needs the
    peak and the run's length from before the look-back, which the detector carries."""
    from tapeflow.schemas.records import ASK

    thresholds = load(DEFAULT_PATH)
    n, px = 3600, 100 * 10**9
    ts = 1_700_000_000 * S + np.arange(n, dtype=np.int64) * 100_000_000
    grid = {"ts": ts, "recv": ts + 1_000, "flags": ts * 0,
            "bid_p": (ts * 0 + px).reshape(-1, 1), "bid_s": (ts * 0 + 10).reshape(-1, 1),
            "ask_p": (ts * 0 + px + 10**9).reshape(-1, 1), "ask_s": (ts * 0 + 10).reshape(-1, 1)}
    grid["bid_s"][5:15] = 400  # the defender shows itself once, at the start
    rows = list(range(3500, 3520))
    trades = pa.table({"ts_event_ns": [int(ts[r]) - 50_000_000 for r in rows],
                       "ts_recv_ns": [int(ts[r]) - 50_000_000 for r in rows],
                       "price_nanos": [px] * len(rows), "size_nanos": [10] * len(rows),
                       "aggressor_side": pa.array([ASK] * len(rows), pa.uint8())})
    tr = {c: trades.column(c).to_numpy() for c in TRADE_COLS}
    params = thresholds.for_instrument("absorption", "X", "crypto")
    batch = absorption.detect(grid, tr, 10**9, params, "sim", "X").table()
    assert batch.num_rows == 1  # the construction alerts in the batch detector
    live, detector = run_live(lambda: StreamingAbsorption("sim", "X", "crypto"),
                              feeds(trades, grid, thresholds, 250, tick=10**9))
    assert detector.first_row > 0  # the run's start and peak lie before the look-back
    assert live.to_pylist() == batch.to_pylist()
