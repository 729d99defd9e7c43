"""Per-instrument daily profiles and their rolling baselines over the previous days.

``daily_profile`` summarizes one UTC day of one instrument: traded volume and count, the
distribution of trade sizes (nearest-rank quantiles: exact integers), the mean absolute book
imbalance and the median spread of its metric samples. ``baselines`` compares a day with the
``window_days`` calendar days before it (the day itself excluded), which is what the quality
suite checks counts and volume against.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from tapeflow.book.l2 import instrument_groups
from tapeflow.errors import ConfigError
from tapeflow.schemas.batch import BASELINE, PROFILE, PROFILE_QUANTILES
from tapeflow.schemas.core import concat
from tapeflow.schemas.records import METRIC, TRADE, UNDEF_PRICE

DAY_NS = 86_400_000_000_000
QUANTILES = PROFILE_QUANTILES


def _day_start(day: dt.date | str) -> tuple[int, str]:
    try:
        d = day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day))
    except ValueError as exc:
        raise ConfigError(f"day {day!r} is not a date (YYYY-MM-DD)") from exc
    start = int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    return start, d.isoformat()


def nearest_rank(sorted_values: np.ndarray, pct: int) -> int:
    """The ``pct``-th percentile of ascending values by nearest rank (an element, so exact); -1 if empty."""
    n = len(sorted_values)
    if n == 0:
        return -1
    return int(sorted_values[max((pct * n + 99) // 100 - 1, 0)])


def _in_day(table: pa.Table, start: int) -> pa.Table:
    ts = table.column("ts_event_ns").to_numpy()
    return table.filter(pa.array((ts >= start) & (ts < start + DAY_NS)))


def daily_profile(trades: pa.Table, metrics: pa.Table, day: dt.date | str, *,
                  metric_interval: str = "1s") -> pa.Table:
    """Profile every instrument seen on ``day`` (UTC) in the trades or the metrics.

    Args:
        trades: ``trade`` rows (any days: only those with ``ts_event_ns`` in the day count).
        metrics: ``metric`` rows (any days and intervals: only ``metric_interval`` samples in the day).
        day: the UTC day, a ``date`` or ``YYYY-MM-DD``.
        metric_interval: which metric grid to summarize.

    Returns:
        A ``daily_profile`` table (see :data:`PROFILE`), one row per instrument.

    Raises:
        ConfigError: a bad day.
    """
    start, label = _day_start(day)
    t = _in_day(trades, start) if trades.num_rows else TRADE.empty_table()
    m = _in_day(metrics, start) if metrics.num_rows else METRIC.empty_table()
    m = m.filter(pa.array(m.column("interval").to_numpy(zero_copy_only=False) == metric_interval))
    trows = {(v, s): idx for v, s, idx in instrument_groups(t)}
    mrows = {(v, s): idx for v, s, idx in instrument_groups(m)}
    rows = []
    for venue, symbol in sorted(set(trows) | set(mrows)):
        row: dict[str, object] = {"ts_event_ns": start, "venue": venue, "symbol": symbol, "date": label}
        ti = trows.get((venue, symbol), np.zeros(0, np.int64))
        size = t.column("size_nanos").to_numpy()[ti]
        side = t.column("aggressor_side").to_numpy()[ti]
        ordered = np.sort(size)
        row.update(
            ts_recv_ns=int(t.column("ts_recv_ns").to_numpy()[ti].max()) if len(ti) else -1,
            trade_count=len(ti), volume_nanos=int(size.sum()),
            buy_volume_nanos=int(size[side == ord("B")].sum()),
            sell_volume_nanos=int(size[side == ord("A")].sum()),
            **{f"size_p{q}_nanos": nearest_rank(ordered, q) for q in QUANTILES},
        )
        mi = mrows.get((venue, symbol), np.zeros(0, np.int64))
        imb = m.column("imbalance").to_numpy()[mi]
        imb = np.abs(imb[~np.isnan(imb)])
        spread = m.column("spread_nanos").to_numpy()[mi]
        row.update(
            metric_count=len(mi),
            imbalance_abs_mean=math.fsum(imb.tolist()) / len(imb) if len(imb) else math.nan,
            spread_median_nanos=nearest_rank(np.sort(spread[spread != UNDEF_PRICE]), 50),
        )
        rows.append(row)
    if not rows:
        return PROFILE.empty_table()
    return PROFILE.table({name: [r[name] for r in rows] for name in PROFILE.column_names})


def _std(values: list[int]) -> float:
    if len(values) < 2:
        return math.nan
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _median(values: list[int]) -> int:
    return nearest_rank(np.sort(np.array([v for v in values if v >= 0], np.int64)), 50)


def baselines(profiles: pa.Table, window_days: int = 20, *,
              days: Sequence[dt.date | str] | None = None) -> pa.Table:
    """Rolling baseline of each instrument over the ``window_days`` calendar days before each day.

    Args:
        profiles: ``daily_profile`` rows (many days; one row per instrument and day).
        window_days: how many previous days form the window (the day itself is never in it).
        days: the days to compute baselines for (every instrument in ``profiles``); by default
            every (instrument, day) present in ``profiles``.

    Returns:
        A ``baseline`` table (see :data:`BASELINE`): means and sample standard deviations of
        volume and trade count, medians of the daily size quantiles and spreads, the mean of the
        daily mean |imbalance|; ``days_used`` says how many days were found.

    Raises:
        ConfigError: ``window_days`` < 1, a bad day, or a table that is not ``daily_profile``.
    """
    if window_days < 1:
        raise ConfigError(f"window_days must be >= 1, was {window_days}")
    if profiles.schema.names != PROFILE.column_names:
        raise ConfigError(f"baselines needs a daily_profile table, got columns {profiles.schema.names}")
    by_inst: dict[tuple[str, str], dict[int, dict]] = {}
    for r in profiles.to_pylist():
        by_inst.setdefault((r["venue"], r["symbol"]), {})[r["ts_event_ns"] // DAY_NS] = r
    wanted = None if days is None else [_day_start(d) for d in days]
    rows = []
    for (venue, symbol), hist in sorted(by_inst.items()):
        targets = [(d * DAY_NS, _day_start(dt.date(1970, 1, 1) + dt.timedelta(days=d))[1])
                   for d in sorted(hist)] if wanted is None else wanted
        for start, label in targets:
            today = start // DAY_NS
            past = [hist[d] for d in range(today - window_days, today) if d in hist]
            vols = [p["volume_nanos"] for p in past]
            counts = [p["trade_count"] for p in past]
            imb = [p["imbalance_abs_mean"] for p in past if not math.isnan(p["imbalance_abs_mean"])]
            rows.append({
                "ts_event_ns": start, "ts_recv_ns": max([p["ts_recv_ns"] for p in past], default=-1),
                "venue": venue, "symbol": symbol, "date": label, "window_days": window_days,
                "days_used": len(past),
                "volume_mean_nanos": math.fsum(vols) / len(vols) if vols else math.nan,
                "volume_std_nanos": _std(vols),
                "trade_count_mean": math.fsum(counts) / len(counts) if counts else math.nan,
                "trade_count_std": _std(counts),
                **{f"size_p{q}_median_nanos": _median([p[f"size_p{q}_nanos"] for p in past])
                   for q in QUANTILES},
                "imbalance_abs_mean": math.fsum(imb) / len(imb) if imb else math.nan,
                "spread_median_nanos": _median([p["spread_median_nanos"] for p in past]),
            })
    return concat(BASELINE, [BASELINE.table({n: [r[n] for r in rows] for n in BASELINE.column_names})]
                  if rows else [])
