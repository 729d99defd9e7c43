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

from collections.abc import Iterable, Iterator, Sequence

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
                      interval_ns: int = INTERVAL_NS,
                      anchors: Sequence[pa.Table] = ()) -> tuple[pa.Table, pa.Table]:
    """Snapshots on the capture-time grid and BBO changes of an instrument from two days of rows.

    Args:
        events: ``order_event`` partitions of the day before and the day, in day order.
        deltas: ``book_delta`` partitions of the same days.
        levels: snapshot depth.
        interval_ns: grid spacing.
        anchors: the vendor's own ``book_snapshot`` partitions of the same days (LOBSTER's
            orderbook file, as decoded: never the rebuilt snapshots), which seed and re-anchor
            the L3 book (:mod:`tapeflow.book.anchors`).

    Returns:
        (``book_snapshot`` rows, ``quote`` rows of the rebuilt best bid/offer at each change),
        over both days: keep the day's own rows.
    """
    stage = BookStage("auto", levels, interval_ns)
    tables = {ORDER_EVENT.name: arrival_order(ORDER_EVENT, events),
              BOOK_DELTA.name: arrival_order(BOOK_DELTA, deltas)}
    if anchors:
        tables[BOOK_SNAPSHOT.name] = arrival_order(BOOK_SNAPSHOT, anchors)
    out = stage.replay(tables)
    return out[BOOK_SNAPSHOT.name], out[QUOTE.name]


def arrival_slices(record: RecordType, days: Sequence[Iterable[pa.Table]]) -> Iterator[pa.Table]:
    """:func:`arrival_order` over day partitions read in slices: the same rows in the same order,
    handed out in slices, never the days whole.

    Each day's slices come in the lake's order (``ts_recv_ns``, ties in write order); the days are
    merged as a stable sort of their concatenation would order them (ties: the earlier day first).
    """
    merged: Iterable[pa.Table] = iter(())
    for i, day in enumerate(days):
        merged = day if i == 0 else _merge_two(merged, day)
    for rows in merged:
        if rows.num_rows:
            yield rows


def _merge_two(first: Iterable[pa.Table], second: Iterable[pa.Table]) -> Iterator[pa.Table]:
    # A row of ``first`` may go once ``second`` has shown a row at or after its capture time (a
    # later row of ``second`` ties it at most, and ties go to ``first``); a row of ``second`` once
    # ``first`` has shown a row after it. One of the two buffers empties at each step.
    streams = [iter(first), iter(second)]
    buffers: list[pa.Table | None] = [None, None]
    ended = [False, False]
    while True:
        for i in (0, 1):
            while not ended[i] and (buffers[i] is None or not buffers[i].num_rows):
                buffers[i] = next(streams[i], None)
                ended[i] = buffers[i] is None
        if ended[0] and ended[1]:
            return
        if ended[0] or ended[1]:
            left = buffers[1] if ended[0] else buffers[0]
            if left is not None and left.num_rows:
                yield left
            yield from streams[1] if ended[0] else streams[0]
            return
        a, b = buffers  # both hold rows
        assert a is not None and b is not None
        ra, rb = a.column("ts_recv_ns").to_numpy(), b.column("ts_recv_ns").to_numpy()
        na = int(np.searchsorted(ra, rb[-1], side="right"))  # first's rows at or before second's last
        nb = int(np.searchsorted(rb, ra[-1], side="left"))  # second's rows before first's last
        out_a, out_b = a.slice(0, na), b.slice(0, nb)
        buffers = [a.slice(na), b.slice(nb)]
        if not nb:
            yield out_a
        elif not na:
            yield out_b
        else:
            both = pa.concat_tables([out_a, out_b])
            order = np.argsort(np.concatenate([ra[:na], rb[:nb]]), kind="stable")
            yield both.take(pa.array(order))


def rebuild_slices(events: Sequence[Iterable[pa.Table]], deltas: Sequence[Iterable[pa.Table]], *,
                   levels: int = LEVELS, interval_ns: int = INTERVAL_NS,
                   anchors: Sequence[Iterable[pa.Table]] = ()) -> Iterator[tuple[pa.Table, pa.Table]]:
    """:func:`rebuild_partition` over day partitions read in slices, in bounded memory.

    The book stage is fed the slices as micro-batches (as the live flow feeds it) and closed at the
    end; the (snapshot, quote) pieces it yields, concatenated, equal :func:`rebuild_partition`'s
    tables over the whole days. ``anchors``' slices go with the event slices they reach.
    """
    stage = BookStage("auto", levels, interval_ns)
    vendor = arrival_slices(BOOK_SNAPSHOT, anchors) if anchors else iter(())
    reached = np.iinfo(np.int64).min
    for record, days in ((ORDER_EVENT, events), (BOOK_DELTA, deltas)):  # the replay's order under auto
        for rows in arrival_slices(record, days):
            batch = {record.name: rows}
            if record is ORDER_EVENT:
                last = int(rows.column("ts_recv_ns").to_numpy().max())
                parts = []
                while reached <= last and (part := next(vendor, None)) is not None:
                    parts.append(part)
                    reached = int(part.column("ts_recv_ns").to_numpy().max())
                if parts:
                    batch[BOOK_SNAPSHOT.name] = concat(BOOK_SNAPSHOT, parts)
            out = stage.apply(batch)
            yield out[BOOK_SNAPSHOT.name], out[QUOTE.name]
    out = stage.close()
    yield out[BOOK_SNAPSHOT.name], out[QUOTE.name]


def maybe_bad_rows(table: pa.Table) -> int:
    """Rows of a snapshot or quote table flagged ``F_MAYBE_BAD_BOOK`` (resyncing or crossed book)."""
    if not table.num_rows:
        return 0
    return int(np.count_nonzero(table.column("flags").to_numpy() & F_MAYBE_BAD_BOOK))


__all__ = ["INTERVAL_NS", "LEVELS", "arrival_order", "arrival_slices", "maybe_bad_rows", "rebuild_partition",
           "rebuild_slices"]
