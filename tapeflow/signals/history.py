"""One stored instrument-day's detector inputs, and the institutional baseline of the days before it.

The Dagster ``signals`` asset judges one day per partition. Institutional pressure needs the
20-day baseline the live stage keeps (one file per day,
``<lake>/_baselines/institutional/<venue>/<symbol>/<date>.json``,
:class:`tapeflow.signals.stream_institutional.BaselineStore`): :func:`institutional_history`
gives the records of the up to ``baseline_days`` days **before** the partition's day only (never the day
itself or a later one: no look-ahead), each from the store where it holds the day (for the
thresholds' ``bucket_ns`` and ``window_ns``), else computed from that day's partitions in the
lake (the same detector pass the partition itself gets: its record does not depend on any
baseline) and written back, so a backfill in any order and the live stage read the same records.
:func:`save_day` writes the judged day's own record after it.

Each writer (this module, the live stage at its day roll) writes only its own days' files, each
atomically, so a record the live stage or another run wrote meanwhile is never dropped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from tapeflow.batch.normalize import split_by_target
from tapeflow.batch.slices import read_slices
from tapeflow.batch.targets import Target
from tapeflow.book.partition import rebuild_slices
from tapeflow.schemas import concat
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, ORDER_EVENT, TRADE
from tapeflow.signals.config import Thresholds
from tapeflow.signals.institutional import Baselines
from tapeflow.signals.stream_institutional import BaselineStore
from tapeflow.storage import lake as lake_store

_EPOCH = dt.date(1970, 1, 1)


def day_number(date: str) -> int:
    """Days since 1970-01-01 of ``YYYY-MM-DD`` (``ts_event_ns // 86_400e9`` of its instants)."""
    return (dt.date.fromisoformat(date) - _EPOCH).days


def day_inputs(lake: Path, t: Target, grid_ns: int, levels: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The partition's trades, its book grid (``grid_ns``, ``levels``; rebuilt from the day and the
    day before, the warm-up the ``book`` group uses) and its order events."""
    days = [t.previous(), t]
    pieces = rebuild_slices([read_slices(ORDER_EVENT, lake, d) for d in days],
                            [read_slices(BOOK_DELTA, lake, d) for d in days], levels=levels,
                            interval_ns=grid_ns)
    mine = [split_by_target(s, [t]).get(t, s.slice(0, 0)) for s, _ in pieces]
    snaps = concat(BOOK_SNAPSHOT, mine)
    trades = lake_store.read(TRADE, lake, venue=t.venue, symbol=t.symbol, date=t.date)
    events = lake_store.read(ORDER_EVENT, lake, venue=t.venue, symbol=t.symbol, date=t.date)
    return trades, snaps, events


@dataclass
class DayHistory:
    """The institutional baseline of one partition: the records of the days before it."""

    target: Target
    baselines: Baselines
    stored: list[str] = field(default_factory=list)  # days read from the store
    rebuilt: list[str] = field(default_factory=list)  # days computed from the lake now
    baseline_days: int = 20

    def describe(self, store: BaselineStore) -> dict[str, Any]:
        """What the partition's metadata says: the days used and, with none, why there is no baseline."""
        days = sorted(self.stored + self.rebuilt)
        out: dict[str, Any] = {"earlier_days": len(days), "days": days, "from_lake": sorted(self.rebuilt)}
        if not days:
            t = self.target
            out["reason"] = (f"no baseline: no day of {t.venue}/{t.symbol} in the {self.baseline_days} "
                             f"before {t.date} in {store.path(t.venue, t.symbol)} or the lake's order_event; "
                             f"judged against its own day (evidence baseline=own_day)")
        return out


def institutional_history(lake: Path, t: Target, thresholds: Thresholds, store: BaselineStore, *,
                          preset: str | None = None) -> DayHistory:
    """The records of the up to ``baseline_days`` days before ``t`` (store first, else the lake)."""
    params = thresholds.for_instrument("institutional", t.symbol, preset)
    key = (params["bucket_ns"], params["window_ns"])
    day = day_number(t.date)
    from tapeflow.signals.sliced import detect_day  # it reads days as day_inputs does

    wanted = list(t.history(params["baseline_days"]))  # before the day only: no look-ahead
    kept = store.load(t.venue, t.symbol, days=[day_number(e.date) for e in wanted]).days
    out = DayHistory(t, Baselines(), baseline_days=params["baseline_days"])
    for earlier in wanted:
        d = day_number(earlier.date)
        assert d < day  # the baseline never reads the day itself or a later one
        if d in kept and kept[d][:2] == key:
            out.baselines.days[d] = kept[d]
            out.stored.append(earlier.date)
            continue
        if not lake_store.partition_dir(lake, ORDER_EVENT, t.venue, t.symbol, earlier.date).exists():
            continue
        scratch = Baselines()  # the day's detector pass, read in slices (``sliced.detect_day``)
        detect_day(lake, earlier, thresholds, baselines=scratch, preset=preset)
        if d in scratch.days:  # a day of order events without a fill adds nothing
            out.baselines.days[d] = scratch.days[d]
            out.rebuilt.append(earlier.date)
    return out


def save_day(store: BaselineStore, history: DayHistory) -> None:
    """Write the judged day's record and the days computed from the lake into the store (one file
    per day: records of other days, written meanwhile by the live stage or another run, stay)."""
    t = history.target
    mine = {d: history.baselines.days[d] for d in
            [day_number(x) for x in history.rebuilt] + [day_number(t.date)] if d in history.baselines.days}
    if not mine:
        return
    store.put(t.venue, t.symbol, mine)
