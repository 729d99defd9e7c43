"""L2 (price-level) books from ``book_delta`` tables: per-event replay, snapshots and quotes.

:func:`replay_l2` and :class:`L2Book` give the kernels' per-row outputs (BBO, status, snapshots at
chosen rows) for one instrument. :func:`book_snapshots` and :func:`quotes_from_deltas` are the
table-level rebuild: the book stage (:class:`tapeflow.book.stage.BookStage`) over the whole table,
the same builder the live flow runs per micro-batch. ``backend="auto"`` is numba: exact, fastest
on CPU and ~1 us per call; ``jax`` runs the same semantics as a ``lax.scan`` (for accelerators),
``reference`` is the plain-Python oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kernels import _l2state
from kernels.l2book_numba import run as _run_numba
from kernels.reference import l2_replay_reference
from tapeflow.book.grid import grid_rows, instrument_groups
from tapeflow.book.stage import BookStage
from tapeflow.errors import BookError, ConfigError
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, QUOTE

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


def book_snapshots(deltas: pa.Table, *, levels: int, interval_ns: int | None = None,
                   backend: str = "auto") -> pa.Table:
    """Top-``levels`` snapshots of every instrument in a ``book_delta`` table.

    The book stage over the whole table (:meth:`tapeflow.book.stage.BookStage.replay`).

    Args:
        deltas: ``book_delta`` rows of any number of (venue, symbol), each in arrival order.
        levels: depth per side (lists hold only the levels that exist, best first).
        interval_ns: with a value, one row per grid instant (``ts_event_ns`` = the instant, the
            book after the last F_LAST row received by then, see :func:`grid_rows`); without,
            one row after every F_LAST row (``ts_event_ns`` of that row).
        backend: as in :func:`replay_l2`.

    Returns:
        A ``book_snapshot`` table, instruments in order of first row; ``flags`` is
        F_MAYBE_BAD_BOOK where the book was resyncing or crossed.

    Raises:
        BookError: ``deltas`` is not a ``book_delta`` table.
        ConfigError: a non-positive interval or an unknown backend.
    """
    if interval_ns is not None and interval_ns <= 0:
        raise ConfigError(f"interval_ns must be > 0, got {interval_ns}")
    stage = BookStage("l2", levels, interval_ns, quotes="none", backend=_check_backend(backend))
    return stage.replay({BOOK_DELTA.name: deltas})[BOOK_SNAPSHOT.name]


def quotes_from_deltas(deltas: pa.Table, *, backend: str = "auto") -> pa.Table:
    """Best bid and offer after every F_LAST row of each instrument, as ``quote`` rows.

    The book stage over the whole table with ``quotes="every"``. An empty side reads
    UNDEF_PRICE / 0; ``flags`` is F_MAYBE_BAD_BOOK where the book was resyncing or crossed.
    """
    stage = BookStage("l2", 1, None, quotes="every", snapshots=False, backend=_check_backend(backend))
    return stage.replay({BOOK_DELTA.name: deltas})[QUOTE.name]


__all__ = ["BACKENDS", "L2Book", "L2Replay", "book_snapshots", "grid_rows", "instrument_groups",
           "quotes_from_deltas", "replay_l2"]
