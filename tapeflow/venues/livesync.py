"""What a venue's live book sync shares: its events, its counters, and the flags it adds to rows.

A live sync wraps a venue's existing batch decoder, so the rows a live client publishes are the
rows a batch decode of its journal gives. It adds two things the batch decoder cannot do:

* it says, right after each frame, which instruments lost sync (checksum mismatch, sequence gap)
  and which got a fresh snapshot, so the client can resubscribe at once;
* it flags the rows of a broken book: ``F_GAP`` on the first row of the message that showed the
  break (the book kernels then hold the instrument in RESYNC *before* applying it, where a batch
  decode only flags the next message), and ``F_MAYBE_BAD_BOOK`` on every book row until the
  fresh snapshot. Live rows therefore equal batch rows except for those two bits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK
from tapeflow.wire.capture import CaptureLine, Decoded

SYNCED = "synced"
CHECKSUM_MISMATCH = "checksum_mismatch"
GAP = "gap"
LIVE_FLAGS = F_GAP | F_MAYBE_BAD_BOOK  # the only bits where live rows may differ from batch rows


@dataclass(frozen=True)
class SyncEvent:
    """A change of one instrument's book sync.

    Attributes:
        symbol: the venue's instrument symbol.
        state: ``synced`` (a snapshot re-anchored the book), ``checksum_mismatch`` or ``gap``
            (the book is broken: resync it).
        sequence: the venue sequence where it happened (-1 when the venue has none).
        detail: what happened, with the offending values.
    """

    symbol: str
    state: str
    sequence: int = -1
    detail: str = ""

    @property
    def broken(self) -> bool:
        return self.state != SYNCED


@dataclass
class SyncStats:
    """Counters of one live sync; the acceptance oracles read them.

    Checks made on a book that was synced when the frame arrived are counted apart from those
    made on a book already known to be broken (those fail by construction and prove nothing).

    Attributes:
        checksums: venue checksums compared on a synced book; ``checksums_ok`` matched.
        links: sequence links checked on a synced book; ``links_ok`` linked.
        snapshots: snapshots applied (the first one per instrument included).
        resyncs: snapshots that re-anchored a broken book.
        breaks: ``symbol: why`` for every loss of sync, in order.
    """

    checksums: int = 0
    checksums_ok: int = 0
    links: int = 0
    links_ok: int = 0
    snapshots: int = 0
    resyncs: int = 0
    breaks: list[str] = field(default_factory=list)


class LiveSync(Protocol):
    """A venue's live sync: frames in (journaled already), records and sync events out."""

    venue: str
    stats: SyncStats

    @property
    def rows(self) -> int:
        """Rows decoded and not yet taken."""
        ...

    def feed(self, ts_recv_ns: int, data: bytes, location: str) -> list[SyncEvent]:
        """Decode one received frame; returns the sync changes it caused."""
        ...

    def take(self) -> dict[str, pa.Table]:
        """The records decoded since the last call (non-empty tables only)."""
        ...

    def broken(self) -> set[str]:
        """Instruments whose book is known broken and waits for a fresh snapshot."""
        ...


class RowMarks:
    """Flags to OR into ``book_delta`` rows of the decoder's current buffer, applied at take time."""

    def __init__(self) -> None:
        self._marks: list[tuple[int, int, int]] = []  # (row, end, flags) over rows [row, end)

    def add(self, start: int, end: int, *, first: int = 0, every: int = 0) -> None:
        """Flag rows ``[start, end)``: ``every`` on each, ``first`` on the first one too."""
        if end <= start:
            return
        if every:
            self._marks.append((start, end, every))
        if first:
            self._marks.append((start, start + 1, first))

    def apply(self, deltas: pa.Table | None) -> pa.Table | None:
        """``deltas`` with the marks applied; the marks are cleared (the decoder buffer restarts)."""
        marks, self._marks = self._marks, []
        if deltas is None or not marks:
            return deltas
        flags = deltas.column("flags").to_numpy().copy()
        for start, end, bits in marks:
            flags[start:end] |= np.uint8(bits)
        i = deltas.schema.get_field_index("flags")
        return deltas.set_column(i, deltas.schema.field(i), pa.array(flags, type=pa.uint8()))


class DecoderSync:
    """The half of a :class:`LiveSync` shared by venues whose batch decoder keeps ``unsynced``.

    Subclasses set ``venue``, pass their batch decoder, and write ``feed``; the rows the decoder
    buffered are handed out by :meth:`take` with the :class:`RowMarks` that ``feed`` recorded.
    """

    venue = ""

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder
        self.stats = SyncStats()
        self._marks = RowMarks()

    @property
    def rows(self) -> int:
        """Rows decoded and not yet taken."""
        return int(self.decoder.rows)

    def broken(self) -> set[str]:
        """Instruments whose book broke and waits for a fresh snapshot."""
        return set(self.decoder.unsynced)

    def take(self) -> dict[str, pa.Table]:
        """The records decoded since the last call (``book_delta``, ``trade``, ``rejected``)."""
        if not self.decoder.rows:
            return {}
        tables = self.decoder.flush(0, "live").tables
        marked = self._marks.apply(tables.get("book_delta"))
        if marked is not None:
            tables["book_delta"] = marked
        return dict(tables)


def loss_events(lost: set[str], failures: list[str], sequences: dict[str, int]) -> Iterator[SyncEvent]:
    """Events for instruments that lost sync in one frame.

    Args:
        lost: instruments newly broken by the frame.
        failures: the decoder's failure lines added by the frame (they name the instrument).
        sequences: the instrument's sequence at the break, where the venue has one.
    """
    for symbol in sorted(lost):
        why = [f for f in failures if f" {symbol} " in f]
        state = CHECKSUM_MISMATCH if any("checksum" in f for f in why) else GAP
        detail = "; ".join(why) if why else f"{symbol}: a book frame was rejected, the book missed it"
        yield SyncEvent(symbol, state, sequences.get(symbol, -1), detail)


class SyncDecoder:
    """A :class:`LiveSync` seen as the frame decoder a live connector feeds.

    The connector feeds every frame (as a ``CaptureLine`` naming its journal line) and flushes one
    chunk per micro-batch; the sync events each frame caused wait in :meth:`pop_events`.
    """

    def __init__(self, sync: LiveSync) -> None:
        self.sync = sync
        self.venue = sync.venue
        self._events: list[SyncEvent] = []

    @property
    def rows(self) -> int:
        return self.sync.rows

    def feed(self, line: CaptureLine) -> None:
        """Decode one frame; its sync events are kept for :meth:`pop_events`."""
        self._events += self.sync.feed(line.recv_ns, line.payload, line.location)

    def pop_events(self) -> list[SyncEvent]:
        """The sync events since the last call, in order."""
        events, self._events = self._events, []
        return events

    def flush(self, bytes_read: int, source: str) -> Decoded:
        """The records decoded since the last flush, as one chunk."""
        return Decoded(self.sync.take(), bytes_read, source)
