"""OKX v5 live book sync: the batch decoder's ``prevSeqId`` chain and signed CRC32, frame by frame.

Each ``books`` update must carry ``prevSeqId`` equal to the previous message's ``seqId`` (a
heartbeat update repeats it) and a checksum of the top 25 levels. A break of either means the
book is wrong; OKX sends a fresh snapshot when the channel is subscribed again, so that is the
resync (no REST book is needed).
"""

from __future__ import annotations

from typing import Any

import orjson

from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK
from tapeflow.venues.livesync import SYNCED, DecoderSync, SyncEvent, loss_events
from tapeflow.venues.okx import messages as m
from tapeflow.venues.okx.parse import OkxDecoder
from tapeflow.wire.capture import RECV, CaptureLine


def frame_book(data: bytes) -> tuple[str, str]:
    """``(instId, action)`` of a ``books`` frame; ``('', '')`` for anything else."""
    try:
        msg: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "", ""
    if not isinstance(msg, dict) or not isinstance(msg.get("arg"), dict):
        return "", ""
    arg = msg["arg"]
    if arg.get("channel") not in m.BOOK_CHANNELS or "event" in msg:
        return "", ""
    return str(arg.get("instId", "")), str(msg.get("action", ""))


class OkxSync(DecoderSync):
    """Live sync of OKX ``books`` and ``trades`` frames (see :mod:`tapeflow.venues.livesync`)."""

    venue = "okx"

    def __init__(self) -> None:
        super().__init__(OkxDecoder())

    def feed(self, ts_recv_ns: int, data: bytes, location: str) -> list[SyncEvent]:
        """Decode one frame and report the instruments it broke or re-anchored.

        Args:
            ts_recv_ns: capture time of the frame.
            data: the frame as received (the text ``pong`` included).
            location: where the frame is (journal file:line or a stream position), for dead letters.
        """
        dec, st = self.decoder, self.decoder.stats
        inst, action = frame_book(data)
        was_broken = inst in dec.unsynced
        book_before = dec.books.get(inst)
        before = (len(dec.deltas), st.total, st.links_total, len(st.failures))
        lost_before = set(dec.unsynced)
        dec.feed(CaptureLine(ts_recv_ns, RECV, "", data, location))
        rows_before, rows_after = before[0], len(dec.deltas)
        book = dec.books.get(inst)
        new_failures = st.failures[before[3]:]
        if book is not None and book is not book_before:
            if st.total > before[1]:  # a snapshot carries a checksum too
                self.stats.checksums += 1
                self.stats.checksums_ok += int(not new_failures)
            self.stats.snapshots += 1
            self.stats.resyncs += int(was_broken)
            return [SyncEvent(inst, SYNCED, book.seq_id,
                              f"{inst}: snapshot seqId {book.seq_id} at {location}")]
        if book is not None and not was_broken:
            checked_crc, checked_link = st.total > before[1], st.links_total > before[2]
            self.stats.checksums += int(checked_crc)
            self.stats.checksums_ok += int(checked_crc and not any("checksum" in f for f in new_failures))
            self.stats.links += int(checked_link)
            self.stats.links_ok += int(checked_link and not any("prevSeqId" in f for f in new_failures))
        lost = dec.unsynced - lost_before
        events: list[SyncEvent] = []
        if lost:
            seqs = {s: b.seq_id for s, b in dec.books.items() if s in lost}
            events += loss_events(lost, new_failures, seqs)
            self.stats.breaks += [e.detail for e in events]
            # a checksum break shows on this very message: hold the book in RESYNC before it
            self._marks.add(rows_before, rows_after, first=F_GAP, every=F_MAYBE_BAD_BOOK)
        elif was_broken and action:
            self._marks.add(rows_before, rows_after, every=F_MAYBE_BAD_BOOK)
        return events
