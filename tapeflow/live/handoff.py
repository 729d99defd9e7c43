"""The hand-off from a live connector's journaled frames to its venue decoder (``decode_batch``).

Split from :mod:`tapeflow.live.connector` (the session loop) so the one place frames meet a
decoder reads on its own: a decoder's batch entry point (``feed_many``) or frame by frame, the
UTC day of each journal file, and the book rows written while an instrument was not synced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tapeflow.journal import day_of
from tapeflow.live.frames import REST, RawFrame
from tapeflow.wire.capture import RECV, CaptureLine

if TYPE_CHECKING:
    from tapeflow.live.sync import SyncTracker
    from tapeflow.wire.capture import FrameDecoder

_NS_PER_DAY = 86_400 * 1_000_000_000


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
    _inflight: set[str]
    _arriving: dict[int, str]

    def after_frame(self, frame: RawFrame) -> None:
        """Called after each frame is decoded: read the decoder's state, report transitions."""

    def on_new_day(self, day: str) -> None:
        """The first frame of a new UTC day (a new journal file) was decoded: venues re-anchor
        their books with fresh snapshots here, so each day's journal file rebuilds on its own."""

    def decode_batch(self, frames: list[RawFrame], locations: list[str]) -> None:
        """Decode one micro-batch of journaled frames into the decoder's buffers.

        The one place frames meet the decoder. A decoder with a batch entry point
        (``feed_many(lines)``) gets the whole batch in one call when the client has no per-frame
        hook (:meth:`after_frame` not overridden: the sync state cannot change between frames) and
        the batch is one UTC day; otherwise the frames go one by one (:meth:`after_frame` after
        each, :meth:`on_new_day` at a new UTC day). Either way the book rows written while their
        instrument was not synced are marked. A venue whose per-frame bookkeeping can run once per
        batch overrides this method (or drops :meth:`after_frame`) to get the batch path.
        """
        feed_many = getattr(self.decoder, "feed_many", None)
        if (feed_many is not None and type(self).after_frame is DecodeHandoff.after_frame
                and _one_day(frames)):
            self._decode_whole(frames, locations, feed_many)
            return
        deltas = getattr(self.decoder, "deltas", None)
        feed, after, rest = self.decoder.feed, self.after_frame, REST
        symbols, synced = self.symbols, self.sync.synced
        for frame, loc in zip(frames, locations, strict=True):
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
            after(frame)
            if new_day:
                self.on_new_day(day_of(frame.ts_recv_ns))
            if after_rows > before:
                broken = {s for s in symbols if not synced(s)}
                if broken:
                    self._maybe_bad.append((before, after_rows, broken))

    def _decode_whole(self, frames: list[RawFrame], locations: list[str], feed_many: Any) -> None:
        deltas = getattr(self.decoder, "deltas", None)
        before = len(deltas) if deltas is not None else 0
        first = frames[0].ts_recv_ns
        day_ns = first - first % _NS_PER_DAY
        new_day = day_ns != self._day_ns and self._day_ns >= 0
        self._day_ns = day_ns
        feed_many([CaptureLine(f.ts_recv_ns, RECV, "", f.data, loc) for f, loc in zip(frames, locations,
                                                                                        strict=True)])
        for frame in frames:
            if frame.channel == REST:
                self._inflight.discard(self._arriving.pop(id(frame), ""))
        after_rows = len(deltas) if deltas is not None else 0
        self._frame_rows = (before, after_rows)
        if new_day:
            self.on_new_day(day_of(first))
        if after_rows > before:
            broken = {s for s in self.symbols if not self.sync.synced(s)}
            if broken:
                self._maybe_bad.append((before, after_rows, broken))


def _one_day(frames: list[RawFrame]) -> bool:
    day = frames[0].ts_recv_ns // _NS_PER_DAY
    return all(f.ts_recv_ns // _NS_PER_DAY == day for f in frames)

