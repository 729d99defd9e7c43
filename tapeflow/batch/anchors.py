"""The vendor's own book kept beside an instrument-day's events, as anchors of its book rebuild.

LOBSTER's orderbook file gives the top N levels after each message; its message file alone cannot
rebuild the book (the book does not start empty, events beyond the N-level window are absent), so
the L3 rebuild is seeded and re-anchored from those rows (:mod:`tapeflow.book.anchors`). The ingest
keeps them in the ``vendor_book_snapshot`` dataset, apart from the ``book_snapshot`` rows the book
assets rebuild and overwrite, so a re-materialized book reads the vendor's rows, never its own.

Only venues whose vendor rows are one per message, numbered like its order events, anchor: a
Databento MBP-10 file landed beside an MBO file of the same instrument-day is another feed, merged
by capture time, and stays out of the MBO book.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from tapeflow.batch.slices import read_slices
from tapeflow.batch.targets import Target
from tapeflow.schemas.batch import VENDOR_BOOK_SNAPSHOT
from tapeflow.venues.lobster.messages import VENUE as LOBSTER

__all__ = ["ANCHORED_VENUES", "anchor_slices"]

# venues whose kept vendor book is the book after each of their messages (sequence = the message's)
ANCHORED_VENUES = frozenset({LOBSTER})


def anchor_slices(lake: Path, days: Sequence[Target]) -> list[Iterator[pa.Table]]:
    """The kept vendor book rows of ``days`` (one instrument, in day order), each day in slices.

    Returns:
        One slice iterator per day for :func:`tapeflow.book.partition.rebuild_slices`'s
        ``anchors``; empty (no anchors) for a venue not in :data:`ANCHORED_VENUES`.
    """
    if not days or any(t.venue not in ANCHORED_VENUES for t in days):
        return []
    return [read_slices(VENDOR_BOOK_SNAPSHOT, lake, t) for t in days]
