"""Rebuild books from normalized deltas: BBO per event and top-N snapshots.

The one entry point both runtimes call. The fast kernels live in ``kernels/``; this module
picks the backend, groups by instrument and turns arrays into ``book_snapshot`` / ``quote``
tables. ``backend="auto"`` is numba: it is exact, fastest on CPU and costs ~1 us per call, so it
serves whole partitions and one-event micro-batches alike; ``jax`` runs the same semantics as a
``lax.scan`` (for accelerators), ``reference`` is the plain-Python oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kernels import _l2state
from kernels.l2book_numba import run as _run_numba
from kernels.reference import VALID, l2_replay_reference
from tapeflow.errors import BookError, ConfigError
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, F_LAST, F_MAYBE_BAD_BOOK, QUOTE, UNDEF_PRICE

BACKENDS = ("auto", "numba", "jax", "reference")
_COLS = ("side", "action", "price_nanos", "size_nanos", "flags")
_SNAP_KEYS = ("snap_bid_px", "snap_bid_sz", "snap_ask_px", "snap_ask_sz")


@dataclass
class L2Replay:
    """Per-event outputs of an L2 replay of one instrument (arrays aligned with the input rows).

    ``bbo`` holds ``bid_px, bid_sz, ask_px, ask_sz`` int64[n] and ``status`` uint8[n]
    (0 valid, 1 resync, 2 crossed); ``snaps`` holds ``snap_*`` arrays [k, levels] for the rows
    asked for.
    """

    bbo: dict[str, np.ndarray]
    snaps: dict[str, np.ndarray]


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown book backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return "numba" if backend == "auto" else backend


def _runner(backend: str) -> Callable:
    if backend == "jax":
        # imported on demand: JAX start-up costs seconds and enables x64 for the process
        from kernels.l2book import run as run_jax

        return run_jax
    return _run_numba


def _split(out: dict[str, np.ndarray]) -> L2Replay:
    return L2Replay(bbo={k: v for k, v in out.items() if not k.startswith("snap_")},
                    snaps={k: v for k, v in out.items() if k.startswith("snap_")})


def _arrays(deltas: pa.Table) -> list[np.ndarray]:
    if deltas.schema.names != BOOK_DELTA.column_names:
        raise BookError(f"replay_l2 needs a book_delta table, got columns {deltas.schema.names}")
    return [deltas.column(n).to_numpy() for n in _COLS]


def replay_l2(deltas: pa.Table, *, levels: int = 10, snapshot_rows: np.ndarray | None = None,
              backend: str = "auto") -> L2Replay:
    """Replay the ``book_delta`` rows of ONE instrument in order, from an empty book.

    Args:
        deltas: a ``book_delta`` table (one venue/symbol), in arrival order.
        levels: depth recorded at ``snapshot_rows``.
        snapshot_rows: row indices after which to record the top ``levels`` levels.
        backend: ``auto``, ``jax``, ``numba`` or ``reference``.

    Returns:
        Per-row BBO and status, and the snapshots asked for.

    Raises:
        BookError: ``deltas`` is not a ``book_delta`` table.
        ConfigError: unknown backend.
    """
    backend = _check_backend(backend)
    cols = _arrays(deltas)
    if backend == "reference":
        return _split(l2_replay_reference(*cols, levels=levels, snapshot_rows=snapshot_rows))
    _, out = _runner(backend)(_l2state.new_state(), *cols, levels=levels, snapshot_rows=snapshot_rows)
    return _split(out)


class L2Book:
    """A live book for one instrument, fed micro-batches (a Bytewax operator keeps one per key).

    Example:
        ``book = L2Book(); rep = book.apply(batch, snapshot_rows=np.array([len(batch) - 1]))``
    """

    def __init__(self, *, backend: str = "auto", tick_nanos: int = 0,
                 window_ticks: int = _l2state.DEFAULT_WINDOW_TICKS) -> None:
        self.backend = _check_backend(backend)
        if self.backend == "reference":
            raise ConfigError("L2Book keeps kernel state; use backend numba or jax")
        self._run = _runner(self.backend)
        self.state = _l2state.new_state(window_ticks=window_ticks, tick_nanos=tick_nanos)

    def apply(self, deltas: pa.Table, *, levels: int = 0, snapshot_rows: np.ndarray | None = None
              ) -> L2Replay:
        """Apply the next rows of this instrument; outputs are aligned with ``deltas``."""
        self.state, out = self._run(self.state, *_arrays(deltas), levels=levels, snapshot_rows=snapshot_rows)
        return _split(out)

    def levels(self) -> tuple[dict[int, int], dict[int, int]]:
        """Every level now in the book: ``({bid price_nanos: size}, {ask price_nanos: size})``."""
        state = self.state if isinstance(self.state, _l2state.L2State) else _from_device(self.state)
        return _l2state.levels(state)


def _from_device(book: object) -> _l2state.L2State:
    from kernels.l2book import from_book

    return from_book(book)


def instrument_groups(deltas: pa.Table) -> list[tuple[str, str, np.ndarray]]:
    """``(venue, symbol, row indices in arrival order)`` per instrument, in order of first row."""
    if deltas.num_rows == 0:
        return []
    keys = []
    for name in ("venue", "symbol"):
        enc = deltas.column(name).combine_chunks().dictionary_encode()
        keys.append((enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary.to_pylist()))
    (vi, vnames), (si, snames) = keys
    code = vi * (len(snames) + 1) + si
    order = np.argsort(code, kind="stable")
    bounds = np.flatnonzero(np.diff(code[order])) + 1
    groups = [(int(g[0]), g) for g in np.split(order, bounds)]
    groups.sort()
    return [(vnames[vi[first]], snames[si[first]], rows) for first, rows in groups]


def grid_rows(arrival_ns: np.ndarray, interval_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """A time grid over published rows and, per instant, the last of them received by then.

    Arrival (``ts_recv_ns``, the feed's sort key) decides, through a running max, so a row that
    came late does not slip before rows received ahead of it. The grid is every multiple of
    ``interval_ns`` from the first arrival up to and including the first one at or after the last
    arrival, so no instant comes before the first row. The L2 and L3 books share this rule.

    Args:
        arrival_ns: int64[n] arrival times of the rows a snapshot may show, in replay order.
        interval_ns: grid spacing.

    Returns:
        (grid instants int64[k], indices into ``arrival_ns`` int64[k]).
    """
    if interval_ns <= 0:
        raise ConfigError(f"interval_ns must be > 0, got {interval_ns}")
    if len(arrival_ns) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    running = np.maximum.accumulate(arrival_ns)
    first = -(-int(running[0]) // interval_ns) * interval_ns
    last = -(-int(running[-1]) // interval_ns) * interval_ns
    grid = np.arange(first, last + 1, interval_ns, dtype=np.int64)
    return grid, (np.searchsorted(running, grid, side="right") - 1).astype(np.int64)


def _lists(px: np.ndarray, sz: np.ndarray) -> tuple[pa.Array, pa.Array]:
    keep = px != UNDEF_PRICE
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    return (pa.ListArray.from_arrays(pa.array(offsets), pa.array(px[keep], pa.int64())),
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(sz[keep], pa.int64())))


def book_snapshots(deltas: pa.Table, *, levels: int, interval_ns: int | None = None,
                   backend: str = "auto") -> pa.Table:
    """Top-``levels`` snapshots of every instrument in a ``book_delta`` table.

    Args:
        deltas: ``book_delta`` rows of any number of (venue, symbol), each in arrival order.
        levels: depth per side (lists hold only the levels that exist, best first).
        interval_ns: with a value, one row per grid instant (``ts_event_ns`` = the instant, the
            book after the last F_LAST row received by then, see :func:`grid_rows`); without,
            one row after every F_LAST row (``ts_event_ns`` of that row).
        backend: as in :func:`replay_l2`.

    Returns:
        A ``book_snapshot`` table; ``flags`` is F_MAYBE_BAD_BOOK where the book was resyncing or
        crossed.
    """
    parts = []
    for venue, symbol, idx in instrument_groups(deltas):
        sub = deltas.take(pa.array(idx))
        published = np.flatnonzero(sub.column("flags").to_numpy() & F_LAST)
        if interval_ns is None:
            rows, stamp = published, sub.column("ts_event_ns").to_numpy()[published]
        else:
            stamp, pick = grid_rows(sub.column("ts_recv_ns").to_numpy()[published], interval_ns)
            rows = published[pick]
        if not len(rows):
            continue
        rep = replay_l2(sub, levels=levels, snapshot_rows=rows, backend=backend)
        bid_px, bid_sz = _lists(rep.snaps["snap_bid_px"], rep.snaps["snap_bid_sz"])
        ask_px, ask_sz = _lists(rep.snaps["snap_ask_px"], rep.snaps["snap_ask_sz"])
        bad = np.where(rep.snaps["snap_status"] != VALID, F_MAYBE_BAD_BOOK, 0).astype(np.uint8)
        parts.append(BOOK_SNAPSHOT.table(
            {"ts_event_ns": stamp, "ts_recv_ns": sub.column("ts_recv_ns").to_numpy()[rows],
             "sequence": sub.column("sequence").to_numpy()[rows], "bid_price_nanos": bid_px,
             "bid_size_nanos": bid_sz, "ask_price_nanos": ask_px, "ask_size_nanos": ask_sz, "flags": bad},
            constants={"venue": venue, "symbol": symbol, "levels": levels}))
    return pa.concat_tables(parts) if parts else BOOK_SNAPSHOT.empty_table()


def quotes_from_deltas(deltas: pa.Table, *, backend: str = "auto") -> pa.Table:
    """Best bid and offer after every F_LAST row of each instrument, as ``quote`` rows.

    An empty side reads UNDEF_PRICE / 0; ``flags`` is F_MAYBE_BAD_BOOK where the book was
    resyncing or crossed.
    """
    parts = []
    for venue, symbol, idx in instrument_groups(deltas):
        sub = deltas.take(pa.array(idx))
        rows = np.flatnonzero(sub.column("flags").to_numpy() & F_LAST)
        if not len(rows):
            continue
        bbo = replay_l2(sub, levels=0, backend=backend).bbo
        bad = np.where(bbo["status"][rows] != VALID, F_MAYBE_BAD_BOOK, 0).astype(np.uint8)
        parts.append(QUOTE.table(
            {"ts_event_ns": sub.column("ts_event_ns").to_numpy()[rows],
             "ts_recv_ns": sub.column("ts_recv_ns").to_numpy()[rows],
             "sequence": sub.column("sequence").to_numpy()[rows],
             "bid_price_nanos": bbo["bid_px"][rows], "bid_size_nanos": bbo["bid_sz"][rows],
             "ask_price_nanos": bbo["ask_px"][rows], "ask_size_nanos": bbo["ask_sz"][rows], "flags": bad},
            constants={"venue": venue, "symbol": symbol}))
    return pa.concat_tables(parts) if parts else QUOTE.empty_table()
