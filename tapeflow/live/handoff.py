"""The hand-off from a live connector's journaled frames to its venue decoder (``decode_batch``).

Split from :mod:`tapeflow.live.connector` (the session loop) so the one place frames meet a
decoder reads on its own: a decoder's batch entry point (``feed_many``), its quiet entry point
(``feed_quiet``: a run of frames up to the first that changes an instrument's sync, while the
client says it is :meth:`DecodeHandoff.quiet`) or frame by frame, the UTC day of each journal
file, and the book rows written while an instrument was not synced.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from tapeflow.journal import day_of
from tapeflow.live.frames import REST, WS, RawFrame
from tapeflow.wire.capture import RECV, CaptureLine

if TYPE_CHECKING:
    from tapeflow.live.sync import SyncTracker
    from tapeflow.wire.capture import FrameDecoder

_NS_PER_DAY = 86_400 * 1_000_000_000
_MIN_SPAN = 32
_STAMP, _PAYLOAD, _CHANNEL = itemgetter(1), itemgetter(2), itemgetter(3)  # RawFrame's fields


class DecodeHandoff:
    """Mixin of :class:`tapeflow.live.connector.Connector`: decoding a micro-batch of frames.

    The connector owns the state this reads and writes (declared in its ``__init__``).
    """

    decoder: FrameDecoder
    symbols: list[str]
    sync: SyncTracker
    _day_ns: int
    _frame_rows: tuple[int, int]
    _maybe_bad: list[tuple[int, int, set[str]]]
    _healed: list[tuple[int, int, set[str]]]
    _inflight: set[str]
    _arriving: dict[int, str]

    def after_frame(self, frame: RawFrame) -> None:
        """Called after each frame is decoded: read the decoder's state, report transitions."""

    def quiet(self) -> bool:
        """Whether :meth:`after_frame` reacts to nothing but a change of some instrument's sync
        (its view of every book agrees with the decoder's: synced books reported synced, no
        transition half done). Then a decoder's ``feed_quiet`` may take a run of frames up to the
        first that changes a sync, and :meth:`after_frame` is called once, after the last frame
        it took. Clients whose :meth:`after_frame` can say so override this (default: never)."""
        return False

    def on_new_day(self, day: str) -> None:
        """The first frame of a new UTC day (a new journal file) was decoded: venues re-anchor
        their books with fresh snapshots here, so each day's journal file rebuilds on its own."""

    def decode_batch(self, frames: list[RawFrame], locations: list[str]) -> None:
        """Decode one micro-batch of journaled frames into the decoder's buffers.

        The one place frames meet the decoder. A decoder with a batch entry point
        (``feed_many(lines)``) gets the whole batch in one call when the client has no per-frame
        hook (:meth:`after_frame` not overridden: the sync state cannot change between frames) and
        the batch is one UTC day. Otherwise, while the client is :meth:`quiet`, a decoder with
        ``feed_quiet(recv_ns, payloads) -> int`` gets each run of websocket frames of the current
        UTC day and decodes it up to the first frame that changes an instrument's sync
        (:meth:`after_frame` follows the last frame it took); that frame, and every frame outside
        such runs, goes one by one (:meth:`after_frame` after each, :meth:`on_new_day` at a new
        UTC day). Either way the book rows written while their instrument was not synced are
        marked.
        """
        feed_many = getattr(self.decoder, "feed_many", None)
        if (feed_many is not None and type(self).after_frame is DecodeHandoff.after_frame
                and _one_day(frames)):
            self._decode_whole(frames, locations, feed_many)
            return
        feed_quiet = getattr(self.decoder, "feed_quiet", None)
        start, n = 0, len(frames)
        span = n  # frames offered at once: after a short quiet run, twice its length (at least 32),
        # so a feed that stops every few frames (a spot bookTicker) is not scanned to the end each time
        while start < n:
            if feed_quiet is not None and self._opens_run(frames[start]) and self.quiet():
                run = frames[start:self._run_end(frames, start, start + span)]
                before = self._rows()
                done = feed_quiet(list(map(_STAMP, run)), list(map(_PAYLOAD, run)))
                span = n if done == len(run) else max(_MIN_SPAN, 2 * done)
                if done:
                    # nothing changed a sync within them: after_frame once sees what it would
                    # have seen after each
                    self.after_frame(run[done - 1])
                    self._mark_unsynced(before)
                    start += done
                    continue
            # the frame that stopped a run (a snapshot body, a gap, a bridge, an unknown shape),
            # a new day's first frame, or a client between states: one by one
            self._decode_frames(frames, locations, start, start + 1)
            start += 1

    def _opens_run(self, frame: RawFrame) -> bool:
        # a websocket frame of the current UTC day (a new day's first frame goes one by one: on_new_day)
        return frame.channel == WS and frame.ts_recv_ns - frame.ts_recv_ns % _NS_PER_DAY == self._day_ns

    def _run_end(self, frames: list[RawFrame], start: int, limit: int) -> int:
        """End of the run of websocket frames of the current UTC day from ``start`` (at most ``limit``)."""
        day_end = self._day_ns + _NS_PER_DAY
        stop, n = start + 1, min(len(frames), limit)
        tail = frames[stop:n]
        if tail and list(map(_CHANNEL, tail)).count(WS) == len(tail) and max(map(_STAMP, tail)) < day_end:
            return n  # the usual case, checked in C: websocket frames of this day up to the limit
        while stop < n and frames[stop].channel == WS and frames[stop].ts_recv_ns < day_end:
            stop += 1
        return stop

    def _rows(self) -> int:
        deltas = getattr(self.decoder, "deltas", None)
        return len(deltas) if deltas is not None else 0

    def _mark_unsynced(self, before: int) -> None:
        after_rows = self._rows()
        self._frame_rows = (before, after_rows)
        if after_rows > before:
            broken = {s for s in self.symbols if not self.sync.synced(s)}
            if broken:
                self._maybe_bad.append((before, after_rows, broken))

    def _decode_frames(self, frames: list[RawFrame], locations: list[str], start: int, stop: int) -> None:
        deltas = getattr(self.decoder, "deltas", None)
        feed, after, rest = self.decoder.feed, self.after_frame, REST
        symbols, synced = self.symbols, self.sync.synced
        for frame, loc in zip(frames[start:stop], locations[start:stop], strict=True):
            # a new UTC day is a new journal file: compared as integers, a datetime per frame is not free
            day_ns = frame.ts_recv_ns - frame.ts_recv_ns % _NS_PER_DAY
            new_day = day_ns != self._day_ns and self._day_ns >= 0
            self._day_ns = day_ns
            before = len(deltas) if deltas is not None else 0
            feed(CaptureLine(frame.ts_recv_ns, RECV, "", frame.data, loc))
            if frame.channel == rest:
                self._inflight.discard(self._arriving.pop(id(frame), ""))
            after_rows = len(deltas) if deltas is not None else 0
            self._frame_rows = (before, after_rows)
            # books not synced before the frame's rows are judged (after_frame may sync them)
            was_broken = {s for s in symbols if not synced(s)} if after_rows > before else None
            after(frame)
            if new_day:
                self.on_new_day(day_of(frame.ts_recv_ns))
            if after_rows > before:
                broken = {s for s in symbols if not synced(s)}
                if broken:
                    self._maybe_bad.append((before, after_rows, broken))
                if was_broken and (healed := was_broken - broken):
                    # this frame synced them: what it wrote before their snapshot was still
                    # written to a broken book (frames.flag_rows)
                    self._healed.append((before, after_rows, healed))

    def _decode_whole(self, frames: list[RawFrame], locations: list[str], feed_many: Any) -> None:
        before = self._rows()
        first = frames[0].ts_recv_ns
        day_ns = first - first % _NS_PER_DAY
        new_day = day_ns != self._day_ns and self._day_ns >= 0
        self._day_ns = day_ns
        feed_many([CaptureLine(f.ts_recv_ns, RECV, "", f.data, loc) for f, loc in zip(frames, locations,
                                                                                        strict=True)])
        for frame in frames:
            if frame.channel == REST:
                self._inflight.discard(self._arriving.pop(id(frame), ""))
        if new_day:
            self.on_new_day(day_of(first))
        self._mark_unsynced(before)


def _one_day(frames: list[RawFrame]) -> bool:
    day = frames[0].ts_recv_ns // _NS_PER_DAY
    return all(f.ts_recv_ns // _NS_PER_DAY == day for f in frames)

