"""Incremental event-time bars over micro-batches of trades, with an explicit late-data policy.

Policy, per (venue, symbol), every interval at once:

* **watermark** = the largest ``ts_event_ns`` seen so far - ``allowed_lateness_ns``.
* A bar ``[start, start + interval)`` is **emitted** (revision 0) at the end of the first batch
  after which the watermark is at or past its end.
* A trade behind the watermark whose bar was already emitted **restates** it: the bar is
  re-emitted, with every trade so far, as ``revision + 1`` at the end of that batch. A trade is
  accepted while ``ts_event_ns >= max ts_event_ns seen (this trade included) - allowed_lateness_ns
  - restate_horizon_ns``; the decision is per trade, in input order, so it does not depend on how
  the stream is cut into batches.
* Older trades are **too late**: they go into no bar, are counted in ``stats.too_late`` and come
  back as ``rejected`` rows with reason ``too_late`` from :meth:`LiveBars.drain_rejected`.

Nothing reads the wall clock, so the output depends only on the input rows and their order (and
batch boundaries decide only when a revision is emitted, never its content). After
:meth:`LiveBars.close`, the last revision of every bar equals ``tapeflow.derived.bars.time_bars`` over
the accepted trades in the same order, for every interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from kernels.bars_live import admit, notional_ints, partial_rows, rounded_vwaps
from tapeflow.book.rows import repeat_string
from tapeflow.derived.bars import STANDARD_INTERVALS, interval_ns
from tapeflow.derived.metrics import by_instrument
from tapeflow.errors import ConfigError, TapeflowError
from tapeflow.schemas.records import BAR, F_GAP, F_MAYBE_BAD_BOOK, REJECTED, TRADE

# Empty tables are immutable and costly to build (a schema.empty_table() takes ~0.3 ms): built once.
_EMPTY_BAR = BAR.empty_table()
_EMPTY_REJECTED = REJECTED.empty_table()
_TRADE_NAMES = TRADE.column_names
_ARRAY_NAMES = ("ts_event_ns", "price_nanos", "size_nanos", "aggressor_side", "flags", "ts_recv_ns")
_BAR_NAMES = BAR.column_names
_NEVER = 2**63 - 1

DEFAULT_LATENESS_NS = 1_000_000_000
DEFAULT_RESTATE_HORIZON_NS = 3_600_000_000_000

# Accumulator slots of one bar: a plain list keeps the state cheap to pickle.
_OPEN, _HIGH, _LOW, _CLOSE, _VOL, _NOTIONAL, _COUNT, _BUY, _SELL, _RECV, _FLAGS, _REV = range(12)


@dataclass
class LiveBarStats:
    """Counters since the start of the stream (trades, not bars, except ``emitted``/``restated``)."""

    trades: int = 0
    late: int = 0
    too_late: int = 0
    rejected: int = 0
    emitted: int = 0
    restated: int = 0


@dataclass
class _Frame:
    """One interval of one instrument: open bars, emitted bars kept for restating, dirty keys."""

    pending: dict[int, list] = field(default_factory=dict)
    done: dict[int, list] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)


@dataclass
class _Instrument:
    max_ts_ns: int
    frames: dict[str, _Frame]
    # Earliest end of a pending bar, and whether an emitted bar changed: a batch that moves the
    # watermark short of the first and restates nothing has nothing to emit (the common case of
    # small batches), so the per-interval scan is skipped.
    next_close_ns: int = _NEVER
    dirty: bool = False


class LiveBars:
    """Time bars of every interval, built batch by batch (see the module docstring for the policy).

    The whole state is plain Python data, so it pickles (Bytewax recovery snapshots it).

    Args:
        intervals: bar lengths, ``<n><s|m|h|d>``; the 15 standard ones by default.
        allowed_lateness_ns: how far behind the newest trade a bar stays open (>= 0).
        restate_horizon_ns: how far behind the watermark an emitted bar may still be restated (>= 0).

    Raises:
        ConfigError: a bad interval or a negative duration.
    """

    def __init__(self, intervals: tuple[str, ...] | list[str] = STANDARD_INTERVALS, *,
                 allowed_lateness_ns: int = DEFAULT_LATENESS_NS,
                 restate_horizon_ns: int = DEFAULT_RESTATE_HORIZON_NS) -> None:
        if allowed_lateness_ns < 0 or restate_horizon_ns < 0:
            raise ConfigError(
                f"allowed_lateness_ns ({allowed_lateness_ns}) and restate_horizon_ns "
                f"({restate_horizon_ns}) must be >= 0"
            )
        self.intervals = tuple(dict.fromkeys(intervals))  # a repeated interval would be built twice
        if not self.intervals:
            raise ConfigError("LiveBars needs at least one interval")
        self._step_ns = {i: interval_ns(i) for i in self.intervals}
        self._steps = np.array(list(self._step_ns.values()), np.int64)
        self._steps_list = self._steps.tolist()
        self._names = np.array(self.intervals, dtype=object)
        self.allowed_lateness_ns = int(allowed_lateness_ns)
        self.restate_horizon_ns = int(restate_horizon_ns)
        self.stats = LiveBarStats()
        self._state: dict[tuple[str, str], _Instrument] = {}
        self._rejected: list[pa.Table] = []

    def add(self, trades: pa.Table, *, instrument: tuple[str, str] | None = None) -> pa.Table:
        """Take a micro-batch of ``trade`` rows (arrival order) and return the bars it closed or restated.

        Args:
            trades: ``trade`` rows of any instruments.
            instrument: ``(venue, symbol)`` when the caller knows every row is of that one
                instrument (the live flow keys its batches by instrument): spares the check.

        Returns:
            ``bar`` rows emitted by this batch: first emissions (revision 0) and restatements
            (revision > 0), sorted by venue, symbol, interval (in ``intervals`` order) and time.

        Raises:
            TapeflowError: the table is not a ``trade`` table.
        """
        if trades.schema.names != _TRADE_NAMES:
            raise TapeflowError(f"LiveBars.add needs a trade table, got columns {trades.schema.names}")
        out: list[pa.Table] = []
        if instrument is not None:
            groups = [(*instrument, trades)] if trades.num_rows else []
        else:
            groups = by_instrument(trades)
        for venue, symbol, sub in groups:
            columns = [sub.column(n).to_numpy() for n in _ARRAY_NAMES]
            out.append(self._add(venue, symbol, sub, *columns))
        return _concat(out)

    def add_arrays(self, venue: str, symbol: str, trades: pa.Table, ts_event_ns: np.ndarray,
                   price_nanos: np.ndarray, size_nanos: np.ndarray, aggressor_side: np.ndarray,
                   flags: np.ndarray, ts_recv_ns: np.ndarray) -> pa.Table:
        """:meth:`add` for one instrument's trades whose columns are arrays already (the live flow
        converts each table once); ``trades`` is only read for the rows it rejects.

        Args:
            venue, symbol: the instrument of every row.
            trades: the ``trade`` rows (arrival order).
            ts_event_ns, price_nanos, size_nanos, aggressor_side, flags, ts_recv_ns: their columns
                ([n] each, any integer dtype).

        Returns:
            ``bar`` rows, as :meth:`add`.
        """
        if not len(ts_event_ns):
            return _EMPTY_BAR
        return self._add(venue, symbol, trades, ts_event_ns, price_nanos, size_nanos, aggressor_side, flags,
                         ts_recv_ns)

    def close(self) -> pa.Table:
        """Flush every bar not yet emitted (or restated since), as at the end of the stream.

        Returns:
            ``bar`` rows, as :meth:`add`; afterwards the state is empty (the counters stay).
        """
        out = [self._emit(inst, venue, symbol, final=True)
               for (venue, symbol), inst in sorted(self._state.items())]
        self._state.clear()
        return _concat(out)

    def advance(self, venue: str, symbol: str, ts_event_ns: int) -> pa.Table:
        """Move an instrument's clock to ``ts_event_ns`` without a trade and return the bars that closes.

        An instrument that stops trading keeps its last bars open (the watermark moves with trades
        only, never with the wall clock); a caller that sees the venue's time move on elsewhere
        (book events, heartbeats with venue time) can pass it here. Trades older than the new
        watermark then count as late, exactly as if a trade at ``ts_event_ns`` had arrived.

        Returns:
            ``bar`` rows, as :meth:`add` (empty for an instrument never seen or a time not ahead).
        """
        inst = self._state.get((venue, symbol))
        if inst is None or ts_event_ns <= inst.max_ts_ns:
            return _EMPTY_BAR
        inst.max_ts_ns = int(ts_event_ns)
        return self._emit(inst, venue, symbol, final=False)

    def drain_rejected(self) -> pa.Table:
        """The ``rejected`` rows (``too_late``, ``negative``) gathered since the last call."""
        tables = [t for t in self._rejected if t.num_rows]
        self._rejected = []
        return pa.concat_tables(tables) if tables else _EMPTY_REJECTED

    def watermark_ns(self, venue: str, symbol: str) -> int | None:
        """The current watermark of one instrument (None before its first trade)."""
        inst = self._state.get((venue, symbol))
        return None if inst is None else inst.max_ts_ns - self.allowed_lateness_ns

    def _add(self, venue: str, symbol: str, sub: pa.Table, ts: np.ndarray, price: np.ndarray,
             size: np.ndarray, side: np.ndarray, flags: np.ndarray, recv: np.ndarray) -> pa.Table:
        inst = self._state.get((venue, symbol))
        if inst is None:
            # Every row moves the clock, a rejected one too: its venue time is still news.
            inst = _Instrument(int(ts[0]), {i: _Frame() for i in self.intervals})
            self._state[(venue, symbol)] = inst
        watermark, status, inst.max_ts_ns, late, too_late, negative = admit(
            ts, size, inst.max_ts_ns, self.allowed_lateness_ns, self.restate_horizon_ns)
        self.stats.trades += len(status)
        self.stats.late += late
        self.stats.too_late += too_late
        self.stats.rejected += negative
        if too_late or negative:
            bad = np.flatnonzero(status)
            self._rejected.append(_rejects(sub, bad, watermark, status == 1, venue, symbol,
                                           self.restate_horizon_ns))
            keep = status == 0
            ts, price, size, side, flags, recv = (a[keep] for a in (ts, price, size, side, flags, recv))
        if len(ts):
            self._merge(inst, ts, price, size, side, flags, recv)
        return self._emit(inst, venue, symbol, final=False)

    def _merge(self, inst: _Instrument, ts: np.ndarray, price: np.ndarray, size: np.ndarray,
               side: np.ndarray, flags: np.ndarray, recv: np.ndarray) -> None:
        ints, words = partial_rows(ts, price, size, side, (flags & (F_GAP | F_MAYBE_BAD_BOOK)) != 0, recv,
                                   self._steps)
        frames = [inst.frames[i] for i in self.intervals]
        steps = self._steps_list
        next_close = inst.next_close_ns
        # one tolist() of the whole partial matrix: Python ints for the exact merges below
        for (j, start, o, h, lo, c, vol, cnt, buy, sell, rcv, g), notl in zip(
                ints.tolist(), notional_ints(words), strict=True):
            frame = frames[j]
            acc = frame.pending.get(start)
            if acc is None:
                acc = frame.done.get(start)
                if acc is not None:
                    frame.dirty.add(start)
                    inst.dirty = True
            if acc is None:
                flag = F_MAYBE_BAD_BOOK if g else 0
                frame.pending[start] = [o, h, lo, c, vol, notl, cnt, buy, sell, rcv, flag, 0]
                next_close = min(next_close, start + steps[j])
                continue
            if h > acc[_HIGH]:
                acc[_HIGH] = h
            if lo < acc[_LOW]:
                acc[_LOW] = lo
            acc[_CLOSE] = c
            acc[_VOL] += vol
            acc[_NOTIONAL] += notl
            acc[_COUNT] += cnt
            acc[_BUY] += buy
            acc[_SELL] += sell
            if rcv > acc[_RECV]:
                acc[_RECV] = rcv
            if g:
                acc[_FLAGS] |= F_MAYBE_BAD_BOOK
        inst.next_close_ns = next_close

    def _emit(self, inst: _Instrument, venue: str, symbol: str, *, final: bool) -> pa.Table:
        watermark = inst.max_ts_ns - self.allowed_lateness_ns
        if not final and not inst.dirty and watermark < inst.next_close_ns:
            # Nothing closes and nothing was restated; expiring old emitted bars can wait for the
            # next scan, since no accepted trade can reach a bar that ends before the horizon.
            return _EMPTY_BAR
        starts: list[int] = []
        steps: list[int] = []
        accs: list[list] = []
        next_close = _NEVER
        restated = 0
        for j, (interval, step) in enumerate(self._step_ns.items()):
            frame = inst.frames[interval]
            pending, done = frame.pending, frame.done
            ready = [s for s in pending if final or s + step <= watermark]
            ready.extend(frame.dirty)
            for start in sorted(ready):
                acc = pending.pop(start, None)
                if acc is None:
                    acc = done[start]
                    acc[_REV] += 1
                    restated += 1
                else:
                    done[start] = acc
                # the rows are built column-wise from these below (_bar_table)
                starts.append(start)
                steps.append(j)
                accs.append(acc)
            frame.dirty.clear()
            if frame.pending:
                next_close = min(next_close, min(frame.pending) + step)
            # A later trade that is not too late lies at or after watermark - horizon, so bars that
            # end by then can never change again.
            # Emission is nearly in time order, so the oldest sit at the front; one out of order
            # waits there until the ones before it go, which only keeps it longer than needed.
            horizon = watermark - self.restate_horizon_ns
            expired = []
            for start in frame.done:
                if start + step > horizon:
                    break
                expired.append(start)
            for start in expired:
                del frame.done[start]
        inst.next_close_ns, inst.dirty = next_close, False
        self.stats.emitted += len(starts)
        self.stats.restated += restated
        return _bar_table(venue, symbol, starts, self._names[steps] if accs else (), accs)


_BAR_SCHEMA = BAR.arrow_schema()
# the accumulator slots of the integer columns after venue, symbol and interval, VWAP apart
_SLOTS = {"open_price_nanos": _OPEN, "high_price_nanos": _HIGH, "low_price_nanos": _LOW,
          "close_price_nanos": _CLOSE, "volume_nanos": _VOL, "trade_count": _COUNT, "buy_volume_nanos": _BUY,
          "sell_volume_nanos": _SELL, "flags": _FLAGS, "revision": _REV}
if [*_BAR_NAMES[:5], *_SLOTS] != [n for n in _BAR_NAMES if n != "vwap_price_nanos"]:
    raise TapeflowError(f"live bar columns {list(_SLOTS)} do not follow the BAR record's order {_BAR_NAMES}")
_INT_SLOTS = [*_SLOTS.values(), _RECV]
_BAR_TYPES = [f.type for f in _BAR_SCHEMA]  # iterating a schema builds objects: once


def _bar_table(venue: str, symbol: str, starts: list[int], names: np.ndarray, accs: list[list]) -> pa.Table:
    """``bar`` rows built column by column from the accumulators (no Python per bar or per field)."""
    if not accs:
        return _EMPTY_BAR
    n = len(accs)
    # one transpose of the accumulators, then each column in one call (fromiter of a tuple of
    # ints is ~2x faster than an object matrix cast to int64)
    held = list(zip(*accs, strict=True))
    ints = [np.fromiter(held[k], np.int64, n) for k in _INT_SLOTS]
    vwap = rounded_vwaps(np.array(held[_NOTIONAL], dtype=object), ints[4], ints[0])
    columns = [np.array(starts, np.int64), ints[10], repeat_string(venue, n), repeat_string(symbol, n),
               pa.array(names, pa.string()), *ints[:5], vwap, *ints[5:10]]
    return pa.Table.from_arrays([c if isinstance(c, pa.Array) else pa.array(c, kind)
                                 for c, kind in zip(columns, _BAR_TYPES, strict=True)], schema=_BAR_SCHEMA)


def _concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return _EMPTY_BAR
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _rejects(sub: pa.Table, bad: np.ndarray, watermark: np.ndarray, too_late: np.ndarray, venue: str,
             symbol: str, horizon_ns: int) -> pa.Table:
    rows = sub.take(pa.array(bad)).to_pylist()
    cols: dict[str, list] = {n: [] for n in REJECTED.column_names}
    for i, row in zip(bad.tolist(), rows, strict=True):
        if too_late[i]:
            reason = "too_late"
            wm = int(watermark[i])
            detail = (f"trade {row['trade_id'] or row['sequence']} at ts_event_ns={row['ts_event_ns']} is "
                      f"{wm - row['ts_event_ns']} ns behind the watermark {wm}, "
                      f"beyond the restate horizon of {horizon_ns} ns: in no bar")
        else:
            reason = "negative"
            detail = f"trade {row['trade_id'] or row['sequence']} has size_nanos={row['size_nanos']}"
        cols["ts_event_ns"].append(row["ts_event_ns"])
        cols["ts_recv_ns"].append(row["ts_recv_ns"])
        cols["venue"].append(venue)
        cols["symbol"].append(symbol)
        cols["reason"].append(reason)
        cols["detail"].append(detail)
        cols["location"].append(f"live_bars:{venue}/{symbol}:sequence={row['sequence']}")
        cols["raw"].append(json.dumps(row, separators=(",", ":")).encode())
    return REJECTED.table(cols)
