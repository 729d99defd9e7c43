"""The books of one lake partition (an instrument-day), as the Dagster ``book`` assets build them.

A day is rebuilt from its own rows and the day before's: a book starts from the previous day's
rows (a session and its snapshot may begin before midnight), so it needs a snapshot (DBN
start-of-day records, a venue REST snapshot) within those two days. The rows of both days are
merged back into capture order and replayed by the book stage (:meth:`BookStage.replay`, the live
flow's own builder) with the grid of ``tapeflow book``: order-by-order input through the L3 book,
price-level input through the L2 book, L3 winning when a venue yields both. The caller keeps the
rows of the day it writes (the grid's last instant may fall on the next midnight: that row is the
next day's first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.book.stage import BookStage
from tapeflow.schemas import RecordType, concat
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, F_MAYBE_BAD_BOOK, ORDER_EVENT, QUOTE

LEVELS = 10
INTERVAL_NS = 1_000_000_000


def arrival_order(record: RecordType, days: Sequence[pa.Table]) -> pa.Table:
    """Rows of consecutive day partitions (in day order) merged back into capture order.

    Partitions are split by venue day, so a row captured after midnight may file under the day
    before; a stable sort by ``ts_recv_ns`` (the lake's own sort key) restores the feed's order
    and keeps the rows of one venue event, which share a capture time, in their order.
    """
    rows = concat(record, list(days))
    if not rows.num_rows:
        return rows
    if rows.column("ts_recv_ns").null_count:
        return rows.take(pc.sort_indices(rows, [("ts_recv_ns", "ascending")]))
    recv = rows.column("ts_recv_ns").to_numpy()
    back = np.flatnonzero(recv[1:] < recv[:-1])
    if not len(back):
        return rows  # already in capture order (each day is sorted; no row crossed midnight)
    # Only rows between the first and the last step back can move (a stable sort keeps every row
    # outside that window where it is): sort the window and leave the rest of the table uncopied.
    order = np.argsort(recv, kind="stable")
    moved = np.flatnonzero(order != np.arange(len(order)))
    lo, hi = int(moved[0]), int(moved[-1]) + 1
    window = rows.slice(lo, hi - lo).take(pa.array(order[lo:hi] - lo))
    return pa.concat_tables([rows.slice(0, lo), window, rows.slice(hi)])


def rebuild_partition(events: Sequence[pa.Table], deltas: Sequence[pa.Table], *, levels: int = LEVELS,
                      interval_ns: int = INTERVAL_NS) -> tuple[pa.Table, pa.Table]:
    """Snapshots on the capture-time grid and BBO changes of an instrument from two days of rows.

    Args:
        events: ``order_event`` partitions of the day before and the day, in day order.
        deltas: ``book_delta`` partitions of the same days.
        levels: snapshot depth.
        interval_ns: grid spacing.

    Returns:
        (``book_snapshot`` rows, ``quote`` rows of the rebuilt best bid/offer at each change),
        over both days: keep the day's own rows.
    """
    stage = BookStage("auto", levels, interval_ns)
    out = stage.replay({ORDER_EVENT.name: arrival_order(ORDER_EVENT, events),
                        BOOK_DELTA.name: arrival_order(BOOK_DELTA, deltas)})
    return out[BOOK_SNAPSHOT.name], out[QUOTE.name]


def maybe_bad_rows(table: pa.Table) -> int:
    """Rows of a snapshot or quote table flagged ``F_MAYBE_BAD_BOOK`` (resyncing or crossed book)."""
    if not table.num_rows:
        return 0
    return int(np.count_nonzero(table.column("flags").to_numpy() & F_MAYBE_BAD_BOOK))


__all__ = ["INTERVAL_NS", "LEVELS", "arrival_order", "maybe_bad_rows", "rebuild_partition"]
