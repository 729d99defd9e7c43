"""Rebuild order-by-order (L3) books from ``order_event`` tables: BBO per event and top-N snapshots.

The entry point both runtimes call for L3 input; the kernel is :mod:`kernels.l3book` (numba), its
oracle :mod:`kernels.reference_l3`. Databento's rule applies throughout: a book is published only
at rows carrying ``F_LAST`` (the last record of a venue event), so time-grid snapshots read the
book as of the last such row, never a half-applied event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernels.l3book import l3_replay
from kernels.reference_l3 import (
    ANOM_BAD_EVENT,
    ANOM_DUPLICATE_ADD,
    ANOM_SIZE_UNDERFLOW,
    ANOM_UNKNOWN_ORDER,
    VALID,
    l3_replay_reference,
)
from tapeflow.book.l2 import grid_rows
from tapeflow.errors import BookError
from tapeflow.schemas import concat
from tapeflow.schemas.records import BOOK_SNAPSHOT, F_LAST, F_MAYBE_BAD_BOOK, ORDER_EVENT

ANOMALY_NAMES = {ANOM_UNKNOWN_ORDER: "unknown_order", ANOM_SIZE_UNDERFLOW: "size_underflow",
                 ANOM_DUPLICATE_ADD: "duplicate_add", ANOM_BAD_EVENT: "bad_event"}
_SNAPSHOT_COLUMNS = {"snap_bid_px": "bid_price_nanos", "snap_bid_sz": "bid_size_nanos",
                     "snap_ask_px": "ask_price_nanos", "snap_ask_sz": "ask_size_nanos"}
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
                      start_synced: bool = False) -> pa.Table:
    """Top-``levels`` ``book_snapshot`` rows of every instrument in an ``order_event`` table.

    With ``interval_ns``, one row per grid instant ``k * interval_ns`` (UTC ns) from the first to
    just past the last published event of each instrument, holding the book after the last
    ``F_LAST`` row received at or before that instant (``ts_event_ns`` = the grid instant). Without
    it, one row after every published event (``ts_event_ns`` = that event's). Arrival time is
    ``ts_recv_ns`` (the feed's sort key). Rows whose book was not valid (resyncing, crossed) carry
    ``F_MAYBE_BAD_BOOK``.

    Args:
        events: an ``order_event`` table, any number of venue/symbol pairs, arrival order within each.
        levels: depth per side (lists padded with UNDEF_PRICE / 0).
        interval_ns: grid spacing in ns, or None for a row per published event.
        start_synced: see :func:`replay_l3`.

    Raises:
        BookError: ``interval_ns`` is not positive.
    """
    if interval_ns is not None and interval_ns <= 0:
        raise BookError(f"interval_ns must be positive, got {interval_ns}")
    tables = [_snapshots_of_one(events.take(rows), levels, interval_ns, start_synced)
              for rows in instrument_rows(events)]
    return concat(BOOK_SNAPSHOT, tables)


def _snapshots_of_one(events: pa.Table, levels: int, interval_ns: int | None,
                      start_synced: bool) -> pa.Table:
    flags = _column(events, "flags")
    published = np.flatnonzero((flags & F_LAST) != 0)
    if not len(published):
        return BOOK_SNAPSHOT.empty_table()
    recv_ns = _column(events, "ts_recv_ns")
    if interval_ns is None:
        rows, ts_ns = published, _column(events, "ts_event_ns")[published]
    else:
        ts_ns, pick = grid_rows(recv_ns[published], interval_ns)
        rows = published[pick]
    replay = replay_l3(events, levels=levels, snapshot_rows=np.unique(rows), start_synced=start_synced)
    # rows may repeat on a sparse grid: map each grid instant to its unique snapshot
    pick = np.searchsorted(np.unique(rows), rows)
    s = replay.snaps
    cols = {
        "ts_event_ns": ts_ns,
        "ts_recv_ns": recv_ns[rows],
        "sequence": _column(events, "sequence")[rows],
        "levels": np.full(len(rows), levels, np.uint16),
        "flags": np.where(s["snap_status"][pick] == VALID, 0, F_MAYBE_BAD_BOOK).astype(np.uint8),
    }
    for snap_name, column in _SNAPSHOT_COLUMNS.items():
        cols[column] = _lists(s[snap_name][pick])
    return BOOK_SNAPSHOT.table(cols, constants={"venue": events.column("venue")[0].as_py(),
                                                "symbol": events.column("symbol")[0].as_py()})


def instrument_rows(events: pa.Table) -> list[np.ndarray]:
    """Row indices of each venue/symbol pair, in first-seen order, arrival order kept within."""
    if not events.num_rows:
        return []
    venue = pc.dictionary_encode(events.column("venue")).combine_chunks()
    symbol = pc.dictionary_encode(events.column("symbol")).combine_chunks()
    key = venue.indices.to_numpy().astype(np.int64) * (len(symbol.dictionary) + 1) + symbol.indices.to_numpy()
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first)
    return [np.flatnonzero(inverse == g) for g in order]


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).combine_chunks().to_numpy(zero_copy_only=False)


def _lists(matrix: np.ndarray) -> pa.Array:
    k, levels = matrix.shape
    offsets = np.arange(0, (k + 1) * levels, levels, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.reshape(-1), pa.int64()))


__all__ = ["ANOMALY_NAMES", "L3Replay", "instrument_rows", "l3_book_snapshots", "replay_l3"]
