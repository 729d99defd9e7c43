"""The trailing days in the lake that baselines, bar sizes and baseline checks compare a day with."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.batch.targets import Target
from tapeflow.schemas import RecordType
from tapeflow.schemas.batch import PROFILE
from tapeflow.schemas.records import BAR, SCALE
from tapeflow.storage import lake as lake_store

# the calendar days before a day that its baseline looks at
WINDOW_DAYS = 20


def profiles(lake: Path, t: Target, days: int = WINDOW_DAYS) -> list[tuple[Target, int]]:
    """(day, traded volume) of each ``daily_profile`` partition among the ``days`` days before ``t``."""
    out = []
    for day in t.history(days):
        profile = lake_store.read(PROFILE, lake, venue=day.venue, symbol=day.symbol, date=day.date)
        if profile.num_rows:
            out.append((day, int(profile.column("volume_nanos")[0].as_py())))
    return out


def profile_tables(lake: Path, t: Target, days: int = WINDOW_DAYS) -> list[pa.Table]:
    """The ``daily_profile`` rows of the ``days`` days before ``t`` (empty tables where none)."""
    return [lake_store.read(PROFILE, lake, venue=d.venue, symbol=d.symbol, date=d.date)
            for d in t.history(days)]


def daily_notional_nanos(lake: Path, day: Target) -> int:
    """Traded notional of one day from its ``1d`` bar (``volume x vwap``; 0 without one), 1e-9 units."""
    bars = lake_store.read(BAR, lake, venue=day.venue, symbol=day.symbol, date=day.date)
    daily = bars.filter(pc.equal(bars.column("interval"), "1d"))
    return sum(int(v) * int(p) for v, p in zip(daily.column("volume_nanos").to_pylist(),
                                               daily.column("vwap_price_nanos").to_pylist(),
                                               strict=True)) // SCALE


def row_counts(lake: Path, record: RecordType, t: Target, days: int = WINDOW_DAYS
               ) -> tuple[list[int], list[int]]:
    """Rows per day of ``record`` over the ``days`` days before ``t`` (days with a partition; read
    from the Parquet footers), and the traded volume of the same days from their profiles (empty
    unless every one of them has a profile)."""
    rows, volumes = [], []
    for day in t.history(days):
        count = lake_store.partition_rows(record, lake, day.venue, day.symbol, day.date)
        if count is not None:
            rows.append(count)
            profile = lake_store.read(PROFILE, lake, venue=day.venue, symbol=day.symbol, date=day.date)
            if profile.num_rows:
                volumes.append(int(profile.column("volume_nanos")[0].as_py()))
    return rows, volumes if len(volumes) == len(rows) else []
