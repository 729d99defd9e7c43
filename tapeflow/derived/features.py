"""Features for the batch runtime: metrics on several grids at once (the Dagster ``features`` asset)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from tapeflow.derived.bars import interval_ns
from tapeflow.derived.metrics import metrics
from tapeflow.errors import ConfigError
from tapeflow.schemas.core import concat
from tapeflow.schemas.records import METRIC


def features(snapshots: pa.Table, quotes: pa.Table, trades: pa.Table, *,
             intervals: Sequence[str] = ("1s", "1m"), levels: int = 10) -> pa.Table:
    """Metrics (spread, depth, imbalance, microprice, OFI, CVD, realized volatility) per interval.

    Each interval samples the snapshots at its own instants: the rows whose time is a multiple of
    the interval, so ``1m`` features come from the same 1 s snapshots as ``1s`` ones and sum the
    quotes and trades of the whole minute (OFI, realized volatility over the minute's BBO changes).

    Args:
        snapshots: ``book_snapshot`` rows on the finest interval's grid.
        quotes: ``quote`` rows (BBO after each book event) in arrival order.
        trades: ``trade`` rows in arrival order.
        intervals: grids, ``<n><s|m|h|d>``; each must be a multiple of the first.
        levels: depth levels per side.

    Returns:
        One ``metric`` table, the ``interval`` column telling the grids apart.

    Raises:
        ConfigError: no interval, or one that is not a multiple of the finest.
    """
    if not intervals:
        raise ConfigError("features needs at least one interval")
    steps = [interval_ns(i) for i in intervals]
    finest = min(steps)
    odd = [i for i, s in zip(intervals, steps, strict=True) if s % finest]
    if odd:
        base = intervals[steps.index(finest)]
        raise ConfigError(f"feature intervals {odd} are not multiples of the finest, {base}")
    grid = snapshots.column("ts_event_ns").to_numpy()
    parts = []
    for interval, step in zip(intervals, steps, strict=True):
        sub = snapshots if step == finest else snapshots.filter(pa.array(grid % step == 0))
        parts.append(metrics(sub, quotes, trades, interval=interval, levels=levels))
    return concat(METRIC, parts)
