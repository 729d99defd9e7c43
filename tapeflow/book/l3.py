"""Rebuild order-by-order (L3) books from ``order_event`` tables: BBO per event and top-N snapshots.

:func:`replay_l3` gives the kernel's per-row outputs for one instrument; :func:`l3_book_snapshots`
is the table-level rebuild, the book stage (:class:`tapeflow.book.stage.BookStage`) over the whole
table. The kernel is :mod:`kernels.l3book` (numba), its oracle :mod:`kernels.reference_l3`.
Databento's rule applies throughout: a book is published only at rows carrying ``F_LAST`` (the
last record of a venue event), so time-grid snapshots read the book as of the last such row,
never a half-applied event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kernels.l3book import l3_replay
from kernels.reference_l3 import (
    ANOM_BAD_EVENT,
    ANOM_DUPLICATE_ADD,
    ANOM_SIZE_UNDERFLOW,
    ANOM_UNKNOWN_ORDER,
    l3_replay_reference,
)
from tapeflow.book.grid import instrument_groups
from tapeflow.book.stage import BookStage
from tapeflow.errors import BookError
from tapeflow.schemas.records import BOOK_SNAPSHOT, F_LAST, ORDER_EVENT

ANOMALY_NAMES = {ANOM_UNKNOWN_ORDER: "unknown_order", ANOM_SIZE_UNDERFLOW: "size_underflow",
                 ANOM_DUPLICATE_ADD: "duplicate_add", ANOM_BAD_EVENT: "bad_event"}
_KERNEL_COLUMNS = ("order_id", "action", "side", "price_nanos", "size_nanos", "flags")


@dataclass
class L3Replay:
    """Per-event outputs of an L3 replay of one instrument (arrays aligned with the input rows).

    Attributes:
        bbo: ``bid_px, bid_sz, bid_ct, ask_px, ask_sz, ask_ct`` int64[n] (1e-9 units; ``ct`` is
            the number of resting orders), ``status`` uint8[n] (0 valid, 1 resync, 2 crossed) and
            ``anomaly`` uint8[n] (0 none, see ``ANOMALY_NAMES``).
        published: bool[n], rows carrying ``F_LAST``: judge the book only there.
        snaps: ``snap_*`` int64[k, levels] and ``snap_status`` uint8[k] for the rows asked for.
        anomaly_counts: number of rows per anomaly name (every name present, zeros included).
    """

    bbo: dict[str, np.ndarray]
    published: np.ndarray
    snaps: dict[str, np.ndarray]
    anomaly_counts: dict[str, int]


def replay_l3(events: pa.Table, *, levels: int = 10, snapshot_rows: np.ndarray | None = None,
              start_synced: bool = False, backend: str = "numba") -> L3Replay:
    """Replay the ``order_event`` rows of ONE instrument in arrival order.

    Args:
        events: an ``order_event`` table (one venue/symbol), in arrival order.
        levels: depth recorded at ``snapshot_rows``.
        snapshot_rows: ascending row indices after which to record the top ``levels`` levels.
        start_synced: report VALID before any snapshot (a feed known to start from an empty book).
        backend: ``numba`` (the kernel) or ``reference`` (plain Python, for checks).

    Raises:
        BookError: the table is not an ``order_event`` table or the backend is unknown.
    """
    if events.schema.names != ORDER_EVENT.column_names:
        raise BookError(f"replay_l3 needs an order_event table, got columns {events.schema.names}")
    if backend not in ("numba", "reference"):
        raise BookError(f"unknown L3 backend {backend!r}; use numba or reference")
    cols = [_column(events, name) for name in _KERNEL_COLUMNS]
    run = l3_replay if backend == "numba" else l3_replay_reference
    out = run(*cols, levels=levels, snapshot_rows=snapshot_rows, start_synced=start_synced)
    snaps = {k: v for k, v in out.items() if k.startswith("snap_")}
    bbo = {k: v for k, v in out.items() if not k.startswith("snap_")}
    counts = np.bincount(bbo["anomaly"], minlength=len(ANOMALY_NAMES) + 1)
    return L3Replay(bbo=bbo, published=(cols[-1] & F_LAST) != 0, snaps=snaps,
                    anomaly_counts={name: int(counts[code]) for code, name in ANOMALY_NAMES.items()})


def l3_book_snapshots(events: pa.Table, *, levels: int = 10, interval_ns: int | None = None,
                      start_synced: bool = False, anchors: pa.Table | None = None) -> pa.Table:
    """Top-``levels`` ``book_snapshot`` rows of every instrument in an ``order_event`` table.

    The book stage over the whole table (:meth:`tapeflow.book.stage.BookStage.replay`). With
    ``interval_ns``, one row per grid instant ``k * interval_ns`` (UTC ns) from the first to just
    past the last published event of each instrument, holding the book after the last ``F_LAST``
    row received at or before that instant (``ts_event_ns`` = the grid instant). Without it, one
    row after every published event (``ts_event_ns`` = that event's). Arrival time is
    ``ts_recv_ns`` (the feed's sort key). Rows whose book was not valid (resyncing, crossed) carry
    ``F_MAYBE_BAD_BOOK``.

    Args:
        events: an ``order_event`` table, any number of venue/symbol pairs, arrival order within each.
        levels: depth per side (lists hold only the levels that exist, best first).
        interval_ns: grid spacing in ns, or None for a row per published event.
        start_synced: see :func:`replay_l3`.
        anchors: the vendor's own ``book_snapshot`` rows (LOBSTER's orderbook file): the book is
            seeded and re-anchored from them (:mod:`tapeflow.book.anchors`).

    Raises:
        BookError: ``interval_ns`` is not positive, or ``events`` is not an ``order_event`` table.
    """
    if interval_ns is not None and interval_ns <= 0:
        raise BookError(f"interval_ns must be positive, got {interval_ns}")
    stage = BookStage("l3", levels, interval_ns, quotes="none", start_synced=start_synced)
    tables = {ORDER_EVENT.name: events}
    if anchors is not None:
        tables[BOOK_SNAPSHOT.name] = anchors
    return stage.replay(tables)[BOOK_SNAPSHOT.name]


def instrument_rows(events: pa.Table) -> list[np.ndarray]:
    """Row indices of each venue/symbol pair, in first-seen order, arrival order kept within."""
    return [rows for _, _, rows in instrument_groups(events)]


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).combine_chunks().to_numpy(zero_copy_only=False)


__all__ = ["ANOMALY_NAMES", "L3Replay", "instrument_rows", "l3_book_snapshots", "replay_l3"]
