"""Bars: schema, keys, prices, OHLC consistency, volumes, alignment, day, baselines."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.derived.bars import interval_ns
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import BAR

RECORD = BAR
CHECKS = (
    "schema",
    "not_null_keys",
    "price_range",
    "ohlc_consistent",
    "size_range",
    "bar_aligned",
    "ts_within_day",
    "rows_vs_baseline",
    "volume_vs_baseline",
)
_PRICES = ("open_price_nanos", "high_price_nanos", "low_price_nanos", "close_price_nanos", "vwap_price_nanos")


def plan(d: SuiteData) -> None:
    """Plan the bar checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d, ("interval",))
    every = np.ones(d.table.num_rows, bool)
    checks.price_range(d, {p: (d.col(p), every, True) for p in _PRICES})
    o, h, low, c, vwap = (d.col(p) for p in _PRICES)
    inconsistent = (low > np.minimum(o, c)) | (h < np.maximum(o, c)) | (vwap < low) | (vwap > h)
    checks.flag_false(d, "ohlc_consistent", "low <= open, close, vwap <= high", inconsistent)
    volume, buy, sell = d.col("volume_nanos"), d.col("buy_volume_nanos"), d.col("sell_volume_nanos")
    # buy and sell need not add up to the volume: trades of unknown aggressor count in neither
    checks.size_range(d, {"volume_nanos": (volume, every, 1), "trade_count": (d.col("trade_count"), every, 1),
                          "unsigned_volume_nanos": (volume - buy - sell, every, 0)})
    steps = _steps(d.table.column("interval").to_pylist())
    step = np.array([steps[i] for i in d.table.column("interval").to_pylist()], np.int64)
    timed = step > 0
    offset = np.where(timed, d.col("ts_event_ns") % np.maximum(step, 1), 0)
    checks.flag_false(d, "bar_aligned", "time bars open on a multiple of their interval (UTC epoch)",
                      offset != 0)
    checks.ts_within_day(d, derive.partition_ts(d.table))
    finest, rows = finest_rows(d.table)
    checks.vs_baseline(d, "rows_vs_baseline", checks.totals_by_instrument(d.codes[rows]), "row_counts")
    checks.vs_baseline(d, "volume_vs_baseline", checks.totals_by_instrument(d.codes[rows], volume[rows]),
                       "volumes_nanos")
    d.checks[-1].details["interval"] = finest
    d.checks[-2].details["interval"] = finest


def _steps(intervals: list[str]) -> dict[str, int]:
    """Length of each time interval in ns; 0 for tick/volume/dollar bars (no grid)."""
    out = {}
    for name in set(intervals):
        try:
            out[name] = interval_ns(name)
        except ConfigError:
            out[name] = 0
    return out


def finest_rows(table: pa.Table) -> tuple[str | None, np.ndarray]:
    """The finest time interval present and its rows: each interval counts the same trades, so the
    day's totals are summed over one of them."""
    intervals = table.column("interval").to_pylist()
    steps = _steps(intervals)
    timed = sorted((s, n) for n, s in steps.items() if s > 0)
    finest = timed[0][1] if timed else (sorted(steps)[0] if steps else None)
    return finest, np.array([i == finest for i in intervals], bool)
