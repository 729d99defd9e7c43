"""One instrument's book inside the book stage: its kernel state, grid position and buffers.

:class:`InstrumentBook` runs one micro-batch of one instrument as one compiled call
(:mod:`kernels.book_stage`: grid plan, book kernel, outputs) over buffers kept between calls, and
turns what the call produced into rows (:mod:`tapeflow.book.rows`); a batch that completes nothing
builds no table. Its state is numpy arrays in plain objects, so it pickles (Bytewax recovery);
the buffers only carry one call's outputs and are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from kernels import _l2state
from kernels import book_stage as kb
from kernels.l2book_numba import run as l2_run_numba
from kernels.l3book import grow as grow_l3
from kernels.l3book import new_l3_state
from tapeflow.book.anchors import NO_ANCHORS, Anchors
from tapeflow.book.rows import QuoteRows, snapshot_table
from tapeflow.errors import BookError, ConfigError
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT

# the columns of the kernels' ``x`` (kernels.book_stage.X_*) and, for L3, the order ids apart
_TAIL = ("flags", "ts_recv_ns", "sequence", "ts_event_ns")
FIELDS = {"l2": ("side", "action", "price_nanos", "size_nanos", *_TAIL),
          "l3": ("action", "side", "price_nanos", "size_nanos", *_TAIL)}
_SCHEMAS = {"l2": BOOK_DELTA.arrow_schema(), "l3": ORDER_EVENT.arrow_schema()}
_POSITIONS = {kind: [record.column_names.index(name) for name in FIELDS[kind]]
              for kind, record in (("l2", BOOK_DELTA), ("l3", ORDER_EVENT))}
_ORDER_ID = ORDER_EVENT.column_names.index("order_id")
# rows per kernel call: a whole table goes through in slices of this many (bounded buffers)
CHUNK_ROWS = 1 << 16
# an L3 book's first order table (it doubles on demand): small, because a re-anchor to a vendor's
# book (LOBSTER) scans the table, and a cleared book zeroes it (LOBSTER AMZN: ~600 live orders,
# 13,781 re-anchors; at 1 << 14 slots the scans were 2/3 of its replay)
L3_ORDER_CAPACITY = 1 << 10
_ROWS = {"l2": 4, "l3": 6}  # rows of the kernels' per-row best-level and snapshot arrays
# bid px, bid size, ask px, ask size among them (L3 rows also hold order counts), as a column index
_BBO_ROWS = {"l2": np.array([[3], [4], [5], [6]]), "l3": np.array([[3], [4], [6], [7]])}


# One call's grid instants at most, unless its batch is one row (which adds at most one gap,
# itself bounded by kernels.book_stage.MAX_GAP_STEPS): a larger batch is split in halves.
MAX_INSTANTS_PER_CALL = 2 * kb.MAX_GAP_STEPS


class _Split(Exception):
    """A batch would produce more grid instants than one call may hold, or holds several time
    jumps: it is run in halves."""


class _Buffers:
    """One instrument's kernel buffers (see :mod:`kernels.book_stage`), grown on demand."""

    def __init__(self, kind: str, levels: int) -> None:
        self.kind, self.levels = kind, levels
        self.cap_rows = self.cap_k = self.cap_m = 0
        self.rows(64)
        self.fit(8, 8)

    def rows(self, n: int) -> None:
        """Room for a batch of ``n`` rows."""
        if n > self.cap_rows:
            self.cap_rows = max(n, 2 * self.cap_rows)
            self.ints = np.zeros((3 + _ROWS[self.kind], self.cap_rows), np.int64)
            self.st = np.zeros((2, self.cap_rows), np.uint8)
            self.no_anchor = np.full(self.cap_rows, -1, np.int64)

    def fit(self, k: int, m: int) -> None:
        """Room for ``k`` snapshot slots and ``m`` grid instants (what a NEED_SPACE asked for):
        a book per slot, but only six numbers per instant, so a long quiet span costs no books."""
        if k > self.cap_k:
            self.cap_k = max(k, 2 * self.cap_k)
            self.books = np.zeros((_ROWS[self.kind], self.cap_k, self.levels), np.int64)
        if m > self.cap_m:
            self.cap_m = max(m, 2 * self.cap_m)
            self.inst = np.zeros((6, self.cap_m), np.int64)


class _Reference:
    """The plain-Python L2 oracle as a stage backend: it replays one whole table, from empty."""

    used = False


def _reference_run(state: Any, *cols: np.ndarray, levels: int, snapshot_rows: np.ndarray
                   ) -> tuple[_Reference, dict[str, np.ndarray]]:
    from kernels.reference import l2_replay_reference

    if not isinstance(state, _Reference) or state.used:
        raise ConfigError("the reference book backend replays one whole table per instrument "
                          "(BookStage.replay), not micro-batches")
    state.used = True
    return state, l2_replay_reference(*cols, levels=levels, snapshot_rows=snapshot_rows)


class InstrumentBook:
    """One instrument's book, grid position, pending book and last quote.

    Args:
        venue, symbol: the instrument.
        kind: ``l2`` or ``l3``.
        levels: snapshot depth.
        step_ns: grid spacing (> 0), 0 for a snapshot per published row, < 0 for none.
        quote_mode: ``kernels.book_stage.Q_*``.
        backend: L2 kernel (``numba``, ``jax``, ``reference``).
        start_synced: an L3 book is VALID before its first snapshot.
    """

    def __init__(self, venue: str, symbol: str, kind: str, *, levels: int, step_ns: int, quote_mode: int,
                 backend: str = "numba", start_synced: bool = False) -> None:
        self.venue, self.symbol, self.kind = venue, symbol, kind
        self.levels, self.step_ns, self.quote_mode, self.backend = levels, step_ns, quote_mode, backend
        if kind == "l3":
            self.book: Any = new_l3_state(order_capacity=L3_ORDER_CAPACITY, start_synced=start_synced)
        else:
            self.book = _Reference() if backend == "reference" else _l2state.new_state()
        self.grid = kb.new_grid()
        self.pend = kb.new_pending(levels)
        self.closed = False
        self.buffers: _Buffers | None = None
        self.anchors: Anchors | None = None  # the vendor's own book, when it comes with the events
        # time jumps not reported yet: (ts_event_ns, ts_recv_ns, sequence, from_recv_ns)
        self.jumps: list[tuple[int, int, int, int]] = []

    def __getstate__(self) -> dict[str, Any]:
        # the buffers only carry one call's outputs: a recovery snapshot need not store them
        return {**self.__dict__, "buffers": None}

    def step(self, table: pa.Table, rows: np.ndarray | None, quotes: list[QuoteRows],
             snaps: list[pa.Table]) -> None:
        """Apply this instrument's rows of ``table`` (all of them, or ``rows``), in order; append
        the best bid/offer rows and the ``book_snapshot`` rows of the instants made final (if any)."""
        for x, order_id in _chunks(table, self.kind, rows):
            self.step_matrix(x, order_id, quotes, snaps)

    def step_matrix(self, x: np.ndarray, order_id: np.ndarray | None, quotes: list[QuoteRows],
                    snaps: list[pa.Table]) -> None:
        """:meth:`step` on the kernel input already converted: ``x`` int64[8, n] of the ``FIELDS``
        columns as rows (C order), ``order_id`` uint64[n] for an L3 book."""
        if self.anchors is None or order_id is None:
            self._run(x, order_id, quotes, snaps, None)
            return
        taken = self.anchors.take(x, order_id)
        if taken is not None:
            self._run(*taken[:2], quotes, snaps, taken[2])
            self.anchors.done(taken[0])

    def add_anchors(self, snapshots: pa.Table) -> None:
        """The vendor's own books of this instrument (``book_snapshot`` rows whose ``sequence`` is
        that of the event they follow), to re-anchor an L3 book to (:mod:`tapeflow.book.anchors`)."""
        if self.kind == "l3" and snapshots.num_rows:
            if self.anchors is None:
                self.anchors = Anchors()
            self.anchors.add(snapshots)

    def flush(self, quotes: list[QuoteRows], snaps: list[pa.Table]) -> None:
        """End of stream: run the events held back for vendor rows that never came."""
        held = self.anchors.flush() if self.anchors is not None else None
        if held is not None:
            self._run(*held, quotes, snaps, self.anchors.rows(held[0]) if self.anchors else None)

    def release(self, quotes: list[QuoteRows], snaps: list[pa.Table]) -> None:
        """Run the events held back whose vendor rows came since (with no events of their own)."""
        if self.anchors is not None and self.anchors.held is not None:
            self.step_matrix(np.zeros((kb.N_X, 0), np.int64), np.zeros(0, np.uint64), quotes, snaps)

    @property
    def reanchors(self) -> int:
        """Sides re-anchored to the vendor's book so far (L3)."""
        return int(self.book.meta[5]) if self.kind == "l3" else 0

    def _run(self, x: np.ndarray, order_id: np.ndarray | None, quotes: list[QuoteRows],
             snaps: list[pa.Table], anchor_row: np.ndarray | None) -> None:
        buf = self.buffers
        if buf is None:
            buf = self.buffers = _Buffers(self.kind, self.levels)
        if x.shape[1] > buf.cap_rows:
            buf.rows(x.shape[1])
        try:
            if self.kind == "l3" or self.backend == "numba":
                self._compiled(buf, x, order_id, anchor_row)
            else:
                self._generic(buf, x)
        except _Split:
            # one call's grid instants are bounded, and it holds one time jump at most
            half = x.shape[1] // 2
            for lo, hi in ((0, half), (half, x.shape[1])):
                ids = None if order_id is None else order_id[lo:hi]
                part = None if anchor_row is None else anchor_row[lo:hi]
                self._run(np.ascontiguousarray(x[:, lo:hi]), ids, quotes, snaps, part)
            return
        grid = self.grid
        if grid[kb.R_JUMPS]:
            row = int(grid[kb.R_JUMP_ROW])
            self.jumps.append((int(x[kb.X_EVENT, row]), int(x[kb.X_RECV, row]), int(x[kb.X_SEQ, row]),
                               int(grid[kb.R_JUMP_FROM])))
        if grid[kb.R_NQ]:
            at = buf.ints[2, :grid[kb.R_NQ]].copy()
            quotes.append(QuoteRows(self.venue, self.symbol, x[kb.X_EVENT, at], x[kb.X_RECV, at],
                                    x[kb.X_SEQ, at], buf.ints[_BBO_ROWS[self.kind], at], buf.st[0, at]))
        if grid[kb.R_M]:
            out = buf.inst[:5, :grid[kb.R_M]].copy()
            snaps.append(self._snapshot_rows(buf.books, out[1], out[0], out[2], out[3], out[4]))

    def advance(self, watermark_ns: int) -> pa.Table | None:
        """Emit the grid instants before ``watermark_ns`` with the pending book (see BookStage.advance)."""
        step = self.step_ns
        if self.closed or not self.grid[kb.G_STARTED] or step <= 0:
            return None
        if watermark_ns - int(self.grid[kb.G_NEXT]) > kb.max_gap_ns(step):
            # a clock that jumped: no grid across the span; the instrument's next row starts it again
            self.jumps.append((watermark_ns, watermark_ns, -1, int(self.grid[kb.G_RECV])))
            self.grid[kb.G_STARTED] = 0
            return None
        grid = np.arange(int(self.grid[kb.G_NEXT]), watermark_ns, step, dtype=np.int64)
        if not len(grid):
            return None
        self.grid[kb.G_NEXT] = int(grid[-1]) + step
        return self._pending_rows(grid)

    def close(self) -> pa.Table | None:
        """End of stream: the grid's last instant (the first at or after the last arrival), if not
        emitted yet; the book takes no more rows."""
        step = self.step_ns
        out = None
        if not self.closed and self.grid[kb.G_STARTED] and step > 0:
            last = -(-int(self.grid[kb.G_RECV]) // step) * step
            if self.grid[kb.G_NEXT] == last:
                out = self._pending_rows(np.array([last], np.int64))
                self.grid[kb.G_NEXT] = last + step
        self.closed = True
        return out

    def _pending_rows(self, ts_ns: np.ndarray) -> pa.Table:
        m, g = len(ts_ns), self.grid
        no_slots = np.zeros((_ROWS[self.kind], 1, self.levels), np.int64)
        return self._snapshot_rows(no_slots, np.full(m, -1, np.int64), ts_ns, np.full(m, g[kb.G_ROW_RECV]),
                                   np.full(m, g[kb.G_SEQ]), np.full(m, g[kb.G_STATUS]))

    def _snapshot_rows(self, books: np.ndarray, owner: np.ndarray, ts_ns: np.ndarray, recv_ns: np.ndarray,
                       sequence: np.ndarray, status: np.ndarray) -> pa.Table:
        """One row per instant: the book at slot ``owner`` of ``books``, or the pending one (-1)."""
        ask = _ROWS[self.kind] // 2
        bids = kb.book_lists(books, owner, self.pend, 0, 0)
        asks = kb.book_lists(books, owner, self.pend, ask, 2)
        return snapshot_table(self.venue, self.symbol, self.levels, ts_ns, recv_ns, sequence, status, bids,
                              asks)

    def _compiled(self, buf: _Buffers, x: np.ndarray, order_id: np.ndarray | None,
                  anchor_row: np.ndarray | None) -> None:
        """One kernel call per batch; again from where it stopped after a repair of the book."""
        start, planned = 0, False
        while True:
            b = self.book
            if order_id is None:
                code = kb.l2_step(x, b.bid_w, b.ask_w, b.sp_tick, b.sp_sz, b.meta, self.grid, self.pend,
                                  self.step_ns, self.quote_mode, buf.ints, buf.st, buf.books, buf.inst, start,
                                  planned)
            else:
                if anchor_row is None:
                    rows, books = buf.no_anchor[:x.shape[1]], NO_ANCHORS
                else:
                    assert self.anchors is not None
                    rows, books = anchor_row, self.anchors.books
                code = kb.l3_step(x, order_id, *b, self.grid, self.pend, self.step_ns, self.quote_mode,
                                  buf.ints, buf.st, buf.books, buf.inst, start, planned, rows, books)
            if code == kb.DONE:
                return
            if code == kb.NEED_SPACE:
                self._fit(buf, x)
                continue
            if code == kb.SPLIT:
                raise _Split
            # stopped before a row the L2 book cannot apply in place, or with an L3 table full:
            # repair (or grow) the book on the host and resume at that row
            start, planned = int(self.grid[kb.R_STOP]), True
            if order_id is None:
                side, action = x[kb.X_A], x[kb.X_B]
                self.book = _l2state.handle_halt(b, code, start, side, x[kb.X_PRICE], action, x[kb.X_FLAGS])
            else:
                self.book = grow_l3(b, 0 if anchor_row is None else self.anchors.books.shape[2])

    def _fit(self, buf: _Buffers, x: np.ndarray) -> None:
        """Grow the buffers to what the plan asked for, unless that is more instants than one call
        may produce and the batch can be split (nothing of the state changed yet)."""
        m = int(self.grid[kb.R_NEED_M])
        if m > MAX_INSTANTS_PER_CALL and x.shape[1] > 1:
            raise _Split
        buf.fit(int(self.grid[kb.R_NEED]), m)

    def drain_jumps(self) -> list[tuple[int, int, int, int]]:
        """The time jumps since the last call: (ts_event_ns, ts_recv_ns, sequence of the row that
        jumped (-1: a heartbeat), the running-max arrival it jumped from)."""
        out, self.jumps = self.jumps, []
        return out

    def _generic(self, buf: _Buffers, x: np.ndarray) -> None:
        # the same plan and finish around an L2 kernel not compiled with them (JAX, the reference)
        while (code := kb.plan(x, self.grid, self.step_ns, buf.ints, buf.books, buf.inst, 4)) != kb.DONE:
            if code == kb.SPLIT:
                raise _Split
            self._fit(buf, x)
        k, n = int(self.grid[kb.R_K]), x.shape[1]
        cols = [x[j] for j in (kb.X_A, kb.X_B, kb.X_PRICE, kb.X_SIZE, kb.X_FLAGS)]
        self.book, out = self._runner()(self.book, *cols, levels=self.levels,
                                        snapshot_rows=buf.ints[1, :k].copy())
        for j, name in enumerate(("bid_px", "bid_sz", "ask_px", "ask_sz")):
            buf.ints[3 + j, :n] = out[name]
            buf.books[j, :k] = out["snap_" + name]
        buf.st[0, :n] = out["status"]
        buf.inst[5, :k] = out["snap_status"]
        kb.finish(x, buf.ints, buf.st, buf.books, buf.inst, self.grid, self.pend, self.step_ns,
                  self.quote_mode, 4)

    def _runner(self) -> Callable[..., tuple[Any, dict[str, np.ndarray]]]:
        if self.backend == "jax":
            # imported on demand: JAX start-up costs seconds and enables x64 for the process
            from kernels.l2book import run as run_jax

            return run_jax
        return _reference_run if self.backend == "reference" else l2_run_numba


def _chunks(table: pa.Table, kind: str,
            rows: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The kernel inputs of ``table`` (of ``rows``) in slices of at most CHUNK_ROWS rows.

    ``x`` int64[8, n] holds the ``FIELDS[kind]`` columns as rows (one Arrow call converts them all: a
    column at a time costs ~1.5 us each, which a one-row batch would pay eight times); an L3
    slice's ``order_id`` comes apart (uint64 does not fit an int64 tensor).
    """
    if rows is None and table.schema.equals(_SCHEMAS[kind]):
        batches = table.to_batches(max_chunksize=CHUNK_ROWS)
        pick: list[int] = _POSITIONS[kind]
        oid = _ORDER_ID
    else:
        needed = [*FIELDS[kind], "order_id"] if kind == "l3" else list(FIELDS[kind])
        missing = [c for c in needed if c not in table.schema.names]
        if missing:
            raise BookError(f"a {kind} book input table has no {missing} column(s): {table.schema.names}")
        sub = table.select(needed)
        if rows is not None:
            sub = sub.take(pa.array(rows))
        batches = sub.to_batches(max_chunksize=CHUNK_ROWS)
        pick, oid = list(range(len(FIELDS[kind]))), len(FIELDS[kind])
    l3 = kind == "l3"
    # a column-major tensor, transposed: C-order [fields, rows], each field a contiguous row
    return [(b.select(pick).to_tensor(row_major=False).to_numpy().T, b.column(oid).to_numpy() if l3 else None)
            for b in batches if b.num_rows]


__all__ = ["CHUNK_ROWS", "FIELDS", "InstrumentBook"]
