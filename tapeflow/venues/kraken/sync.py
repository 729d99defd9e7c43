"""Kraken live book sync: the batch decoder's CRC32 check after every update, as it happens.

Kraken publishes no sequence number and no REST book for websocket sync; the CRC32 ``c`` of the
top 10 levels on every update is the only integrity signal. A mismatch (a frame dropped,
reordered or altered on the way) breaks the pair's book; the remedy is to unsubscribe and
subscribe the pair's book again, which makes Kraken send a fresh snapshot.
"""

from __future__ import annotations

from typing import Any

import orjson

from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK
from tapeflow.venues.kraken.parse import KrakenDecoder
from tapeflow.venues.livesync import SYNCED, DecoderSync, SyncEvent, loss_events
from tapeflow.wire.capture import RECV, CaptureLine


def frame_pair(data: bytes) -> str:
    """The pair a Kraken public-channel frame is about ('' for control frames or bad JSON)."""
    try:
        msg: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(msg, list) and len(msg) >= 4 and isinstance(msg[-1], str):
        return msg[-1]
    return ""


class KrakenSync(DecoderSync):
    """Live sync of Kraken book-N and trade frames (see :mod:`tapeflow.venues.livesync`)."""

    venue = "kraken"

    def __init__(self) -> None:
        super().__init__(KrakenDecoder())

    def feed(self, ts_recv_ns: int, data: bytes, location: str) -> list[SyncEvent]:
        """Decode one frame and report the pairs it broke or re-anchored.

        Args:
            ts_recv_ns: capture time of the frame.
            data: the frame as received.
            location: where the frame is (journal file:line or a stream position), for dead letters.
        """
        dec = self.decoder
        pair = frame_pair(data)
        was_broken = pair in dec.unsynced
        book_before = dec.books.get(pair)
        rows_before, crc_before, failures_before = len(dec.deltas), dec.stats.total, len(dec.stats.failures)
        reorders_before = len(dec.stats.order_failures)
        lost_before = set(dec.unsynced)
        dec.feed(CaptureLine(ts_recv_ns, RECV, "", data, location))
        rows_after = len(dec.deltas)
        book = dec.books.get(pair)
        if book is not None and book is not book_before:
            self.stats.snapshots += 1
            self.stats.resyncs += int(was_broken)
            detail = f"{pair}: snapshot of {len(book.ask_px)} asks, {len(book.bid_px)} bids at {location}"
            return [SyncEvent(pair, SYNCED, -1, detail)]
        new_failures = dec.stats.failures[failures_before:]
        if book is not None and not was_broken and dec.stats.total > crc_before:
            self.stats.checksums += 1
            self.stats.checksums_ok += int(not new_failures)
        lost = dec.unsynced - lost_before
        events: list[SyncEvent] = []
        if lost:
            # a reorder the level times showed, which the checksums (top 10 levels) may not
            events += loss_events(lost, new_failures + dec.stats.order_failures[reorders_before:], {})
            self.stats.breaks += [e.detail for e in events]
            # the rows of the message that broke the book are already wrong: hold the book in
            # RESYNC before them, not one message later as a batch decode does
            self._marks.add(rows_before, rows_after, first=F_GAP, every=F_MAYBE_BAD_BOOK)
        elif was_broken:
            self._marks.add(rows_before, rows_after, every=F_MAYBE_BAD_BOOK)
        return events
