"""Decode files of any format and rebuild their books into top-N snapshots."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from tapeflow.errors import TapeflowError
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, ORDER_EVENT
from tapeflow.wire.capture import Decoded, merge
from tapeflow.wire.registry import get_format


def snapshots_for_format(format_name: str, paths: Sequence[Path], *, levels: int, interval_ns: int | None,
                         on_chunk: Callable[[Decoded], object] | None = None) -> tuple[pa.Table, int]:
    """Rebuild the book of every instrument in ``paths``.

    Order-by-order input (``order_event``) goes through the L3 book, price-level input
    (``book_delta``) through the L2 book; L3 wins when a format yields both, since the L2 rows are
    then an aggregation of the same events.

    ``on_chunk`` sees each decoded chunk as it comes (the CLI's progress bar counts its bytes).

    Returns:
        (``book_snapshot`` table, number of book events replayed).

    Raises:
        TapeflowError: the files hold no book events.
    """
    chunks = []
    for chunk in get_format(format_name).decode(paths):
        chunks.append(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    tables = merge(chunks)
    events = tables.get(ORDER_EVENT.name)
    if events is not None and events.num_rows:
        from tapeflow.book.l3 import l3_book_snapshots

        # a vendor's own book beside its events (LOBSTER's orderbook file) anchors the rebuild
        return l3_book_snapshots(events, levels=levels, interval_ns=interval_ns,
                                 anchors=tables.get(BOOK_SNAPSHOT.name)), events.num_rows
    deltas = tables.get(BOOK_DELTA.name)
    if deltas is not None and deltas.num_rows:
        from tapeflow.book.l2 import book_snapshots

        return book_snapshots(deltas, levels=levels, interval_ns=interval_ns), deltas.num_rows
    given = tables.get(BOOK_SNAPSHOT.name)
    if given is not None and given.num_rows:
        return given, given.num_rows
    found = ", ".join(f"{k}={v.num_rows}" for k, v in tables.items()) or "nothing"
    raise TapeflowError(
        f"no book events (order_event or book_delta) in the {format_name} input; found {found}"
    )
