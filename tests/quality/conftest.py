"""A clean simulated market day (3 minutes, one instrument) and its derived tables, built once."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pytest

from quality import Baseline
from tapeflow.bars import time_bars
from tapeflow.book import quotes_from_deltas
from tapeflow.book_l3 import l3_book_snapshots
from tapeflow.schemas.records import METRIC, SCALE
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
    return SimDay(
        trades=trades,
        order_events=tables["order_event"],
        book_deltas=tables["book_delta"],
        quotes=quotes_from_deltas(tables["book_delta"]),
        snapshots=snapshots,
        bars=pa.concat_tables([time_bars(trades, "1s"), time_bars(trades, "1m")]),
        metrics=metrics_from_snapshots(snapshots),
    )


def metrics_from_snapshots(snaps: pa.Table) -> pa.Table:
    """METRIC rows computed here from snapshot lists (a stand-in for the derived room's metrics)."""
    rows = []
    for r in snaps.to_pylist():
        bid, ask = r["bid_price_nanos"][0], r["ask_price_nanos"][0]
        bsz, asz = r["bid_size_nanos"][0], r["ask_size_nanos"][0]
        bd, ad = sum(r["bid_size_nanos"]), sum(r["ask_size_nanos"])
        rows.append({
            "ts_event_ns": r["ts_event_ns"], "ts_recv_ns": r["ts_recv_ns"], "venue": r["venue"],
            "symbol": r["symbol"], "interval": "1s", "sequence": r["sequence"],
            "mid_price_nanos": (bid + ask) // 2, "spread_nanos": ask - bid,
            "spread_bps": (ask - bid) / ((bid + ask) / 2) * 1e4,
            "microprice_nanos": (bid * asz + ask * bsz) // (bsz + asz),
            "bid_depth_nanos": bd, "ask_depth_nanos": ad, "imbalance": (bd - ad) / (bd + ad),
            "ofi_nanos": 0, "cvd_nanos": 0, "realized_vol": float("nan"), "flags": r["flags"],
        })
    return METRIC.table({k: [row[k] for row in rows] for k in METRIC.column_names})


def steady_baseline(rows: int, volume_nanos: int = 0, days: int = 20) -> Baseline:
    """A trailing baseline whose days scatter +-2% around ``rows`` / ``volume_nanos`` (z of those is ~0)."""
    wiggle = [1 + 0.01 * ((i % 5) - 2) for i in range(days)]
    return Baseline(row_counts=[round(rows * w) for w in wiggle],
                    volumes_nanos=[round(volume_nanos * w) for w in wiggle] if volume_nanos else [])
