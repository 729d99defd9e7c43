"""One websocket connection of the replay server: its subscriptions, its queue and its send loop.

The tape (in :mod:`tapeflow.replay.server`) queues frames for a connection with their fault
index; the send loop writes them and applies the faults planned for that index when it gets there.
A connection with a stall or a disconnect queued holds the tape (see :meth:`Conn.holds_tape` and
:meth:`Conn.subscribed`), so nothing runs ahead of a fault that a client will resync from.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tapeflow.replay.faults import FaultPlan, Injected
from tapeflow.replay.protocol import Frame, Key, Session

CTL, TAPE = 0, 1  # queue item kinds: a handshake reply or synthesized snapshot, a tape frame


@dataclass(slots=True)
class Queued:
    """A tape frame queued for one connection.

    Attributes:
        frame: the tape frame.
        index: its fault index (the count of tape frames queued to connections before it).
        stalls: stalls the tape saw planned for it when queueing (the tape waits for them).
    """

    frame: Frame
    index: int
    stalls: int = 0


@dataclass(eq=False)
class Conn:
    """One client connection (``id`` 1, 2, ... in accept order)."""

    id: int
    ws: web.WebSocketResponse
    request: web.Request
    session: Session
    keys: set[Key] = field(default_factory=set)
    queue: collections.deque[tuple[int, Any]] = field(default_factory=collections.deque)
    idle: bool = False  # its send loop has written everything queued and waits for more
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    cut: bool = False  # a disconnect is queued for it: the tape hands it nothing after that frame
    stalls_queued: int = 0  # planned stalls queued for it and not started yet
    stalling: bool = False
    last_subscribe_s: float = 0.0  # loop time of its last subscribe (the settle rule)
    last_pong_s: float = 0.0  # loop time of the last websocket pong it sent (the venue's ping timeout)
    last_send_s: float = 0.0  # loop time of the last frame written to it (heartbeats after the tape)
    pending: list[bytes] = field(default_factory=list)  # encoded tape frames not written yet
    pending_bytes: int = 0

    def push(self, kind: int, item: Any) -> None:
        """Queue a reply (``CTL``) or a :class:`Queued` tape frame (``TAPE``)."""
        self.queue.append((kind, item))
        self.ready.set()

    def subscribed(self) -> bool:
        """Takes tape frames: open, subscribed to something, no disconnect queued."""
        return bool(self.keys) and not self.closed and not self.cut

    def holds_tape(self) -> bool:
        """A stall is queued or running on it: the tape waits (a stalled venue is silent)."""
        return not self.closed and (self.stalling or self.stalls_queued > 0)

    def first_unsent(self) -> int | None:
        """Fault index of the first tape frame still queued, None when none is."""
        for kind, item in list(self.queue):  # status() may read it from another thread
            if kind == TAPE:
                return int(item.index)
        return None

    def close(self) -> None:
        """Mark it gone and wake everything that waits on it."""
        self.closed = True
        for event in (self.ready, self.drained, self.gone):
            event.set()


@dataclass
class Sender:
    """What a send loop shares with its server: the fault plan, the record of applied faults,
    the served-frames counter, unexpected send errors and the producer's wake-up call."""

    plan: FaultPlan
    injected: list[Injected]
    queue_frames: int
    wake: Callable[[], None]
    finished: Callable[[], bool]
    served: int = 0
    errors: list[str] = field(default_factory=list)

    async def run(self, conn: Conn) -> None:
        """Write ``conn``'s queue until it closes, applying each tape frame's faults.

        If writing fails in a way it does not expect, the connection is cut (the client sees a
        disconnect and resyncs) and the error is kept in ``errors``: a sender that died while its
        connection stayed subscribed would swallow the tape.
        """
        try:
            await self._run(conn)
        except Exception as exc:
            if len(self.errors) < 100:
                self.errors.append(f"connection {conn.id}: {type(exc).__name__}: {exc}")
        finally:
            _write_pending(conn)  # what was sent before the failure reaches the client, as before a cut
            if not conn.closed:
                conn.close()
                if conn.request.transport is not None:
                    conn.request.transport.abort()
            self.wake()

    async def _run(self, conn: Conn) -> None:
        held: bytes | None = None
        popped = 0
        while not conn.closed:
            if not conn.queue:
                if not await flush(conn):
                    return
                if held is not None and self.finished():  # a reorder at the very end: its frame goes last
                    wire, held = held, None
                    if not await send(conn, wire):
                        return
                    self.served += 1
                    continue
                conn.drained.set()
                conn.ready.clear()
                conn.idle = True
                await conn.ready.wait()
                conn.idle = False
                continue
            kind, item = conn.queue.popleft()
            popped += 1
            if not popped % _YIELD_EVERY:
                # gathered frames never suspend this loop: let the tape, the handshakes and pings of
                # every connection (and the client's pings read here) run now and then
                await asyncio.sleep(0)
            if len(conn.queue) <= self.queue_frames // 2:
                conn.drained.set()
            if kind == CTL:
                if not await flush(conn) or not await send(conn, item):
                    break
                continue
            queued: Queued = item
            wire = conn.session.render(queued.frame)
            release, held, copies = held, None, 1
            faults = self.plan.take(queued.index)
            if faults and not await flush(conn):  # the frames before a fault go out first
                return
            if queued.stalls:
                conn.stalls_queued = max(0, conn.stalls_queued - queued.stalls)
            for fault, drawn in faults:
                where = queued.frame.location
                self.injected.append(Injected(fault.kind, queued.index, conn.id, where, drawn))
                if fault.kind == "stall":
                    await self._stall(conn, fault.stall_ns)
                elif fault.kind == "drop":
                    copies = 0
                elif fault.kind == "dup" and copies:
                    copies = 2
                elif fault.kind == "reorder" and copies:
                    held, copies = wire, 0
                elif fault.kind == "disconnect":
                    conn.close()
                    if conn.request.transport is not None:
                        conn.request.transport.abort()
                    self.wake()
                    return
            if conn.closed:  # it went away during a stall: this frame was never sent
                break
            for _ in range(copies):
                if not await put(conn, wire):
                    return
                self.served += 1
            if release is not None:
                if not await put(conn, release):
                    return
                self.served += 1
        await flush(conn)

    async def _stall(self, conn: Conn, stall_ns: int) -> None:
        conn.stalling = True
        self.wake()  # a stall added at run time, not seen when its frame was queued, holds the tape too
        try:
            # silent for the stall, or until the client gives up on the connection
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.gone.wait(), stall_ns / 1e9)
        finally:
            conn.stalling = False
            self.wake()


_YIELD_EVERY = 64  # queue items a send loop takes before it gives the event loop a turn
_BATCH_BYTES = 1 << 16  # encoded frames gathered before one socket write
_HIGH_WATER_BYTES = 1 << 20  # socket buffer above which the send loop waits for the client


def _text_frame(data: bytes) -> bytes:
    # RFC 6455 5.2: FIN + text opcode, a server frame is not masked
    n = len(data)
    if n < 126:
        return b"\x81" + bytes((n,)) + data
    if n < 1 << 16:
        return b"\x81\x7e" + n.to_bytes(2, "big") + data
    return b"\x81\x7f" + n.to_bytes(8, "big") + data


async def put(conn: Conn, message: bytes | str) -> bool:
    """Queue one text frame on ``conn``, written with the frames around it in one socket write
    (one ``send`` per frame capped the server near 30k frames/s); False when the connection is gone.

    With permessage-deflate negotiated the frame goes through aiohttp's writer at once instead.
    """
    data = message.encode() if isinstance(message, str) else message
    if conn.ws.compress:
        return await send(conn, data)
    frame = _text_frame(data)
    conn.pending.append(frame)
    conn.pending_bytes += len(frame)
    if conn.pending_bytes >= _BATCH_BYTES:
        return await flush(conn)
    return True


async def flush(conn: Conn) -> bool:
    """Write the frames :func:`put` gathered; False (and ``conn`` closed) when it is gone."""
    if not conn.pending:
        return not conn.closed
    if not _write_pending(conn):
        conn.close()
        return False
    transport = conn.request.transport
    assert transport is not None
    # back-pressure as aiohttp's writer applies it: a slow reader slows the tape, memory stays bounded
    while transport.get_write_buffer_size() > _HIGH_WATER_BYTES and not transport.is_closing():
        await asyncio.sleep(0.001)
    if transport.is_closing():
        conn.close()
        return False
    return True


def _write_pending(conn: Conn) -> bool:
    # one socket write of the gathered frames; False when the transport is gone (they are dropped)
    data = b"".join(conn.pending)
    conn.pending.clear()
    conn.pending_bytes = 0
    transport = conn.request.transport
    if transport is None or transport.is_closing():
        return False
    if data:
        transport.write(data)
        conn.last_send_s = asyncio.get_running_loop().time()
    return True


async def send(conn: Conn, message: bytes | str) -> bool:
    """Write one text frame; False (and ``conn`` closed) when the connection is gone."""
    data = message.encode() if isinstance(message, str) else message
    try:
        # captured bytes go out untouched as a text frame (no decode/encode round trip)
        await conn.ws.send_frame(data, WSMsgType.TEXT)
    except (ConnectionResetError, RuntimeError):
        conn.close()
        return False
    conn.last_send_s = asyncio.get_running_loop().time()
    return True


async def keepalive(conn: Conn, interval_s: float, timeout_s: float | None) -> str | None:
    """Ping ``conn`` every ``interval_s``; cut it (TCP abort, as a venue does) when a ping stays
    unanswered for ``timeout_s`` (None: never). Any pong counts, as on Binance.

    Returns:
        why the connection was cut, or None when it closed by itself.
    """
    loop = asyncio.get_running_loop()
    next_ping_s = loop.time() + interval_s
    unanswered_s: float | None = None  # when the oldest ping still waiting for a pong went out
    while not conn.closed:
        due_s = next_ping_s
        if unanswered_s is not None and timeout_s is not None:
            due_s = min(due_s, unanswered_s + timeout_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.gone.wait(), max(0.0, due_s - loop.time()))
        if conn.closed:
            return None
        now = loop.time()
        if unanswered_s is not None and conn.last_pong_s >= unanswered_s:
            unanswered_s = None
        if unanswered_s is not None and timeout_s is not None and now >= unanswered_s + timeout_s:
            conn.close()
            if conn.request.transport is not None:
                conn.request.transport.abort()
            return f"connection {conn.id}: no pong within {timeout_s:g} s of a ping"
        if now >= next_ping_s:
            try:
                await conn.ws.ping()
            except (ConnectionResetError, RuntimeError):
                return None  # going away; its handler cleans up
            next_ping_s = now + interval_s
            unanswered_s = now if unanswered_s is None else unanswered_s
    return None
