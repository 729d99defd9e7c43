"""Degraded windows of the live flow: which capture-time spans of an instrument get ``F_MAYBE_BAD_BOOK``.

The health stage (``tapeflow.live.health.FeedHealth``) writes a ``degraded`` STATUS row when an
instrument's latency trips the breaker (``ts_recv_ns`` = the window's start, ``until_ns`` -1) and
a ``recovered`` row when it recovers (``until_ns`` = the window's end, exclusive). The flow turns
those rows into windows here, flags the input rows captured inside a window (so bars, built from
flagged trades, carry the flag as they do for a gap) and sends the window changes down to the
instrument's book stage under the batch key :data:`DEGRADED`, which flags the grid snapshots
(and through them the metrics) whose instant lies inside a window.

Everything is derived from the rows and their order, never from a clock, so a replay flags the
same rows every time, whatever the batch cuts or the worker count.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from tapeflow.live.batching import instrument_rows
from tapeflow.schemas.records import F_MAYBE_BAD_BOOK

DEGRADED = "_degraded"  # batch key of window changes; a leading "_" keeps it out of every sink
OPEN_NS = int(np.iinfo(np.int64).max)  # end of a window that has not recovered yet
MAX_WINDOWS = 256  # per instrument: bounded for long runs, ample for flagging rows that come late
_SCHEMA = pa.schema([("venue", pa.string()), ("symbol", pa.string()), ("start_ns", pa.int64()),
                     ("end_ns", pa.int64())])


class DegradedWindows:
    """Per-instrument degraded windows ``[start_ns, end_ns)`` in capture time (picklable)."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self._last_end: dict[tuple[str, str], int] = {}  # latest end per instrument (see mask)
        self._latest: int | None = None  # latest end over every window (see latest_end_ns)

    def __setstate__(self, state: dict) -> None:
        # a recovery snapshot taken before the cache existed resumes too
        self.__dict__.update(state)
        self.__dict__.setdefault("_last_end", {})
        self.__dict__.setdefault("_latest", None)

    def __bool__(self) -> bool:
        return bool(self.windows)

    def latest_end_ns(self) -> int:
        """The latest end over every window (-1 without any): rows captured at or after it are
        in no window, so a caller can skip flagging a batch that starts there."""
        if self._latest is None:  # kept until a window changes: the health stage asks every batch
            ends = [self._instrument_end(key, wins) for key, wins in self.windows.items() if wins]
            self._latest = max(ends, default=-1)
        return self._latest

    def _instrument_end(self, key: tuple[str, str], wins: list[tuple[int, int]]) -> int:
        end = self._last_end.get(key)
        if end is None:
            end = self._last_end[key] = max(e for _, e in wins)
        return end

    def from_status(self, status: pa.Table, high_water_ns: int = -1) -> pa.Table:
        """Open and close windows from the health stage's ``degraded`` / ``recovered`` rows.

        A window closes at ``max(until_ns, high_water_ns + 1)``: the book grid follows the running
        maximum of capture times, so while the window was open it may already have emitted (and
        flagged) instants up to the feed's high-water mark, past the recovering row's own time.

        Args:
            status: STATUS rows written by the health stage (other states are ignored).
            high_water_ns: the largest capture time the stage has seen so far (-1: none).

        Returns:
            The windows that changed, as a :data:`DEGRADED` table (venue, symbol, start_ns, end_ns).
        """
        changed: list[tuple[str, str, int, int]] = []
        for row in status.select(["venue", "symbol", "state", "ts_recv_ns", "until_ns"]).to_pylist():
            key = (row["venue"], row["symbol"])
            wins = self.windows.setdefault(key, [])
            if row["state"] == "degraded":
                wins.append((row["ts_recv_ns"], OPEN_NS))
            elif row["state"] == "recovered" and wins and wins[-1][1] == OPEN_NS and row["until_ns"] >= 0:
                wins[-1] = (wins[-1][0], max(row["until_ns"], high_water_ns + 1))
            else:
                continue
            del wins[:-MAX_WINDOWS]
            changed.append((*key, *wins[-1]))
        self._last_end.clear()
        self._latest = None
        return window_table(changed)

    def merge(self, changes: pa.Table) -> None:
        """Apply a :data:`DEGRADED` table from upstream (a window with a known start is replaced)."""
        for venue, symbol, start, end in zip(*(changes[c].to_pylist() for c in _SCHEMA.names), strict=True):
            wins = self.windows.setdefault((venue, symbol), [])
            for i, (s, _) in enumerate(wins):
                if s == start:
                    wins[i] = (start, end)
                    break
            else:
                wins.append((start, end))
                wins.sort()
                del wins[:-MAX_WINDOWS]
        self._last_end.clear()
        self._latest = None

    def mask(self, table: pa.Table, time_column: str) -> np.ndarray:
        """Rows of ``table`` whose ``time_column`` lies inside a window of their instrument."""
        mask = np.zeros(table.num_rows, dtype=bool)
        if not self.windows or not table.num_rows:
            return mask
        ts = table.column(time_column).to_numpy()
        for venue, symbol, rows in instrument_rows(table):
            hit = self.mask_of(venue, symbol, ts if rows is None else ts[rows])
            if hit is None:
                continue
            if rows is None:
                mask |= hit
            else:
                mask[rows] |= hit
        return mask

    def mask_of(self, venue: str, symbol: str, ts_ns: np.ndarray) -> np.ndarray | None:
        """Which of one instrument's times ``ts_ns`` lie inside one of its windows (None: none does)."""
        wins = self.windows.get((venue, symbol))
        if not wins or not len(ts_ns):
            return None
        low = int(ts_ns.min())
        if self._instrument_end((venue, symbol), wins) <= low:
            return None  # every window ended before these rows (the common case)
        high = int(ts_ns.max())
        hit = None
        for start, end in wins:
            if start > high or end <= low:
                continue  # most windows lie in the past: no row can be inside
            inside = (ts_ns >= start) & (ts_ns < end)
            hit = inside if hit is None else hit | inside
        return hit

    def flag(self, table: pa.Table, time_column: str = "ts_recv_ns") -> pa.Table:
        """``table`` with ``F_MAYBE_BAD_BOOK`` added to the rows inside a window (a ``flags`` column
        is required; tables without one come back unchanged)."""
        if "flags" not in table.column_names:
            return table
        mask = self.mask(table, time_column)
        if not mask.any():
            return table
        flags = table.column("flags").to_numpy() | np.where(mask, F_MAYBE_BAD_BOOK, 0).astype(np.uint8)
        index = table.column_names.index("flags")
        return table.set_column(index, table.schema.field("flags"), pa.array(flags, type=pa.uint8()))


def window_table(rows: Iterable[tuple[str, str, int, int]]) -> pa.Table:
    """A :data:`DEGRADED` table from ``(venue, symbol, start_ns, end_ns)`` tuples."""
    cols = list(zip(*rows, strict=True)) or [(), (), (), ()]
    return pa.table([pa.array(c, type=f.type) for c, f in zip(cols, _SCHEMA, strict=True)], schema=_SCHEMA)


__all__ = ["DEGRADED", "MAX_WINDOWS", "OPEN_NS", "DegradedWindows", "window_table"]
