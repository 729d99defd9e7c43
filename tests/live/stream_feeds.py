"""Helpers of the live-detector parity tests: a simulated market's batch rows and the same day cut
into the ``Feed`` batches a registered live detector gets, at any cut size."""

from __future__ import annotations

import atexit
import functools
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.schemas.core import concat
from tapeflow.schemas.records import SIGNAL, TRADE
from tapeflow.signals.config import Thresholds
from tapeflow.signals.detect import _grid_arrays, grid_and_levels
from tapeflow.signals.stream import Feed

KEY = [(c, "ascending") for c in ("kind", "side", "ts_event_ns", "price_nanos", "detector")]
TRADE_COLS = ("ts_event_ns", "ts_recv_ns", "price_nanos", "size_nanos", "aggressor_side")


@functools.cache
def overlap_day() -> tuple[list[Path], pa.Table]:
    """A simulated crypto market with planted episodes in overlap mode (seed 4242, 15 minutes, 12
    episodes an hour) and every signal ``tapeflow signals detect`` finds in it, with the default
    thresholds. Built once per process: the absorption and composite parity tests read the same day,
    and neither changes it."""
    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.signals.detect import detect_format
    from tapeflow.simulator import simulate

    root = Path(tempfile.mkdtemp(prefix="tapeflow-overlap-day-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    summary = simulate(4242, 1, 15 * 60 * 1_000_000_000, root, "crypto", progress=False,
                       episodes_per_hour=12, overlap=True)
    paths = sorted(summary.files)
    return paths, detect_format("sim", paths, load(DEFAULT_PATH))


def of_kind(table: pa.Table, kind: str) -> pa.Table:
    """The rows of one kind, in a fixed order."""
    return table.filter(pc.equal(table.column("kind"), kind)).sort_by(KEY)


def day_arrays(format_name: str, paths: list[Path], thresholds: Thresholds
               ) -> tuple[pa.Table, pa.Table, dict[str, np.ndarray]]:
    """The day's trades and rebuilt grid as ``detect_format`` makes them: (trades, snapshots, the
    grid arrays with the snapshots' ``sequence`` as ``seq``)."""
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.wire.capture import merge

    grid_ns, levels = grid_and_levels(thresholds)
    chunks: list = []
    snapshots, _ = snapshots_for_format(format_name, paths, levels=levels, interval_ns=grid_ns,
                                        on_chunk=chunks.append)
    trades = merge(chunks).get(TRADE.name, TRADE.empty_table())
    grid = _grid_arrays(snapshots)
    grid["seq"] = snapshots.column("sequence").to_numpy()
    return trades, snapshots, grid


def feeds(trades: pa.Table, grid: dict[str, np.ndarray], thresholds: Thresholds, rows_per_batch: int, *,
          tick: int) -> Iterator[Feed]:
    """The day as micro-batches of ``rows_per_batch`` grid rows, each with the trades received up
    to its last row (what the flow's book stage hands on with them); a last, final batch."""
    recv = trades.column("ts_recv_ns").to_numpy()
    n = len(grid["ts"])
    done = 0
    for lo in range(0, n, rows_per_batch):
        hi = min(n, lo + rows_per_batch)
        upto = int(np.searchsorted(recv, grid["recv"][hi - 1], side="right")) if hi < n else len(recv)
        upto = max(upto, done)
        yield Feed(trades.slice(done, upto - done), {k: v[lo:hi] for k, v in grid.items()}, None, tick,
                   thresholds, False)
        done = upto
    yield Feed(None, None, None, tick, thresholds, True)


def run_live(make: Callable[[], Any], batches: Iterator[Feed]) -> tuple[pa.Table, Any]:
    """A live detector fed ``batches``, pickled and restored half way (a recovery snapshot):
    (its rows, the detector at the end)."""
    batches = list(batches)
    detector = make()
    out = []
    for i, feed in enumerate(batches):
        if i == len(batches) // 2:
            detector = pickle.loads(pickle.dumps(detector))
        out += detector.add(feed)
    return concat(SIGNAL, out), detector
