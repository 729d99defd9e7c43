"""Every bar kind of one instrument-day, with volume and dollar bars sized from the trailing days.

Time bars in the live flow's 15 frames (``tapeflow.derived.bars.STANDARD_INTERVALS``), tick bars
of :data:`TICK_BAR_TRADES` trades, and volume and dollar bars whose thresholds come from
:func:`bar_thresholds`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.batch import history
from tapeflow.batch.targets import Target
from tapeflow.derived.bars import STANDARD_INTERVALS, dollar_bars, tick_bars, time_bars, volume_bars
from tapeflow.schemas import concat
from tapeflow.schemas.records import BAR, SCALE

TICK_BAR_TRADES = 100
# volume and dollar bars are sized to about this many bars on a typical day (see bar_thresholds)
THRESHOLD_BARS_PER_DAY = 100
# as many history days as the baseline checks want before they judge a day
BASELINE_MIN_DAYS = 5


@dataclasses.dataclass(frozen=True)
class BarThresholds:
    """Volume and dollar bar sizes of one instrument-day, and where they came from.

    Attributes:
        volume_nanos: volume bar threshold (0: no volume bars, nothing traded).
        notional_nanos: dollar bar threshold in the price currency, 1e-9 units (0: none).
        source: ``baseline`` (the mean day of the trailing window) or ``day`` (the day itself).
        baseline_days: days of history found in the window.
    """

    volume_nanos: int
    notional_nanos: int
    source: str
    baseline_days: int


def bar_thresholds(lake: Path, t: Target, trades: pa.Table, *,
                   min_days: int = BASELINE_MIN_DAYS) -> BarThresholds:
    """Size volume and dollar bars to about ``THRESHOLD_BARS_PER_DAY`` bars on a typical day.

    With at least ``min_days`` days of history among the ``history.WINDOW_DAYS`` before ``t``
    (daily profiles in the lake), the thresholds are the history's mean daily volume and mean
    daily notional (``volume x vwap`` of each day's ``1d`` bar) over ``THRESHOLD_BARS_PER_DAY``:
    a busy day then gets more bars than a quiet one, as information-driven bars should, and the
    threshold does not move with the day being sized. Without that history they come from the
    day's own volume and notional (every day gets ~100 bars).
    """
    days = history.profiles(lake, t)
    volumes = [v for _, v in days]
    if len(volumes) >= min_days and sum(volumes) > 0:
        notionals = [history.daily_notional_nanos(lake, day) for day, _ in days]
        bars_in_window = len(volumes) * THRESHOLD_BARS_PER_DAY
        return BarThresholds(_per_bar(sum(volumes), bars_in_window), _per_bar(sum(notionals), bars_in_window),
                             "baseline", len(volumes))
    size = trades.column("size_nanos").to_numpy()
    price = trades.column("price_nanos").to_numpy()
    # exact: a price times a size overflows int64, so the products are Python integers
    notional = int(np.dot(price.astype(object), size.astype(object))) // SCALE if len(price) else 0
    return BarThresholds(_per_bar(int(size.sum()), THRESHOLD_BARS_PER_DAY),
                         _per_bar(notional, THRESHOLD_BARS_PER_DAY), "day", len(volumes))


def _per_bar(total: int, bars: int) -> int:
    # at least 1 unit once anything traded: a tiny day still gets bars; 0 means none
    return max(1, total // bars) if total > 0 else 0


def day_bars(trades: pa.Table, sizing: BarThresholds) -> pa.Table:
    """Every bar kind of one instrument-day's trades.

    Time bars in ``STANDARD_INTERVALS``, tick bars of ``TICK_BAR_TRADES`` trades, and volume and
    dollar bars of the thresholds in ``sizing`` (:func:`bar_thresholds`); a threshold is in the
    interval text (``volume:<nanos>``), and re-running the day gives the same bars.
    """
    parts = [time_bars(trades, i) for i in STANDARD_INTERVALS]
    if trades.num_rows:
        parts.append(tick_bars(trades, TICK_BAR_TRADES))
        if sizing.volume_nanos > 0:
            parts.append(volume_bars(trades, sizing.volume_nanos))
        if sizing.notional_nanos > 0:
            parts.append(dollar_bars(trades, sizing.notional_nanos))
    return concat(BAR, parts)


def per_interval(table: pa.Table) -> dict[str, int]:
    """Bars per interval text."""
    if not table.num_rows:
        return {}
    counts = pc.value_counts(table.column("interval").combine_chunks()).to_pylist()
    return {str(v["values"]): int(v["counts"]) for v in counts}
