"""The book stage: per-instrument books fed micro-batches, ``book_snapshot`` and ``quote`` rows out.

One builder for both runtimes: the live flow feeds :class:`BookStage` micro-batches; the batch
rebuild (``book_snapshots``, ``l3_book_snapshots``, ``quotes_from_deltas``, ``snapshots_for_format``,
the Dagster ``book`` assets) is :meth:`BookStage.replay`, the same stage over whole tables.

* The time grid is :func:`tapeflow.book.grid.grid_rows`: instants ``k * interval_ns`` from the first
  published (``F_LAST``) arrival up to the first instant at or after the last one; each instant
  shows the book after the last published row whose running-max arrival is at or before it. An
  instant is final once a published row arrives after it, so a batch emits the instants before its
  last published arrival and keeps the book at its last published row *pending* for the instants
  to come. :meth:`BookStage.close` emits the one instant the grid adds at the end of the stream.
* ``quote`` rows are the best bid and offer after a published row: when they (or the validity
  flag) differ from the instrument's previous quote (``quotes="changes"``, the live flow's BBO),
  or after every published row (``quotes="every"``).
* Rows of a book that is resyncing or crossed carry ``F_MAYBE_BAD_BOOK``.

Each micro-batch of an instrument is one compiled call (:class:`tapeflow.book.instrument.InstrumentBook`,
:mod:`kernels.book_stage`), so a small batch costs microseconds and one that completes nothing
builds no table. The state pickles for Bytewax recovery.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from kernels import book_stage as kb
from tapeflow.book.grid import instrument_groups, one_instrument
from tapeflow.book.instrument import CHUNK_ROWS, InstrumentBook
from tapeflow.book.rows import QuoteRows
from tapeflow.errors import BookError, ConfigError
from tapeflow.schemas import RecordType, concat
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, ORDER_EVENT, QUOTE, STATUS

KINDS = ("l2", "l3", "auto")
BACKENDS = ("numba", "jax", "reference")
QUOTE_MODES = {"changes": kb.Q_CHANGES, "every": kb.Q_EVERY, "none": kb.Q_NONE}
_INPUTS = {"l2": ((BOOK_DELTA, "l2"),), "l3": ((ORDER_EVENT, "l3"),),
           "auto": ((ORDER_EVENT, "l3"), (BOOK_DELTA, "l2"))}


class BookStage:
    """Per-instrument books fed micro-batches; emits ``quote`` and ``book_snapshot`` rows.

    Feeding a stream in batches of any size and then calling :meth:`close` gives the same rows as
    :meth:`replay` over the whole stream (the batch rebuild of ``tapeflow book``).

    Example:
        ``stage = BookStage("l2"); out = stage.apply(decoded.tables); ...; out = stage.close()``

    Args:
        kind: ``l2`` (``book_delta`` rows), ``l3`` (``order_event`` rows) or ``auto``: per
            instrument, L3 when its first book rows include order events (L3 wins, as in
            ``snapshots_for_format``), else L2.
        levels: depth per side of the snapshots.
        interval_ns: snapshot grid spacing; ``None`` for one snapshot after every published row.
        quotes: ``changes`` (a quote row when the BBO or its flag changed), ``every`` (after every
            published row) or ``none``.
        snapshots: False for quotes only.
        backend: L2 book kernel, ``numba``, ``jax`` (``lax.scan``) or ``reference`` (the plain-Python
            oracle, whole tables only); L3 books always run the numba kernel.
        start_synced: L3 books report VALID before their first snapshot (a feed known to start
            from an empty book).

    Raises:
        ConfigError: an unknown kind, quote mode or backend, a non-positive interval or depth.
    """

    def __init__(self, kind: str = "l2", levels: int = 10, interval_ns: int | None = 1_000_000_000, *,
                 quotes: str = "changes", snapshots: bool = True, backend: str = "numba",
                 start_synced: bool = False) -> None:
        if kind not in KINDS:
            raise ConfigError(f"book kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if interval_ns is not None and interval_ns <= 0:
            raise ConfigError(f"snapshot interval_ns must be > 0, got {interval_ns}")
        if levels < 1:
            raise ConfigError(f"levels must be >= 1, got {levels}")
        if quotes not in QUOTE_MODES:
            raise ConfigError(f"quotes must be one of {', '.join(QUOTE_MODES)}, got {quotes!r}")
        if backend not in BACKENDS:
            raise ConfigError(f"unknown book backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.kind = kind
        self.levels = levels
        self.interval_ns = interval_ns
        self.quotes = quotes
        self.snapshots = snapshots
        self.backend = backend
        self.start_synced = start_synced
        self.books: dict[tuple[str, str], InstrumentBook] = {}
        self.events = 0
        # kernels.book_stage: > 0 grid spacing, 0 a snapshot per published row, < 0 none
        self._step_ns = -1 if not snapshots else (interval_ns or 0)
        self._quote_mode = QUOTE_MODES[quotes]
        self._inputs = [(record.name, kind) for record, kind in _INPUTS[kind]]

    def apply(self, records: dict[str, pa.Table]) -> dict[str, pa.Table]:
        """Apply the next micro-batch (tables by record name, arrival order within an instrument).

        Returns:
            ``{"quote": ..., "book_snapshot": ...}``: the BBO rows and the grid snapshots this
            batch made final (either may be empty).
        """
        quotes: list[QuoteRows] = []
        snaps: list[pa.Table] = []
        vendor = records.get(BOOK_SNAPSHOT.name)
        anchored = self._anchor(vendor) if vendor is not None and vendor.num_rows else set()
        for name, kind in self._inputs:
            table = records.get(name)
            if table is None or not table.num_rows:
                continue
            key = one_instrument(table)
            inst = self.books.get(key) if key is not None else None
            if inst is not None and inst.kind == kind and not inst.closed:
                inst.step(table, None, quotes, snaps)  # the live flow's case: one instrument it knows
            else:
                for inst, rows in self._parts(table, kind, key):
                    if vendor is not None and (inst.venue, inst.symbol) not in anchored:
                        anchored |= self._anchor(vendor, inst)
                    inst.step(table, rows, quotes, snaps)
        for key in anchored:
            self.books[key].release(quotes, snaps)
        if quotes or snaps:
            return _tables(quotes, snaps)
        return {QUOTE.name: _empty(QUOTE), BOOK_SNAPSHOT.name: _empty(BOOK_SNAPSHOT)}

    def apply_columns(self, venue: str, symbol: str, columns: Mapping[str, np.ndarray],
                      order_ids: np.ndarray | None = None, anchors: pa.Table | None = None
                      ) -> tuple[list[QuoteRows], list[pa.Table]]:
        """:meth:`apply` for one instrument's batch already converted (the live flow's entry point).

        Args:
            venue, symbol: the instrument every row belongs to.
            columns: by record name (``book_delta``, ``order_event``), the table's
                ``tapeflow.book.instrument.FIELDS`` columns as rows of one int64 matrix (C order).
            order_ids: uint64 order ids of the ``order_event`` rows.
            anchors: the vendor's own ``book_snapshot`` rows of the instrument (LOBSTER's
                orderbook file), to re-anchor its L3 book to (:mod:`tapeflow.book.anchors`).

        Returns:
            (the best bid/offer rows as arrays, ``book_snapshot`` tables) this batch made final.
        """
        quotes: list[QuoteRows] = []
        snaps: list[pa.Table] = []
        key = (venue, symbol)
        if anchors is not None and anchors.num_rows:
            inst = self.books.get(key)
            if inst is None and self.kind != "l2" and ORDER_EVENT.name in columns:
                inst = self.books[key] = self._new_book(venue, symbol, "l3")
            if inst is not None:
                inst.add_anchors(anchors)
                inst.release(quotes, snaps)
        for name, kind in self._inputs:
            x = columns.get(name)
            if x is None or not x.shape[1]:
                continue
            inst = self.books.get(key)
            if inst is None:
                inst = self.books[key] = self._new_book(venue, symbol, kind)
            if inst.kind != kind or inst.closed:
                continue  # under ``auto`` the first kind seen decides; the other table is ignored
            if x.shape[1] <= CHUNK_ROWS:
                inst.step_matrix(x, order_ids if kind == "l3" else None, quotes, snaps)
                continue
            for lo in range(0, x.shape[1], CHUNK_ROWS):
                ids = order_ids[lo:lo + CHUNK_ROWS] if kind == "l3" and order_ids is not None else None
                inst.step_matrix(np.ascontiguousarray(x[:, lo:lo + CHUNK_ROWS]), ids, quotes, snaps)
        return quotes, snaps

    def replay(self, records: dict[str, pa.Table]) -> dict[str, pa.Table]:
        """The stage over whole tables: each instrument's rows in one batch, then its end of stream.

        What feeding the same rows in any micro-batches and calling :meth:`close` emits, with each
        instrument's rows together (instruments in order of first row, order events first under
        ``auto``). This is the batch rebuild.

        Raises:
            BookError: a table is not a ``book_delta`` / ``order_event`` table.
        """
        quotes: list[QuoteRows] = []
        snaps: list[pa.Table] = []
        for record, kind in _INPUTS[self.kind]:
            table = records.get(record.name)
            if table is None or not table.num_rows:
                continue
            if table.schema.names != record.column_names:
                raise BookError(f"the {kind} book needs a {record.name} table, "
                                f"got columns {table.schema.names}")
            vendor = records.get(BOOK_SNAPSHOT.name)
            for inst, rows in self._parts(table, kind, one_instrument(table)):
                if vendor is not None and vendor.num_rows:
                    self._anchor(vendor, inst)
                inst.step(table, rows, quotes, snaps)
                inst.flush(quotes, snaps)
                tail = inst.close()
                if tail is not None:
                    snaps.append(tail)
        return _tables(quotes, snaps)

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
        inst = self.books.get((venue, symbol))
        snaps = [] if inst is None else [t for t in (inst.advance(watermark_ns),) if t is not None]
        return _tables([], snaps)

    def advance_all(self, watermarks: pa.Table) -> pa.Table:
        """:meth:`advance` for every row of a ``venue, symbol, ts_recv_ns`` table (the live flow's
        heartbeats); returns the ``book_snapshot`` rows they made final."""
        columns = (watermarks.column(c).to_pylist() for c in ("venue", "symbol", "ts_recv_ns"))
        parts = [self.advance(v, s, ns)[BOOK_SNAPSHOT.name] for v, s, ns in zip(*columns, strict=True)]
        return concat(BOOK_SNAPSHOT, parts)

    def close(self) -> dict[str, pa.Table]:
        """End of stream: emit each instrument's last grid instant (the batch grid includes it),
        unless :meth:`advance` already went past it."""
        quotes: list[QuoteRows] = []
        snaps: list[pa.Table] = []
        for inst in self.books.values():
            if not inst.closed:
                inst.flush(quotes, snaps)
            tail = inst.close()
            if tail is not None:
                snaps.append(tail)
        return _tables(quotes, snaps)

    def reanchors(self) -> dict[tuple[str, str], int]:
        """Per instrument, the sides re-anchored to the vendor's own book so far (L3)."""
        return {key: inst.reanchors for key, inst in self.books.items() if inst.anchors is not None}

    def _anchor(self, vendor: pa.Table, inst: InstrumentBook | None = None) -> set[tuple[str, str]]:
        """Give the L3 books the vendor's rows of their instrument (``inst``'s only, if given);
        returns the instruments that got some."""
        key = one_instrument(vendor)
        groups = [(key[0], key[1], None)] if key is not None else instrument_groups(vendor)
        done = set()
        for venue, symbol, rows in groups:
            book = self.books.get((venue, symbol))
            if book is None or book.kind != "l3" or book.closed or (inst is not None and book is not inst):
                continue
            book.add_anchors(vendor if rows is None else vendor.take(pa.array(rows)))
            done.add((venue, symbol))
        return done

    def drain_status(self) -> pa.Table:
        """The ``status`` rows (state ``time_jump``) of the time jumps since the last call.

        A published row whose arrival is more than ``kernels.book_stage.MAX_GAP_STEPS`` grid steps
        from the instrument's running-max arrival (a stale or garbage time, or a clock moved by
        years), or a heartbeat that far ahead of the grid, does not get a grid across the span: the
        instrument's grid starts again at the row, and one row here says where it happened.
        """
        if not any(inst.jumps for inst in self.books.values()):
            return _empty(STATUS)  # the usual batch: no jump, no table to build
        cols: dict[str, list[object]] = {n: [] for n in STATUS.column_names}
        for (venue, symbol), inst in self.books.items():
            for ts_event, ts_recv, sequence, from_ns in inst.drain_jumps():
                what = "a heartbeat" if sequence < 0 else "a published row"
                row = {"ts_event_ns": ts_event, "ts_recv_ns": ts_recv, "venue": venue, "symbol": symbol,
                       "state": "time_jump", "sequence": sequence, "until_ns": -1,
                       "detail": f"{what} at ts_recv_ns {ts_recv} is {ts_recv - from_ns} ns from the "
                                 f"book's latest arrival {from_ns}, beyond {kb.MAX_GAP_STEPS} grid steps: "
                                 f"the snapshot grid starts again there"}
                for name, value in row.items():
                    cols[name].append(value)
        return STATUS.table(cols) if cols["state"] else _empty(STATUS)

    def snapshot(self) -> BookStage:
        """A deep copy for a recovery snapshot (the kernels mutate their arrays in place)."""
        return copy.deepcopy(self)

    def _parts(self, table: pa.Table, kind: str,
               key: tuple[str, str] | None) -> list[tuple[InstrumentBook, np.ndarray | None]]:
        """The books of the table's instruments (``key``: its one instrument, if it has one) with
        their rows (None: all of them); books are created on first sight."""
        groups = [(key[0], key[1], None)] if key is not None else instrument_groups(table)
        out = []
        for venue, symbol, rows in groups:
            inst = self.books.get((venue, symbol))
            if inst is None:
                inst = self.books[(venue, symbol)] = self._new_book(venue, symbol, kind)
            # under ``auto`` the first kind seen decides; the other table of the same events is ignored
            if inst.kind == kind and not inst.closed:
                out.append((inst, rows))
        return out


    def _new_book(self, venue: str, symbol: str, kind: str) -> InstrumentBook:
        return InstrumentBook(venue, symbol, kind, levels=self.levels, step_ns=self._step_ns,
                              quote_mode=self._quote_mode, backend=self.backend,
                              start_synced=self.start_synced)


_EMPTY: dict[str, pa.Table] = {}


def _tables(quotes: list[QuoteRows], snaps: list[pa.Table]) -> dict[str, pa.Table]:
    return {QUOTE.name: _one(QUOTE, [q.table() for q in quotes]),
            BOOK_SNAPSHOT.name: _one(BOOK_SNAPSHOT, snaps)}


def _one(record: RecordType, tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables) if tables else _empty(record)


def _empty(record: RecordType) -> pa.Table:
    empty = _EMPTY.get(record.name)
    if empty is None:
        # built once: a live flow of small batches asks for one per batch
        empty = _EMPTY[record.name] = record.empty_table()
    return empty


__all__ = ["BACKENDS", "KINDS", "QUOTE_MODES", "BookStage"]
