"""The frame intake of a live connector: the websocket reader, the stale watchdog and the batcher.

Split from :mod:`tapeflow.live.connector` (the session loop). The reader appends each frame
received (a :class:`~tapeflow.live.frames.RawFrame` with its capture time) to a list that the
batcher takes whole, up to ``max_batch_frames``, after lingering ``batch_linger_s`` once for more:
no ``asyncio.Queue`` put and get per frame. An end of the session (connection closed, stale feed,
closed by the consumer) goes into the same list, so the frames before it are batched first.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import WSMsgType

from tapeflow.live.frames import WS, RawFrame
from tapeflow.live.sync import DISCONNECTED, STALE

if TYPE_CHECKING:
    from tapeflow.live.connector import ConnectorSettings

_YIELD_EVERY = 64  # frames the reader reads before it gives the event loop a turn


@dataclass(frozen=True)
class SessionEnd:
    """The end of a session, queued behind the frames read before it: a STATUS state and why."""

    state: str
    detail: str


class FrameIntake:
    """Mixin of :class:`tapeflow.live.connector.Connector`: reading frames and cutting micro-batches.

    The connector owns the state this reads and writes (declared in its ``__init__``).
    """

    settings: ConnectorSettings
    venue: str
    frames_received: int
    _pending: list[RawFrame | SessionEnd]
    _arrived: asyncio.Event
    _room: asyncio.Event
    _last_frame_s: float
    _awake_ns: int
    _awake_due: bool
    _reading_paused: bool
    _batch_awake_ns: int = -1

    async def _take(self) -> tuple[list[RawFrame], SessionEnd | None]:
        """The next micro-batch: every frame read so far, up to ``max_batch_frames``, after waiting
        ``batch_linger_s`` once for more (a frame rarely comes alone, and per-batch costs, tables
        and the journal's flush, dwarf per-frame ones); and the end of the session if it came.
        With the awake ticker on, no frames when a stamp came while none was pending
        (``_batch_awake_ns``: up to when the batch says its connection was read)."""
        s = self.settings
        while not self._pending and not self._awake_due:
            self._arrived.clear()
            await self._arrived.wait()
        if self._pending and s.batch_linger_s > 0 and len(self._pending) < s.max_batch_frames and \
                not any(type(f) is SessionEnd for f in self._pending):
            await asyncio.sleep(s.batch_linger_s)
        pending = self._pending
        cut = next((i for i, f in enumerate(pending) if type(f) is SessionEnd), -1)
        stop = min(len(pending), s.max_batch_frames) if cut < 0 else min(cut, s.max_batch_frames)
        frames, end = pending[:stop], None
        if stop == cut:
            end = pending[cut]
            stop += 1
        self._pending = pending[stop:]
        self._awake_due = False
        # read up to the last stamp, unless frames read before it stay behind for the next batch
        last = frames[-1].ts_recv_ns if frames else -1  # type: ignore[union-attr]
        left = any(type(f) is RawFrame for f in self._pending)
        self._batch_awake_ns = max(self._batch_awake_ns, last if left else max(last, self._awake_ns))
        self._room.set()
        return frames, end  # type: ignore[return-value]

    def _put(self, item: RawFrame | SessionEnd) -> None:
        self._pending.append(item)
        self._arrived.set()

    async def _reader(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        stale = self.settings.stale_after_s
        limit = self.settings.max_queued_frames
        # one watchdog per connection instead of a timeout per frame: asyncio.wait_for wraps every
        # receive in a task and a timer, which cost more than the frame itself at 100k frames/s
        self._last_frame_s = time.monotonic()
        watchdog = asyncio.get_running_loop().create_task(self._watchdog(stale))
        venue, receive, arrived = self.venue, ws.receive, self._arrived
        monotonic, time_ns = time.monotonic, time.time_ns
        text, binary = WSMsgType.TEXT, WSMsgType.BINARY
        # RawFrame's own __new__ is a Python function: the tuple constructor skips a frame per frame
        new_frame = tuple.__new__
        read = 0
        try:
            while True:
                msg = await receive()
                kind, data = msg.type, msg.data
                if kind is not text and kind is not binary:
                    break
                self._last_frame_s = monotonic()
                self.frames_received += 1
                pending = self._pending
                if not pending:  # the batcher waits only on an empty list
                    arrived.set()
                if type(data) is not bytes:
                    data = bytes(data)
                pending.append(new_frame(RawFrame, (venue, time_ns(), data, WS)))
                read += 1
                if len(pending) >= limit:  # backpressure: the socket's buffers fill, the venue slows
                    self._room.clear()
                    self._reading_paused = True  # not reading: no awake stamp meanwhile
                    await self._room.wait()
                    self._reading_paused = False
                    self._last_frame_s = monotonic()  # waiting for room is not staleness
                elif not read % _YIELD_EVERY:
                    # buffered frames never suspend receive: let the batcher, pingers and REST
                    # fetches of this loop run now and then
                    await asyncio.sleep(0)
            self._put(SessionEnd(DISCONNECTED, f"connection closed: {_close_reason(ws, msg)}"))
        finally:
            watchdog.cancel()

    async def _watchdog(self, stale_s: float) -> None:
        graced = False
        while True:
            wait_s = self._last_frame_s + stale_s - time.monotonic()
            if wait_s > 0:
                graced = False
                await asyncio.sleep(wait_s)
            elif not graced:
                # the deadline passed, but maybe only because this loop was busy (a long batch, a
                # starved CPU) while frames sat in the socket: give the reader a real turn (a
                # selector poll and its task step) before calling the venue silent
                graced = True
                await asyncio.sleep(_GRACE_S)
            else:
                self._put(SessionEnd(STALE, f"no frame for {stale_s:g} s"))
                return


    async def _awake_ticker(self, every_s: float) -> None:
        """Every ``every_s``, stamp that this connection was read: every frame that reached the socket
        before the stamp is read by the time it is published (two loop turns later: the selector
        poll after the stamp, then the reader's step for what it saw). A loop that does not run (a
        starved process, a long decode) stamps nothing, so its feed's silence is never judged on
        time it did not watch. With no frame pending the batcher hands on an empty batch."""
        while True:
            await asyncio.sleep(every_s)
            if self._reading_paused:
                continue
            now = time.time_ns()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if self._reading_paused:
                continue
            self._awake_ns = max(self._awake_ns, now)
            if not self._pending:
                self._awake_due = True
                self._arrived.set()


_GRACE_S = 0.02  # the reader's turn before the watchdog calls a feed stale


def _close_reason(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> str:
    if msg.type is WSMsgType.ERROR:
        return f"{type(msg.data).__name__}: {msg.data}"
    exc = ws.exception()
    if exc is not None:
        return f"{type(exc).__name__}: {exc}"
    extra = f" ({msg.extra})" if msg.type is WSMsgType.CLOSE and msg.extra else ""
    return f"close code {ws.close_code}{extra}"
