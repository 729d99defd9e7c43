"""The replay server: one aiohttp app (websocket + REST + control) over a loaded tape."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tapeflow.errors import ConfigError, TapeflowError
from tapeflow.replay.connection import CTL, TAPE, Conn, Queued, Sender, keepalive
from tapeflow.replay.faults import Fault, FaultPlan, Injected, parse_fault
from tapeflow.replay.protocol import Frame, Reply, adapter_for, dumps, loads

QUEUE_FRAMES = 2_000  # default frames queued for one connection before the tape waits for it
SETTLE_S = 0.2  # default quiet time after the last subscribe before the tape starts or resumes


class ReplayServer:
    """Serve a capture over loopback in the venue's own protocol (see :mod:`tapeflow.replay`).

    Args:
        format: a replayable format name (``binance``, ``kraken``, ``coinbase``, ``bybit``, ``okx``, ``sim``).
        paths: capture files, merged by capture time.
        host: interface to bind.
        port: TCP port; 0 picks a free one (read it back from ``ws_url``).
        speed: replay speed relative to the recorded ``ts_recv`` (1.0 = real time); None serves
            as fast as the clients read.
        faults: fault specs (``drop@120``, ``stall@1000:2s``) or :class:`Fault` values.
        random_faults: ``drop=0.001,dup=0.001`` (or a dict), drawn per frame index from ``seed``.
        seed: seed of the random faults.
        rest_limit: ``(requests, window_s)``: more REST requests than that in the window get
            HTTP 429 with ``Retry-After``; None (default) never limits.
        queue_frames: frames queued for a connection before the tape waits for it (bounds how
            far the tape, and so the REST/mid-stream snapshots, run ahead of the slowest reader).
        settle_s: when the tape starts or resumes (after no subscriber, or a stall), it waits until
            no subscribe message came for this long, so a handshake of several subscribe messages
            lands before any frame (and which frames a connection gets does not depend on timing).
        compress: negotiate permessage-deflate with clients that offer it (as several venues
            do); off by default: on loopback it only costs CPU, and a client that offers it then
            gets plain frames.
        ping_interval_s, pong_timeout_s: websocket ping period and how long the server waits for
            the pong before it cuts the connection; None takes the venue's documented values
            (Binance spot 20 s / 60 s, USD-M 180 s / 600 s; the other venues send no pings).
        heartbeat_after_end: once the tape has ended, keep sending the venue's heartbeat (Kraken
            ``heartbeat``, Coinbase ``heartbeat`` channel) to a connection that got nothing for the
            venue's heartbeat period, so a client's stale timer does not fire while it stays.

    Raises:
        ConfigError: unknown format, bad fault spec.
    """

    def __init__(self, format: str, paths: Sequence[str | Path], *, host: str = "127.0.0.1", port: int = 0,
                 speed: float | None = None, faults: Iterable[str | Fault] = (),
                 random_faults: str | dict[str, float] | None = None, seed: int = 0,
                 rest_limit: tuple[int, float] | None = None, queue_frames: int = QUEUE_FRAMES,
                 settle_s: float = SETTLE_S, compress: bool = False, ping_interval_s: float | None = None,
                 pong_timeout_s: float | None = None, heartbeat_after_end: bool = True,
                 rest_bodies: Mapping[str, Sequence[bytes]] | None = None) -> None:
        if speed is not None and not speed > 0:
            raise ConfigError(f"speed must be positive, got {speed!r}")
        self.format = format
        self.adapter = adapter_for(format)
        self.paths = [Path(p) for p in paths]
        self.host, self.port, self.speed = host, port, speed
        self.plan = FaultPlan.build(faults, random_faults, seed)
        self.rest_limit = rest_limit
        self.queue_frames = max(1, queue_frames)
        self.settle_s = max(0.0, settle_s)
        self.compress = compress
        self.ping_interval_s, self.pong_timeout_s = ping_interval_s, pong_timeout_s
        self.heartbeat_after_end = heartbeat_after_end
        # recorded REST answers by path, served in order, the last one again and again
        self.rest_bodies = {path: list(bodies) for path, bodies in (rest_bodies or {}).items()}
        for path, bodies in self.rest_bodies.items():
            if not path.startswith("/") or not bodies:
                raise ConfigError(f"rest body for {path!r}: a path starting with '/' and at least one body")
        self.rest_served: dict[str, int] = dict.fromkeys(self.rest_bodies, 0)
        self.pong_timeouts: list[str] = []  # connections cut for not answering a ping in time
        self.heartbeats_sent = 0  # venue heartbeats sent after the tape ended
        self.tape: list[Frame] = self.adapter.load(self.paths)
        self.position = 0
        self.injected: list[Injected] = []
        self.state_errors: list[str] = []  # first 100 frames the book state could not apply (served anyway)
        self.finished = False
        self._next_index = 0  # fault index of the next tape frame queued to a connection
        self._conns: dict[int, Conn] = {}
        self._conn_ids = 0
        self._rest_times: collections.deque[float] = collections.deque()
        self._runner: web.AppRunner | None = None
        self._producer: asyncio.Task[None] | None = None
        self._wake_event: asyncio.Event | None = None
        self._dirty = True
        self.frames_unrouted = 0  # tape frames passed while no connection was subscribed to their key
        self._sender = Sender(self.plan, self.injected, self.queue_frames, self._wake, lambda: self.finished)

    @property
    def frames_served(self) -> int:
        """Tape frames written to websockets (a ``dup`` counts twice; replies and snapshots not at all)."""
        return self._sender.served

    @property
    def drained(self) -> bool:
        """The tape has ended and every connection has written all it was given (safe to read
        from another thread: what a client waits for before it calls the stream done)."""
        return self.finished and all(c.idle and not c.queue for c in list(self._conns.values()))

    @property
    def bad_lines(self) -> int:
        """Capture lines that could not be read or classified (skipped, never served)."""
        return self.adapter.bad_lines

    @property
    def ws_url(self) -> str:
        """``ws://host:port`` (clients append the venue's path)."""
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """``http://host:port`` (clients append the venue's REST path)."""
        return f"http://{self.host}:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> ReplayServer:
        """Bind and start serving (the tape waits for the first subscriber)."""
        app = web.Application()
        app.router.add_get("/_replay/status", self._status)
        app.router.add_post("/_replay/fault", self._fault)
        for path in {*self.adapter.rest_routes(), *self.rest_bodies}:
            app.router.add_get(path, self._rest)
        app.router.add_get("/{tail:.*}", self._websocket)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._wake_event = asyncio.Event()
        self._producer = asyncio.create_task(self._produce())
        return self

    async def stop(self) -> None:
        """Close every connection and the listener."""
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
        for conn in list(self._conns.values()):
            conn.close()
            with contextlib.suppress(Exception):
                await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ReplayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[ReplayServer]:
        """Serve from a background thread with its own event loop (for synchronous tests/CLIs)."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        thread = threading.Thread(target=main, name=f"replay-{self.format}", daemon=True)
        thread.start()
        started.wait()
        if failure:
            raise failure[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    def add_fault(self, fault: str | Fault) -> Fault:
        """Schedule a fault at run time (``+N`` counts from the next tape frame to be sent)."""
        parsed = fault if isinstance(fault, Fault) else parse_fault(fault, base_index=self.next_index())
        self.plan.add(parsed)
        return parsed

    def next_index(self) -> int:
        """Fault index of the next tape frame to be written (the oldest one still queued)."""
        queued = [c.first_unsent() for c in list(self._conns.values()) if not c.closed]
        return min((i for i in queued if i is not None), default=self._next_index)

    def status(self) -> dict[str, Any]:
        """What ``GET /_replay/status`` returns."""
        return {"format": self.format, "position": self.position, "tape_frames": len(self.tape),
                "frames_served": self.frames_served, "rest_served": dict(self.rest_served),
                "frames_unrouted": self.frames_unrouted,
                "next_index": self.next_index(),
                "connections": len(self._conns), "injected": [i.as_dict() for i in self.injected],
                "pending_faults": [f.spec() for f in self.plan.pending()], "bad_lines": self.bad_lines,
                "bad_line_reasons": dict(self.adapter.bad_reasons),
                "bad_line_examples": list(self.adapter.bad_examples),
                "state_errors": self.state_errors, "send_errors": list(self._sender.errors),
                "pong_timeouts": list(self.pong_timeouts), "heartbeats_sent": self.heartbeats_sent,
                "finished": self.finished, "drained": self.drained}

    # -- the tape ------------------------------------------------------------------------------

    async def _produce(self) -> None:
        anchor: tuple[float, int] | None = None
        for i, frame in enumerate(self.tape):
            if i % 256 == 0:
                await asyncio.sleep(0)  # frames nobody subscribed to must not starve the loop
            if self._dirty:  # who may get frames changed (see _wake): look again
                self._dirty = False
                if not self._may_run():
                    await self._hold()
                    anchor = None  # a pause or a stall does not count as recorded time
            if self.speed is not None:
                if anchor is None:
                    anchor = (time.monotonic(), frame.recv_ns)
                due = anchor[0] + (frame.recv_ns - anchor[1]) / 1e9 / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            # state update and hand-off happen with no await in between, so a connection that
            # subscribes now sees a snapshot that includes exactly the frames it will not get
            try:
                self.adapter.apply(frame)
            except Exception as exc:  # a captured frame the book cannot read is still served as captured
                self.adapter.count_bad(frame.location, "state_error", f"{type(exc).__name__}: {exc}")
                if len(self.state_errors) < 100:
                    self.state_errors.append(f"{frame.location}: {type(exc).__name__}: {exc}")
            self.position = i + 1
            if not frame.send:
                continue
            targets = [c for c in self._conns.values()
                       if c.subscribed() and (frame.key is None and c.keys or frame.key in c.keys)]
            if not targets:
                self.frames_unrouted += 1  # e.g. during a client's unsubscribe -> resubscribe
            for conn in targets:
                # the index is taken here, in tape order, whether or not the frame is ever written
                index = self._next_index
                self._next_index += 1
                stalls = 0
                planned = self.plan.peek(index)
                if planned:  # stop the tape right here for a disconnect or a stall
                    self._dirty = True
                    kinds = [f.kind for f in planned]
                    conn.cut = conn.cut or "disconnect" in kinds
                    stalls = kinds.count("stall")
                    conn.stalls_queued += stalls
                conn.push(TAPE, Queued(frame, index, stalls))
            for conn in targets:
                while len(conn.queue) > self.queue_frames and not conn.closed:
                    conn.drained.clear()
                    await conn.drained.wait()
        self.finished = True
        for conn in list(self._conns.values()):
            conn.ready.set()  # a reorder held back at the very end goes out now
        period_s = self.adapter.idle_heartbeat_s
        if self.heartbeat_after_end and period_s:
            await self._heartbeats(period_s)

    async def _heartbeats(self, period_s: float) -> None:
        """After the tape: the venue's heartbeat to every subscribed connection that got nothing
        for ``period_s`` (as Kraken does when a channel is quiet), until the server stops."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period_s / 4)  # checked often, so a beat is at most 1.25 periods late
            now = loop.time()
            for conn in list(self._conns.values()):
                if conn.subscribed() and not conn.queue and now - conn.last_send_s >= period_s:
                    beats = conn.session.heartbeats(conn.keys)
                    for message in beats:
                        conn.push(CTL, message)
                    if beats:
                        conn.last_send_s = now  # the send loop moves it again when it writes them
                        self.heartbeats_sent += len(beats)

    def _may_run(self) -> bool:
        conns = self._conns.values()
        return any(c.subscribed() for c in conns) and not any(c.holds_tape() for c in conns)

    async def _hold(self) -> None:
        """Wait until the tape may move again (some connection subscribed, none stalled) and no
        subscribe came for ``settle_s``."""
        assert self._wake_event is not None
        while True:
            if not self._may_run():
                self._wake_event.clear()
                await self._wake_event.wait()
                continue
            live = [c for c in self._conns.values() if c.subscribed()]
            # (re)starting: the rest of a handshake lands first (clients often subscribe one
            # channel per message), so the frames a connection gets do not depend on timing
            since_s = asyncio.get_running_loop().time() - max(c.last_subscribe_s for c in live)
            quiet_s = self.settle_s - since_s
            if quiet_s <= 0:
                return
            self._wake_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_event.wait(), quiet_s)

    def _wake(self) -> None:
        # every change of subscriptions, connections or stalls comes through here
        self._dirty = True
        if self._wake_event is not None:
            self._wake_event.set()

    # -- websocket -----------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # pings are ours (aiohttp's heartbeat cuts a client after half the ping period, far
        # sooner than a venue does), so pongs and the client's pings come through the loop below
        ws = web.WebSocketResponse(autoping=False, max_msg_size=0, compress=self.compress)
        if not ws.can_prepare(request).ok:
            return web.json_response({"error": f"no such path {request.path!r}"}, status=404)
        await ws.prepare(request)
        self._conn_ids += 1
        conn = Conn(self._conn_ids, ws, request, self.adapter.session(self._conn_ids))
        self._conns[conn.id] = conn
        loop = asyncio.get_running_loop()
        conn.last_send_s = loop.time()
        sender = asyncio.create_task(self._sender.run(conn))
        interval_s, timeout_s = self.adapter.ws_keepalive(request.path)
        interval_s = self.ping_interval_s or interval_s
        timeout_s = self.pong_timeout_s or timeout_s
        pinger = asyncio.create_task(self._pinger(conn, interval_s, timeout_s)) if interval_s else None
        try:
            self._handle(conn, conn.session.on_open(request.path, request.query))
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    text = msg.data if msg.type == WSMsgType.TEXT else msg.data.decode("utf-8", "replace")
                    self._handle(conn, self._answer(conn, text))
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    conn.last_pong_s = loop.time()
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if pinger is not None:
                pinger.cancel()
            conn.close()
            self._conns.pop(conn.id, None)
            self._wake()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                # it ends by itself once it sees the connection closed (a send in flight finishes)
                await asyncio.wait_for(sender, 5.0)
        return ws

    async def _pinger(self, conn: Conn, interval_s: float, timeout_s: float | None) -> None:
        why = await keepalive(conn, interval_s, timeout_s)
        if why is not None:
            self.pong_timeouts.append(why)
            self._wake()

    def _answer(self, conn: Conn, text: str) -> Reply:
        try:
            return conn.session.on_message(text)
        except Exception as exc:  # a client message the venue would refuse: an error reply, never a crash
            why = f"replay server cannot handle {text[:200]!r}: {type(exc).__name__}: {exc}"
            return Reply(send=[dumps({"event": "error", "message": why})])

    def _handle(self, conn: Conn, reply: Reply) -> None:
        for message in reply.send:
            conn.push(CTL, message)
        conn.keys.difference_update(reply.unsubscribe)
        if reply.subscribe:
            conn.last_subscribe_s = asyncio.get_running_loop().time()
        for key in reply.subscribe:
            if key in conn.keys:
                continue
            conn.keys.add(key)
            if self.position:
                for message in self.adapter.snapshot(key):
                    conn.push(CTL, message)
        self._wake()

    # -- REST and control ----------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        if self.rest_limit is not None:
            limit, window_s = self.rest_limit
            now = time.monotonic()
            while self._rest_times and self._rest_times[0] <= now - window_s:
                self._rest_times.popleft()
            if len(self._rest_times) >= limit:
                retry_s = max(1, math.ceil(self._rest_times[0] + window_s - now))
                body = dumps({"code": -1003, "msg": f"Too many requests; retry after {retry_s}s"})
                return web.Response(status=429, body=body, content_type="application/json",
                                    headers={"Retry-After": str(retry_s)})
            self._rest_times.append(now)
        recorded = self.rest_bodies.get(request.path)
        if recorded is not None:
            served = self.rest_served[request.path]
            self.rest_served[request.path] = served + 1
            return web.Response(status=200, body=recorded[min(served, len(recorded) - 1)],
                                content_type="application/json")
        handler = self.adapter.rest_routes()[request.path]
        status, body = handler(request.query)
        return web.Response(status=status, body=body, content_type="application/json")

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(body=dumps(self.status()), content_type="application/json")

    async def _fault(self, request: web.Request) -> web.Response:
        body = loads(await request.read())
        specs = None
        if isinstance(body, dict):
            specs = body.get("faults", [body["fault"]] if "fault" in body else [])
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            return web.json_response({"error": 'expected {"faults": ["drop@+0", ...]}'}, status=400)
        try:
            added = [self.add_fault(s).spec() for s in specs]
        except TapeflowError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"added": added})

