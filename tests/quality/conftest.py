"""A clean simulated market day (3 minutes, one instrument) and its derived tables, built once."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pytest

from quality import Baseline
from tapeflow.book.l2 import quotes_from_deltas
from tapeflow.book.l3 import l3_book_snapshots
from tapeflow.derived import metrics
from tapeflow.derived.bars import time_bars
from tapeflow.schemas.records import SCALE
from tapeflow.simulator import simulate
from tapeflow.venues import get_format
from tapeflow.venues.base import merge

DAY = "2024-01-01"
START_NS = 1_704_067_200 * SCALE + 3_600 * SCALE  # 01:00 UTC, so a shifted row stays inside the day


@dataclass
class SimDay:
    trades: pa.Table
    order_events: pa.Table
    book_deltas: pa.Table
    quotes: pa.Table
    snapshots: pa.Table
    bars: pa.Table
    metrics: pa.Table

    def table(self, dataset: str) -> pa.Table:
        return getattr(self, "snapshots" if dataset == "book_snapshots" else dataset)


@pytest.fixture(scope="session")
def sim_day(tmp_path_factory: pytest.TempPathFactory) -> SimDay:
    out = tmp_path_factory.mktemp("quality_sim")
    summary = simulate(11, 1, 180 * SCALE, out, start_ns=START_NS, progress=False)
    tables = merge(list(get_format("sim").decode(summary.files)))
    trades = tables["trade"]
    snapshots = l3_book_snapshots(tables["order_event"], levels=10, interval_ns=SCALE)
    quotes = quotes_from_deltas(tables["book_delta"])
    return SimDay(
        trades=trades,
        order_events=tables["order_event"],
        book_deltas=tables["book_delta"],
        quotes=quotes,
        snapshots=snapshots,
        bars=pa.concat_tables([time_bars(trades, "1s"), time_bars(trades, "1m")]),
        metrics=metrics(snapshots, quotes, trades, interval="1s"),
    )


def steady_baseline(rows: int, volume_nanos: int = 0, days: int = 20) -> Baseline:
    """A trailing baseline whose days scatter +-2% around ``rows`` / ``volume_nanos`` (z of those is ~0)."""
    wiggle = [1 + 0.01 * ((i % 5) - 2) for i in range(days)]
    return Baseline(row_counts=[round(rows * w) for w in wiggle],
                    volumes_nanos=[round(volume_nanos * w) for w in wiggle] if volume_nanos else [])
