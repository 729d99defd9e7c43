"""Metrics over micro-batches, equal to the batch :func:`tapeflow.derived.metrics.metrics` on any split.

Quotes and trades are reduced to per-instant sums as they arrive (exact integers for OFI and CVD,
the squared returns themselves for the realized volatility, summed exactly at the end with
``kernels.metrics_live.fsum``, ``math.fsum``'s algorithm compiled, so no float sum depends on the
batching); those per-instant parts are arrays, and one kernel call
(``kernels.metrics_live.sample_flows``) hands them to the samples, with no Python per sample. A
snapshot for instant ``g`` is held until a quote, trade or snapshot received after ``g`` shows that
nothing more can join it (or until :meth:`close`), then folded with every pending instant up to
``g``: the live flow delivers each instrument's rows in capture order, which is what makes this
equal to the batch rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from kernels.metrics import fold_quotes, fold_trades
from kernels.metrics_live import sample_flows
from tapeflow.derived.bars import interval_ns
from tapeflow.derived.metrics import _check, _grid_of, by_instrument, metric_table
from tapeflow.errors import TapeflowError
from tapeflow.schemas.records import BOOK_SNAPSHOT, F_MAYBE_BAD_BOOK, METRIC, QUOTE, TRADE

# Empty tables are immutable and costly to build (a schema.empty_table() takes ~0.3 ms): built once.
_EMPTY_METRIC = METRIC.empty_table()
_SNAPSHOT_NAMES, _QUOTE_NAMES, _TRADE_NAMES = (r.column_names for r in (BOOK_SNAPSHOT, QUOTE, TRADE))
_RECORDS = {"book_snapshot": BOOK_SNAPSHOT, "quote": QUOTE, "trade": TRADE}
QUOTE_COLS = ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")


class QuoteArrays(NamedTuple):
    """Best bid/offer rows of one instrument in arrival order, as arrays (int64[q] unless noted)."""

    bid_price_nanos: np.ndarray
    bid_size_nanos: np.ndarray
    ask_price_nanos: np.ndarray
    ask_size_nanos: np.ndarray
    ts_recv_ns: np.ndarray
    bad: np.ndarray  # bool[q]: the quote carried F_MAYBE_BAD_BOOK


class TradeArrays(NamedTuple):
    """Trades of one instrument in arrival order, as arrays."""

    ts_recv_ns: np.ndarray  # int64[n]
    aggressor_side: np.ndarray  # [n] ``B`` / ``A`` / other, any integer dtype
    size_nanos: np.ndarray  # int64[n]


_NO_INT = np.zeros(0, np.int64)
_NO_FLOAT = np.zeros(0, np.float64)
_NO_BOOL = np.zeros(0, np.bool_)


@dataclass
class _Inst:
    # What the quotes and trades left per grid instant, not yet handed to a sample: instants in
    # rising order, one entry per run (or per return), an instant repeated across batches.
    prev_quote: np.ndarray = field(default_factory=lambda: np.zeros(5, np.int64))
    quote_max_ns: int | None = None
    trade_max_ns: int | None = None
    seen_max_ns: int | None = None
    pending: list[pa.Table] = field(default_factory=list)
    ofi: tuple[np.ndarray, np.ndarray] = (_NO_INT, _NO_INT)
    sq: tuple[np.ndarray, np.ndarray] = (_NO_INT, _NO_FLOAT)
    bad: tuple[np.ndarray, np.ndarray, np.ndarray] = (_NO_INT, _NO_BOOL, _NO_BOOL)  # (any, last) bad
    flow: tuple[np.ndarray, np.ndarray] = (_NO_INT, _NO_INT)
    # carried across samples: quote in effect bad, CVD day set, that day, its running CVD
    carry: np.ndarray = field(default_factory=lambda: np.zeros(4, np.int64))
    last_grid_ns: int | None = None


class LiveMetrics:
    """Incremental ``metric`` rows; the state is plain data and pickles (Bytewax recovery).

    Args:
        interval: the snapshot grid spacing, ``<n><s|m|h|d>``.
        levels: depth levels counted per side.
    """

    def __init__(self, interval: str = "1s", levels: int = 10) -> None:
        self.interval = interval
        self.step_ns = interval_ns(interval)
        self.levels = int(levels)
        self._state: dict[tuple[str, str], _Inst] = {}

    def add(self, snapshots: pa.Table, quotes: pa.Table, trades: pa.Table, *,
            instrument: tuple[str, str] | None = None) -> pa.Table:
        """Take one micro-batch (any of the tables may be empty) and return the samples it completed.

        Args:
            snapshots: new ``book_snapshot`` rows on the grid (``BookStage.apply(...)["book_snapshot"]``).
            quotes: new ``quote`` rows in arrival order.
            trades: new ``trade`` rows in arrival order.
            instrument: ``(venue, symbol)`` when the caller knows every row is of that one
                instrument (the live flow keys its batches by instrument): spares the check.

        Returns:
            ``metric`` rows, per instrument in time order.

        Raises:
            TapeflowError: a table of the wrong record, or a snapshot off the grid.
        """
        for table, names, what in ((snapshots, _SNAPSHOT_NAMES, "book_snapshot"),
                                   (quotes, _QUOTE_NAMES, "quote"), (trades, _TRADE_NAMES, "trade")):
            if table.schema.names != names:
                _check(table, _RECORDS[what], what)
        touched: list[tuple[str, str]] = []
        takes = ((quotes, self._quote_table), (trades, self._trade_table), (snapshots, self._snapshots))
        for table, take in takes:
            if instrument is not None:
                groups = [(*instrument, table)] if table.num_rows else []
            else:
                groups = by_instrument(table)
            for venue, symbol, rows in groups:
                key = (venue, symbol)
                inst = self._state.setdefault(key, _Inst())
                take(inst, rows, venue, symbol)
                if key not in touched:
                    touched.append(key)
        parts = [self._emit(k, self._state[k], final=False) for k in sorted(touched)]
        return _concat(parts)

    def add_arrays(self, venue: str, symbol: str, *, snapshots: pa.Table | None = None,
                   quotes: Sequence[QuoteArrays] = (), trades: TradeArrays | None = None) -> pa.Table:
        """:meth:`add` for one instrument whose quotes and trades are arrays already (the live flow's
        book stage hands its best bid/offer over as arrays, and the flow converts each trade table once).

        Args:
            venue, symbol: the instrument.
            snapshots: its new ``book_snapshot`` rows (None or empty: none).
            quotes: its new best bid/offer rows in arrival order, in parts.
            trades: its new trades in arrival order.

        Returns:
            ``metric`` rows in time order.
        """
        key = (venue, symbol)
        inst = self._state.get(key)
        if inst is None:
            inst = self._state[key] = _Inst()
        for q in quotes:
            if len(q.ts_recv_ns):
                self._quotes(inst, q)
        if trades is not None and len(trades.ts_recv_ns):
            self._trades(inst, trades)
        if snapshots is not None and snapshots.num_rows:
            self._snapshots(inst, snapshots, venue, symbol)
        return self._emit(key, inst, final=False)

    def close(self) -> pa.Table:
        """Emit every held snapshot, as at the end of the stream; the state is emptied."""
        parts = [self._emit(k, inst, final=True) for k, inst in sorted(self._state.items())]
        self._state.clear()
        return _concat(parts)

    def _seen(self, inst: _Inst, arrival: np.ndarray) -> None:
        inst.seen_max_ns = _top(inst.seen_max_ns, arrival)

    def _quote_table(self, inst: _Inst, q: pa.Table, venue: str, symbol: str) -> None:
        bad = (q.column("flags").to_numpy() & F_MAYBE_BAD_BOOK) != 0
        self._quotes(inst, QuoteArrays(*(q.column(c).to_numpy() for c in QUOTE_COLS),
                                       q.column("ts_recv_ns").to_numpy(), bad))

    def _trade_table(self, inst: _Inst, t: pa.Table, venue: str, symbol: str) -> None:
        self._trades(inst, TradeArrays(*(t.column(c).to_numpy() for c in (
            "ts_recv_ns", "aggressor_side", "size_nanos"))))

    def _quotes(self, inst: _Inst, q: QuoteArrays) -> None:
        # one kernel call per batch; its runs join the pending arrays (no Python per instant)
        runs, bad, returns, inst.quote_max_ns = fold_quotes(
            q.bid_price_nanos, q.bid_size_nanos, q.ask_price_nanos, q.ask_size_nanos, q.ts_recv_ns, q.bad,
            inst.prev_quote, inst.quote_max_ns, self.step_ns)
        instants = runs[:, 0]
        inst.ofi = _append(inst.ofi, instants, runs[:, 2])
        inst.sq = _append(inst.sq, np.repeat(instants, np.diff(runs[:, 3], prepend=0)), returns)
        inst.bad = _append(inst.bad, instants, bad[:, 0], bad[:, 1])
        # the fold's running max is the newest quote seen: no extra pass over the arrivals
        inst.seen_max_ns = _later(inst.seen_max_ns, inst.quote_max_ns)

    def _trades(self, inst: _Inst, t: TradeArrays) -> None:
        runs, inst.trade_max_ns = fold_trades(t.ts_recv_ns, t.aggressor_side, t.size_nanos, inst.trade_max_ns,
                                              self.step_ns)
        inst.flow = _append(inst.flow, runs[:, 0], runs[:, 2])
        inst.seen_max_ns = _later(inst.seen_max_ns, inst.trade_max_ns)

    def _snapshots(self, inst: _Inst, s: pa.Table, venue: str, symbol: str) -> None:
        grid = _grid_of(s, self.step_ns, venue, symbol)
        if inst.last_grid_ns is not None and grid[0] <= inst.last_grid_ns:
            raise TapeflowError(
                f"{venue}/{symbol}: snapshot at ts_event_ns={int(grid[0])} does not follow the previous "
                f"one at {inst.last_grid_ns}; the book stage emits each grid instant once, in order"
            )
        inst.last_grid_ns = int(grid[-1])
        inst.pending.append(s)
        self._seen(inst, s.column("ts_recv_ns").to_numpy())

    def _emit(self, key: tuple[str, str], inst: _Inst, *, final: bool) -> pa.Table:
        if not inst.pending:
            return _EMPTY_METRIC
        held = pa.concat_tables(inst.pending)
        grid = held.column("ts_event_ns").to_numpy()
        n = len(grid) if final else int(np.searchsorted(grid, inst.seen_max_ns, side="left"))
        if n == 0:
            return _EMPTY_METRIC
        ready, rest = held.slice(0, n), held.slice(n)
        inst.pending = [rest] if rest.num_rows else []
        ofi, cvd, rv, bad, used = sample_flows(grid[:n], inst.ofi, inst.sq, inst.bad, inst.flow, inst.carry)
        inst.ofi, inst.sq, inst.bad, inst.flow = (
            tuple(a[k:] for a in part) for part, k in zip((inst.ofi, inst.sq, inst.bad, inst.flow),
                                                          used.tolist(), strict=True))
        return metric_table(ready, self.interval, self.levels, ofi, cvd, rv, bad)


def _later(old: int | None, new: int | None) -> int | None:
    return new if old is None else old if new is None else max(old, new)


def _top(old: int | None, arrival: np.ndarray) -> int:
    top = int(arrival.max())
    return top if old is None else max(old, top)


def _append(parts: tuple[np.ndarray, ...], *new: np.ndarray) -> tuple[np.ndarray, ...]:
    if not len(parts[0]):
        return tuple(np.ascontiguousarray(a) for a in new)
    return tuple(np.concatenate((old, a)) for old, a in zip(parts, new, strict=True))


def _concat(parts: list[pa.Table]) -> pa.Table:
    parts = [p for p in parts if p.num_rows]
    return pa.concat_tables(parts) if parts else _EMPTY_METRIC
