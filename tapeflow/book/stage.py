"""The incremental book stage of the live flow: micro-batches in, BBO changes and grid snapshots out.

``BookStage`` keeps one book per instrument (the numba L2 kernel of :mod:`kernels.l2book_numba`
or the L3 kernel of :mod:`kernels.l3book`) and emits, batch by batch, exactly the rows the batch
rebuild emits over the whole stream (:func:`tapeflow.book.rebuild.snapshots_for_format`):

* the time grid is :func:`tapeflow.book.grid_rows`: instants ``k * interval_ns`` from the first
  published (``F_LAST``) arrival up to the first instant at or after the last one; each instant
  shows the book after the last published row whose running-max arrival is at or before it.
  An instant is final once a published row arrives after it (arrival order is the replay order,
  and the running max never goes back), so a batch emits the instants before its last published
  arrival and keeps the book at its last published row as ``pending`` for the instants to come.
  :meth:`BookStage.close` emits the one instant the batch rule adds at the end of the stream.
* ``quote`` rows are the best bid and offer after a published row, when they (or the validity
  flag) differ from the previous quote of the instrument.

The state is plain numpy arrays in picklable containers, so Bytewax recovery snapshots it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernels import _l2state
from kernels.l2book_numba import run as l2_run
from kernels.l3book import L3State, apply_l3, new_l3_state
from kernels.reference import VALID
from tapeflow.book.l2 import instrument_groups
from tapeflow.errors import ConfigError
from tapeflow.schemas import RecordType
from tapeflow.schemas.records import (
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    F_LAST,
    F_MAYBE_BAD_BOOK,
    ORDER_EVENT,
    QUOTE,
    UNDEF_PRICE,
)

KINDS = ("l2", "l3", "auto")
_SNAP = ("snap_bid_px", "snap_bid_sz", "snap_ask_px", "snap_ask_sz")
_L2_COLS = ("side", "action", "price_nanos", "size_nanos", "flags")
_L3_COLS = ("order_id", "action", "side", "price_nanos", "size_nanos", "flags")


@dataclass
class _Pending:
    """The book after the last published row so far: it owns grid instants until a later arrival."""

    recv_ns: int                # running max of published arrivals (the row's own, or earlier larger)
    row_recv_ns: int            # the row's own ts_recv_ns
    sequence: int
    book: np.ndarray            # int64[4, levels]: bid px, bid sz, ask px, ask sz (UNDEF_PRICE / 0 pad)
    status: int


@dataclass
class _Owners:
    """The published book rows behind k grid instants, as arrays (book is [4, k, levels])."""

    book: np.ndarray
    row_recv_ns: np.ndarray
    sequence: np.ndarray
    status: np.ndarray

    @classmethod
    def of(cls, pending: list[_Pending]) -> _Owners:
        return cls(np.stack([p.book for p in pending], axis=1),
                   np.array([p.row_recv_ns for p in pending], np.int64),
                   np.array([p.sequence for p in pending], np.int64),
                   np.array([p.status for p in pending], np.uint8))

    def where(self, mask: np.ndarray, p: _Pending) -> _Owners:
        """These owners with ``p`` (the row pending from an earlier batch) where ``mask`` is set."""
        return _Owners(np.where(mask[None, :, None], p.book[:, None, :], self.book),
                       np.where(mask, p.row_recv_ns, self.row_recv_ns),
                       np.where(mask, p.sequence, self.sequence),
                       np.where(mask, p.status, self.status).astype(np.uint8))


@dataclass
class _Instrument:
    """One instrument's book, grid position and last quote (all picklable)."""

    venue: str
    symbol: str
    kind: str
    book: object                          # kernels._l2state.L2State or kernels.l3book.L3State
    next_grid_ns: int | None = None       # first grid instant not emitted yet
    pending: _Pending | None = None
    last_quote: tuple[int, ...] | None = None  # bid px, bid sz, ask px, ask sz, flags
    closed: bool = False


@dataclass
class _Out:
    snaps: list[pa.Table] = field(default_factory=list)
    quotes: list[pa.Table] = field(default_factory=list)


class BookStage:
    """Per-instrument books fed micro-batches; emits ``quote`` and ``book_snapshot`` rows.

    Feeding the whole stream in batches of any size and then calling :meth:`close` gives the same
    ``book_snapshot`` rows as :func:`tapeflow.book.rebuild.snapshots_for_format` over the same records.

    Example:
        ``stage = BookStage("l2"); out = stage.apply(decoded.tables); ...; out = stage.close()``

    Args:
        kind: ``l2`` (``book_delta`` rows), ``l3`` (``order_event`` rows) or ``auto``: per
            instrument, L3 when its first book rows include order events (L3 wins, as in
            ``snapshots_for_format``), else L2.
        levels: depth per side of the snapshots.
        interval_ns: snapshot grid spacing; ``None`` for one snapshot after every published row.

    Raises:
        ConfigError: an unknown kind or a non-positive interval.
    """

    def __init__(self, kind: str = "l2", levels: int = 10, interval_ns: int | None = 1_000_000_000) -> None:
        if kind not in KINDS:
            raise ConfigError(f"book kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if interval_ns is not None and interval_ns <= 0:
            raise ConfigError(f"snapshot interval_ns must be > 0, got {interval_ns}")
        if levels < 1:
            raise ConfigError(f"levels must be >= 1, got {levels}")
        self.kind = kind
        self.levels = levels
        self.interval_ns = interval_ns
        self.books: dict[tuple[str, str], _Instrument] = {}
        self.events = 0

    def apply(self, records: dict[str, pa.Table]) -> dict[str, pa.Table]:
        """Apply the next micro-batch (tables by record name, arrival order within an instrument).

        Returns:
            ``{"quote": ..., "book_snapshot": ...}``: the BBO changes and the grid snapshots this
            batch made final (either may be empty).
        """
        out = _Out()
        for name in self._inputs(records):
            table = records[name]
            for venue, symbol, sub in _per_instrument(table):
                inst = self._instrument(venue, symbol, name)
                if inst is None or inst.closed:
                    continue
                self._apply_one(inst, sub, out)
        return self._tables(out)

    def advance(self, venue: str, symbol: str, watermark_ns: int) -> dict[str, pa.Table]:
        """The feed's capture clock reached ``watermark_ns``: no later row of this instrument will
        arrive before it (its source promises capture times in arrival order), so every grid
        instant before it is final. Emits them with the book as it stands (a quiet instrument's
        snapshots then follow the other instruments' clock instead of waiting for its next event).

        The instants are the batch grid's as long as the instrument has more events; after its
        last event the batch grid stops at the first instant at or after it, the live one goes on
        while the feed's clock moves (those rows repeat the last book).

        Returns:
            ``{"quote": empty, "book_snapshot": ...}``.
        """
        out = _Out()
        inst = self.books.get((venue, symbol))
        step = self.interval_ns
        if inst is not None and not inst.closed and inst.pending is not None and step is not None:
            assert inst.next_grid_ns is not None
            grid = np.arange(inst.next_grid_ns, watermark_ns, step, dtype=np.int64)
            if len(grid):
                out.snaps.append(self._snapshot_rows(inst, grid, [inst.pending] * len(grid)))
                inst.next_grid_ns = int(grid[-1]) + step
        return self._tables(out)

    def close(self) -> dict[str, pa.Table]:
        """End of stream: emit each instrument's last grid instant (the batch grid includes it),
        unless :meth:`advance` already went past it."""
        out = _Out()
        step = self.interval_ns
        for inst in self.books.values():
            if not inst.closed and inst.pending is not None and step is not None:
                last = -(-inst.pending.recv_ns // step) * step  # the batch grid's last instant
                if inst.next_grid_ns == last:
                    out.snaps.append(self._snapshot_rows(inst, np.array([last], np.int64), [inst.pending]))
            inst.closed = True
        return self._tables(out)

    def snapshot(self) -> BookStage:
        """A deep copy for a recovery snapshot (the kernels mutate their arrays in place)."""
        return copy.deepcopy(self)

    def _inputs(self, records: dict[str, pa.Table]) -> list[str]:
        names = {"l2": [BOOK_DELTA.name], "l3": [ORDER_EVENT.name],
                 "auto": [ORDER_EVENT.name, BOOK_DELTA.name]}[self.kind]
        return [n for n in names if n in records and records[n].num_rows]

    def _instrument(self, venue: str, symbol: str, table_name: str) -> _Instrument | None:
        inst = self.books.get((venue, symbol))
        kind = "l3" if table_name == ORDER_EVENT.name else "l2"
        if inst is None:
            book = new_l3_state() if kind == "l3" else _l2state.new_state()
            inst = self.books[(venue, symbol)] = _Instrument(venue, symbol, kind, book)
        # under ``auto`` the first kind seen decides; the other table of the same events is ignored
        return inst if inst.kind == kind else None

    def _apply_one(self, inst: _Instrument, table: pa.Table, out: _Out) -> None:
        self.events += table.num_rows
        sub = _Columns(table)
        flags = sub["flags"]
        recv = sub["ts_recv_ns"]
        published = np.flatnonzero(flags & F_LAST)
        if not len(published):
            self._run(inst, sub, None)
            return
        running = np.maximum.accumulate(recv[published])
        if inst.pending is not None:
            running = np.maximum(running, inst.pending.recv_ns)
        if self.interval_ns is None:
            grid, owner = sub["ts_event_ns"][published], np.arange(len(published))
        else:
            grid, owner = self._grid(inst, running)
        own_rows = np.unique(np.concatenate([published[owner[owner >= 0]], published[-1:]]))
        rep = self._run(inst, sub, own_rows)
        snaps = np.stack([rep[k] for k in _SNAP])  # [4, len(own_rows), levels]
        seq = sub["sequence"]

        # one snapshot row per grid instant, gathered as arrays (a Python object per instant cost
        # ~3 s over six simulated instrument-days on the event grid)
        j = np.searchsorted(own_rows, published[np.maximum(owner, 0)])
        rows = published[np.maximum(owner, 0)]
        owned = _Owners(snaps[:, j, :], recv[rows], seq[rows], rep["snap_status"][j].astype(np.uint8))
        if inst.pending is not None and (owner < 0).any():
            owned = owned.where(owner < 0, inst.pending)
        if len(grid):
            out.snaps.append(self._snapshot_table(inst, grid.astype(np.int64), owned))
        last = int(np.searchsorted(own_rows, published[-1]))
        inst.pending = _Pending(int(running[-1]), int(recv[published[-1]]), int(seq[published[-1]]),
                                snaps[:, last, :].copy(), int(rep["snap_status"][last]))
        out.quotes.append(self._quotes(inst, sub, published, rep))

    def _grid(self, inst: _Instrument, running: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid instants made final by this batch, and for each the index of its published row
        in the batch (-1: the pending row from an earlier batch)."""
        step = self.interval_ns
        assert step is not None
        if inst.next_grid_ns is None:
            inst.next_grid_ns = -(-int(running[0]) // step) * step
        end = int(running[-1])
        grid = np.arange(inst.next_grid_ns, end, step, dtype=np.int64)  # instants < end are final
        inst.next_grid_ns = max(inst.next_grid_ns, -(-end // step) * step)
        owner = np.searchsorted(running, grid, side="right") - 1
        return grid, owner.astype(np.int64)

    def _run(self, inst: _Instrument, sub: _Columns, rows: np.ndarray | None) -> dict[str, np.ndarray]:
        levels = self.levels if rows is not None else 0
        if inst.kind == "l3":
            cols = [sub[n] for n in _L3_COLS]
            state, out = apply_l3(inst.book, *cols, levels=levels, snapshot_rows=rows)
            assert isinstance(state, L3State)
        else:
            cols = [sub[n] for n in _L2_COLS]
            state, out = l2_run(inst.book, *cols, levels=levels, snapshot_rows=rows)
        inst.book = state
        return out

    def _snapshot_rows(self, inst: _Instrument, ts_ns: np.ndarray, owners: list[_Pending]) -> pa.Table:
        return self._snapshot_table(inst, ts_ns, _Owners.of(owners))

    def _snapshot_table(self, inst: _Instrument, ts_ns: np.ndarray, owners: _Owners) -> pa.Table:
        book, status = owners.book, owners.status  # [4, k, levels], [k]
        # L2 snapshots list only the levels that exist (tapeflow.book.l2), L3 ones pad to ``levels``
        # (tapeflow.book.l3): the batch rebuild is the contract, so each keeps its shape
        if inst.kind == "l2":
            lists = [_existing(book[q - q % 2], book[q]) for q in range(4)]
        else:
            lists = [_padded(book[q]) for q in range(4)]
        return BOOK_SNAPSHOT.table(
            {"ts_event_ns": ts_ns, "ts_recv_ns": owners.row_recv_ns.astype(np.int64),
             "sequence": owners.sequence.astype(np.int64),
             "bid_price_nanos": lists[0], "bid_size_nanos": lists[1],
             "ask_price_nanos": lists[2], "ask_size_nanos": lists[3],
             "flags": np.where(status == VALID, 0, F_MAYBE_BAD_BOOK).astype(np.uint8)},
            constants={"venue": inst.venue, "symbol": inst.symbol, "levels": self.levels})

    def _quotes(self, inst: _Instrument, sub: _Columns, published: np.ndarray,
                rep: dict[str, np.ndarray]) -> pa.Table:
        cols = np.stack([rep["bid_px"][published], rep["bid_sz"][published], rep["ask_px"][published],
                         rep["ask_sz"][published],
                         np.where(rep["status"][published] == VALID, 0, F_MAYBE_BAD_BOOK)]).astype(np.int64)
        prev = (np.array(inst.last_quote, np.int64)[:, None] if inst.last_quote is not None
                else np.full((5, 1), -2, np.int64))
        changed = np.any(cols != np.concatenate([prev, cols[:, :-1]], axis=1), axis=0)
        inst.last_quote = tuple(int(v) for v in cols[:, -1])
        rows = published[changed]
        if not len(rows):
            return _concat(QUOTE, [])
        keep = cols[:, changed]
        return QUOTE.table(
            {"ts_event_ns": sub["ts_event_ns"][rows], "ts_recv_ns": sub["ts_recv_ns"][rows],
             "sequence": sub["sequence"][rows], "bid_price_nanos": keep[0], "bid_size_nanos": keep[1],
             "ask_price_nanos": keep[2], "ask_size_nanos": keep[3], "flags": keep[4].astype(np.uint8)},
            constants={"venue": inst.venue, "symbol": inst.symbol})

    @staticmethod
    def _tables(out: _Out) -> dict[str, pa.Table]:
        return {QUOTE.name: _concat(QUOTE, out.quotes), BOOK_SNAPSHOT.name: _concat(BOOK_SNAPSHOT, out.snaps)}


_EMPTY: dict[str, pa.Table] = {}


def _concat(record: RecordType, tables: list[pa.Table]) -> pa.Table:
    # building an empty table from the declaration costs ~0.1 ms: a live flow of small batches
    # asks for one per batch, so keep one per record
    tables = [t for t in tables if t.num_rows]
    if len(tables) == 1:
        return tables[0]
    if tables:
        return pa.concat_tables(tables)
    if record.name not in _EMPTY:
        _EMPTY[record.name] = record.empty_table()
    return _EMPTY[record.name]


def _per_instrument(table: pa.Table) -> list[tuple[str, str, pa.Table]]:
    # the live flow keys batches by instrument, so one instrument per table is the common case
    venue, symbol = pc.min_max(table.column("venue")), pc.min_max(table.column("symbol"))
    if venue["min"] == venue["max"] and symbol["min"] == symbol["max"]:
        return [(venue["min"].as_py(), symbol["min"].as_py(), table)]
    return [(v, s, table.take(pa.array(rows))) for v, s, rows in instrument_groups(table)]


class _Columns:
    """A table's columns as numpy arrays, each converted once (a micro-batch is often one chunk)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        arr = self._cache.get(name)
        if arr is None:
            col = self.table.column(name)
            chunk = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
            arr = self._cache[name] = chunk.to_numpy(zero_copy_only=False)
        return arr


def _existing(px: np.ndarray, values: np.ndarray) -> pa.Array:
    keep = px != UNDEF_PRICE
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[keep], pa.int64()))


def _padded(matrix: np.ndarray) -> pa.Array:
    k, levels = matrix.shape
    offsets = np.arange(0, (k + 1) * levels, levels, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.reshape(-1), pa.int64()))


__all__ = ["KINDS", "BookStage"]
