"""Records the batch runtime stores besides the normalized feed: daily profiles, their rolling
baselines, and the vendor's own snapshots and bars (kept apart from the ones the pipeline rebuilds).

Declared here like every other record (one declaration; Arrow schema and ClickHouse DDL derived),
so the lake datasets and ClickHouse tables of the Dagster assets come from ``tapeflow.schemas`` too.
"""

from __future__ import annotations

import dataclasses

from tapeflow.schemas.core import Field, RecordType, common
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT

# nearest-rank trade-size quantiles of a daily profile
PROFILE_QUANTILES = (10, 50, 90, 99)

PROFILE = RecordType(
    "daily_profile",
    common(
        Field("date", "lstr", "UTC day, YYYY-MM-DD (ts_event_ns is its midnight)"),
        Field("trade_count", "i64", "trades with ts_event_ns in the day"),
        Field("volume_nanos", "i64", "traded quantity"),
        Field("buy_volume_nanos", "i64", "buyer-initiated quantity"),
        Field("sell_volume_nanos", "i64", "seller-initiated quantity"),
        *(Field(f"size_p{q}_nanos", "i64", f"{q}th percentile trade size, nearest rank (-1 if no trade)")
          for q in PROFILE_QUANTILES),
        Field("metric_count", "i64", "metric samples in the day"),
        Field("imbalance_abs_mean", "f64", "mean |imbalance| of the samples (NaN if none)"),
        Field("spread_median_nanos", "i64", "median spread of two-sided samples, nearest rank (-1 if none)"),
    ),
    order_by=("venue", "symbol", "ts_event_ns"),
    doc="One instrument's UTC day; ts_recv_ns is the latest capture time of its trades (-1 if none).",
)

BASELINE = RecordType(
    "baseline",
    common(
        Field("date", "lstr", "the UTC day the baseline is for, YYYY-MM-DD (not part of its window)"),
        Field("window_days", "u16", "calendar days looked back"),
        Field("days_used", "i64", "profiles found in the window"),
        Field("volume_mean_nanos", "f64", "mean daily volume (NaN if no day)"),
        Field("volume_std_nanos", "f64", "sample standard deviation of daily volume (NaN if < 2 days)"),
        Field("trade_count_mean", "f64", "mean daily trade count (NaN if no day)"),
        Field("trade_count_std", "f64", "sample standard deviation of daily trade count (NaN if < 2 days)"),
        *(Field(f"size_p{q}_median_nanos", "i64", f"median of the daily p{q} trade sizes (-1 if none)")
          for q in PROFILE_QUANTILES),
        Field("imbalance_abs_mean", "f64", "mean of the daily mean |imbalance| (NaN if none)"),
        Field("spread_median_nanos", "i64", "median of the daily median spreads (-1 if none)"),
    ),
    order_by=("venue", "symbol", "ts_event_ns"),
    doc="Rolling per-instrument baseline; ts_event_ns is the midnight of ``date``.",
)

# A vendor's own book snapshots and bars (Databento MBP-10, OHLCV) keep the record's columns under
# another dataset name, so they never mix with the snapshots and bars rebuilt from the events.
VENDOR_BOOK_SNAPSHOT = dataclasses.replace(
    BOOK_SNAPSHOT, name="vendor_book_snapshot",
    doc="Top N levels as the vendor published them (e.g. MBP-10).")
VENDOR_BAR = dataclasses.replace(
    BAR, name="vendor_bar", doc="Bars as the vendor published them (e.g. OHLCV).")

BATCH_RECORDS: dict[str, RecordType] = {
    r.name: r for r in (PROFILE, BASELINE, VENDOR_BOOK_SNAPSHOT, VENDOR_BAR)
}
