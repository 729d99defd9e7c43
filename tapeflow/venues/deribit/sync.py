"""Deribit live book sync: the batch decoder's ``prev_change_id`` chain, frame by frame.

A change whose ``prev_change_id`` is not the book's last ``change_id`` means changes were lost;
Deribit sends a fresh snapshot when the ``book`` channel is subscribed again, so that is the resync.
"""

from __future__ import annotations

from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK
from tapeflow.venues.deribit.parse import DeribitDecoder
from tapeflow.venues.livesync import SYNCED, DecoderSync, SyncEvent, loss_events
from tapeflow.wire.capture import RECV, CaptureLine


class DeribitSync(DecoderSync):
    """Live sync of Deribit ``book`` and ``trades`` frames (see :mod:`tapeflow.venues.livesync`)."""

    venue = "deribit"

    def __init__(self) -> None:
        super().__init__(DeribitDecoder())

    def feed(self, ts_recv_ns: int, data: bytes, location: str) -> list[SyncEvent]:
        """Decode one frame and report the instruments it broke or re-anchored."""
        dec, st = self.decoder, self.decoder.changes
        rows_before = len(dec.deltas)
        snaps, links, links_ok = st.snapshots, st.links_total, st.links_ok
        failures_before, lost_before = len(st.failures), set(dec.unsynced)
        dec.feed(CaptureLine(ts_recv_ns, RECV, "", data, location))
        rows_after = len(dec.deltas)
        inst = dec.frame_symbol
        if st.snapshots > snaps:
            self.stats.snapshots += 1
            self.stats.resyncs += int(inst in lost_before)
            return [SyncEvent(inst, SYNCED, dec.change_ids.get(inst, -1),
                              f"{inst}: snapshot change_id {dec.change_ids.get(inst)} at {location}")]
        if inst not in lost_before:
            self.stats.links += st.links_total - links
            self.stats.links_ok += st.links_ok - links_ok
        lost = dec.unsynced - lost_before
        if lost:
            events = list(loss_events(lost, st.failures[failures_before:],
                                      {s: dec.change_ids.get(s, -1) for s in lost}))
            self.stats.breaks += [e.detail for e in events]
            self._marks.add(rows_before, rows_after, first=F_GAP, every=F_MAYBE_BAD_BOOK)
            return events
        if inst in lost_before and rows_after > rows_before:
            self._marks.add(rows_before, rows_after, every=F_MAYBE_BAD_BOOK)
        return []
