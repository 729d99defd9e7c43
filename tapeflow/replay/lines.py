"""A replay server for line protocols over plain TCP (IQFeed's IQConnect), beside the websocket one.

IQConnect is not a websocket: each service is a TCP port (Level 1, Level 2, lookups) carrying
``\\r\\n``-ended text lines, the client's commands (``S,SET PROTOCOL,6.2``, ``wAAPL``) and the
server's messages alike. A venue serves such a protocol with a :class:`LineReplay` adapter (a
:class:`~tapeflow.replay.protocol.VenueReplay` that names its ``roles``: one port each), found
through the registry as the websocket adapters are; its :class:`~tapeflow.replay.protocol.Session`
answers commands with a :class:`~tapeflow.replay.protocol.Reply` (lines to send, keys to start and
stop). Tape frames are keyed ``(role, symbol)``: a frame goes to every connection of that role
watching the symbol (``symbol`` '' : to every watching connection of the role, e.g. timestamps).

The tape starts once a connection watches something (after ``settle_s`` without a new command),
paced by the recorded capture times (``speed``) or as fast as clients read; a connection that
writes nothing for ``heartbeat_s`` gets its session's heartbeats; ``disconnect_after`` cuts every
connection once after that many tape frames (the reconnect tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError
from tapeflow.replay.protocol import Frame, Key, Reply, Session, VenueReplay, adapter_for

SETTLE_S = 0.2


class LineReplay(VenueReplay):
    """Base of the adapters of TCP line protocols: ``roles`` maps a role to the venue's own port."""

    roles: dict[str, int] = {}
    heartbeat_s: float | None = None

    def line_session(self, role: str, connection: int) -> Session:
        """A new connection's protocol state on the port of ``role``."""
        raise NotImplementedError

    def greeting(self, role: str) -> list[bytes]:
        """Lines sent when a client connects to ``role``'s port."""
        return []


def serves_lines(format_name: str) -> bool:
    """Whether ``format_name``'s replay adapter speaks a TCP line protocol (not a websocket)."""
    from tapeflow.wire.registry import replay_adapter

    return issubclass(replay_adapter(format_name), LineReplay)


class _Conn:
    def __init__(self, cid: int, role: str, session: Session, writer: asyncio.StreamWriter) -> None:
        self.cid, self.role, self.session, self.writer = cid, role, session, writer
        self.keys: set[Key] = set()
        self.last_write_s = time.monotonic()

    def write(self, lines: Sequence[bytes | str]) -> None:
        if not lines or self.writer.is_closing():
            return
        self.writer.write(b"".join((x.encode() if isinstance(x, str) else x) + b"\r\n" for x in lines))
        self.last_write_s = time.monotonic()


class LineReplayServer:
    """Serve recorded line-protocol sessions on loopback TCP ports, one per role.

    Args:
        format: a format whose replay adapter is a :class:`LineReplay` (``iqfeed``).
        paths: recorded sessions (``<recv_ns> <line>`` captures) and files the adapter serves on
            request (IQFeed lookup responses).
        host: interface to bind.
        ports: role -> port (0 or absent: a free port; read them back from :attr:`addresses`).
        speed: x recorded time; None serves as fast as the clients read.
        settle_s: quiet time after the last command before the tape starts.
        disconnect_after: cut every connection once, after this many tape frames were queued.
        heartbeats: send the session's heartbeats to a quiet connection (off: a feed that goes
            silent after its tape, e.g. for a flow that stops when idle).

    Raises:
        ConfigError: the format's adapter does not speak a line protocol; a bad speed.
    """

    def __init__(self, format: str, paths: Sequence[str | Path], *, host: str = "127.0.0.1",
                 ports: dict[str, int] | None = None, speed: float | None = None, settle_s: float = SETTLE_S,
                 disconnect_after: int | None = None, heartbeats: bool = True) -> None:
        adapter = adapter_for(format)
        if not isinstance(adapter, LineReplay):
            raise ConfigError(f"format {format!r} is served over websockets: use "
                              "tapeflow.replay.ReplayServer")
        if speed is not None and not speed > 0:
            raise ConfigError(f"speed must be positive, got {speed!r}")
        self.format, self.adapter, self.host = format, adapter, host
        self.paths = [Path(p) for p in paths]
        self.ports = {role: (ports or {}).get(role, 0) for role in adapter.roles}
        self.speed, self.settle_s, self.disconnect_after = speed, settle_s, disconnect_after
        self.heartbeats = heartbeats
        self.tape: list[Frame] = adapter.load(self.paths)
        self.position = 0
        self.frames_served = 0
        self.disconnects = 0
        self.finished = False
        self._conns: dict[int, _Conn] = {}
        self._ids = 0
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._last_command_s = 0.0

    @property
    def addresses(self) -> dict[str, str]:
        """role -> ``tcp://host:port``."""
        return {role: f"tcp://{self.host}:{port}" for role, port in self.ports.items()}

    @property
    def drained(self) -> bool:
        """The tape has ended and every connection's writes left its buffer."""
        return self.finished and all(c.writer.transport.get_write_buffer_size() == 0
                                     for c in list(self._conns.values()) if not c.writer.is_closing())

    async def start(self) -> LineReplayServer:
        """Bind every role's port and start the tape task."""
        self._wake = asyncio.Event()
        for role in self.adapter.roles:
            server = await asyncio.start_server(lambda r, w, role=role: self._serve(role, r, w),
                                                self.host, self.ports[role])
            self.ports[role] = int(server.sockets[0].getsockname()[1])
            self._servers.append(server)
        self._tasks = [asyncio.get_running_loop().create_task(self._produce())]
        if self.adapter.heartbeat_s and self.heartbeats:
            self._tasks.append(asyncio.get_running_loop().create_task(self._heartbeats(self.adapter.heartbeat_s)))
        return self

    async def stop(self) -> None:
        """Close the ports and every connection."""
        for task in self._tasks:
            task.cancel()
        for conn in list(self._conns.values()):
            conn.writer.close()
        for server in self._servers:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def __aenter__(self) -> LineReplayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, role: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._ids += 1
        conn = _Conn(self._ids, role, self.adapter.line_session(role, self._ids), writer)
        self._conns[conn.cid] = conn
        conn.write(self.adapter.greeting(role))
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                text = raw.decode("ascii", "replace").rstrip("\r\n")
                if text:
                    self._answer(conn, conn.session.on_message(text))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # shutdown (Ctrl-C) cancels the handlers of connections still open: end this one
            # quietly, since asyncio prints a traceback for a cancelled connection handler
            pass
        finally:
            self._conns.pop(conn.cid, None)
            writer.close()

    def _answer(self, conn: _Conn, reply: Reply) -> None:
        conn.write(reply.send)
        conn.keys.difference_update(reply.unsubscribe)
        if reply.subscribe:
            conn.keys.update(reply.subscribe)
            self._last_command_s = time.monotonic()
            self._wake.set()

    def _targets(self, key: Key | None) -> list[_Conn]:
        if key is None:
            return []
        role, symbol = key
        return [c for c in self._conns.values()
                if c.role == role and c.keys and (not symbol or key in c.keys)]

    async def _produce(self) -> None:
        while not any(c.keys for c in self._conns.values()):
            self._wake.clear()
            await self._wake.wait()
        while time.monotonic() - self._last_command_s < self.settle_s:
            await asyncio.sleep(self.settle_s)
        start_s, start_ns = time.monotonic(), self.tape[0].recv_ns if self.tape else 0
        cut = self.disconnect_after
        for i, frame in enumerate(self.tape):
            if self.speed is not None:
                wait_s = (frame.recv_ns - start_ns) / 1e9 / self.speed - (time.monotonic() - start_s)
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
            self.adapter.apply(frame)
            targets = self._targets(frame.key)
            for conn in targets:
                conn.write([conn.session.render(frame)])
            self.frames_served += len(targets)
            self.position = i + 1
            for conn in targets:
                with contextlib.suppress(ConnectionError):
                    await conn.writer.drain()
            if not i % 64:
                await asyncio.sleep(0)
            if cut is not None and self.position == cut:
                cut = None
                await self._disconnect_all()
        self.finished = True

    async def _disconnect_all(self) -> None:
        self.disconnects += 1
        for conn in list(self._conns.values()):
            conn.writer.close()
        # the tape waits for the clients to come back and watch again (what they miss meanwhile
        # would be lost on a real feed too, but a test wants to see the stream resume)
        self._conns.clear()
        while not any(c.keys for c in self._conns.values()):
            self._wake.clear()
            await self._wake.wait()
        while time.monotonic() - self._last_command_s < self.settle_s:
            await asyncio.sleep(self.settle_s)

    async def _heartbeats(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s / 4)
            now = time.monotonic()
            for conn in list(self._conns.values()):
                if conn.keys and now - conn.last_write_s >= period_s:
                    conn.write(conn.session.heartbeats(conn.keys))
                    conn.last_write_s = now

    def status(self) -> dict[str, Any]:
        """Counters for a progress line."""
        return {"position": self.position, "tape": len(self.tape), "served": self.frames_served,
                "connections": len(self._conns), "disconnects": self.disconnects, "finished": self.finished}


def run_line_server(args: Any) -> int:
    """``tapeflow replay-server --format iqfeed ...``: serve until Ctrl-C (``--port P``: the first
    role on P, the next on P+1, ...; 0: free ports, printed)."""
    ports = {}
    if args.port:
        roles = list(adapter_for(args.format).roles)
        ports = {role: args.port + i for i, role in enumerate(roles)}
    srv = LineReplayServer(args.format, args.paths, host=args.host, ports=ports,
                           speed=None if args.as_fast_as_possible else args.speed)

    async def serve() -> None:
        async with srv:
            pace = "as fast as possible" if srv.speed is None else f"{srv.speed:g}x recorded time"
            print(f"replay-server: {srv.format}: {len(srv.tape):,} lines from {len(srv.paths)} file(s), "
                  f"{pace}, {srv.adapter.bad_lines} bad lines skipped", flush=True)
            for role, where in srv.addresses.items():
                print(f"replay-server: {role} {where}", flush=True)
            while True:
                await asyncio.sleep(3600)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    status = srv.status()
    print(f"replay-server: stopped: {status['served']:,} lines served, tape at {status['position']:,}/"
          f"{status['tape']:,}", flush=True)
    return 0
