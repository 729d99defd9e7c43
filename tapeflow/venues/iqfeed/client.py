"""IQConnect live client: Level 1 (port 5009) and Level 2 (port 9200) over TCP, lookups (port 9100).

IQConnect runs beside the client (it is DTN's local gateway), so every endpoint is a plain TCP
address, ``tcp://127.0.0.1:5009`` by default. On each connection the client sets the protocol
(``S,SET PROTOCOL,6.2``), selects the Level 1 fields (``S,SELECT UPDATE FIELDS,...``; the server's
``S,CURRENT UPDATE FIELDNAMES`` answer is what the decoder reads them by) and watches every symbol
(``w<symbol>``; Level 2 ``WOR,<symbol>`` market by order or ``WPL,<symbol>`` by price). IQConnect's
``T`` timestamp each second is the heartbeat: nothing for ``stale_after_s`` and the connector
reconnects with backoff and watches again. Lines are journaled as received and decoded by the batch
decoder (:class:`~tapeflow.venues.iqfeed.parse.IQFeedDecoder`), so live equals a decode of the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from tapeflow.errors import ConfigError
from tapeflow.journal import Journal
from tapeflow.live.connector import Connector, ConnectorSettings
from tapeflow.live.frames import WS, LiveBatch, RawFrame
from tapeflow.live.intake import SessionEnd
from tapeflow.live.sync import DISCONNECTED
from tapeflow.venues.iqfeed import messages as m
from tapeflow.venues.iqfeed.parse import IQFeedDecoder

LEVEL1 = "tcp://127.0.0.1:5009"
PROTOCOL = "6.2"
# the default set plus what makes trades exact and complete: their id, date and aggressor
FIELDS = (*m.DEFAULT_L1_FIELDS[1:], "TickID", "Most Recent Trade Date", "Most Recent Trade Aggressor")
BOOKS = {"order": "WOR", "price": "WPL"}
_LIMIT = 1 << 20
_SUMMARIES = frozenset((b"6,", b"7,", b"Z,"))  # longest line read (IQConnect lines are under 1 KiB)


def address(endpoint: str) -> tuple[str, int]:
    """``tcp://host:port`` or ``host:port`` -> ``(host, port)``.

    Raises:
        ConfigError: no port.
    """
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"IQConnect endpoint {endpoint!r} is not tcp://host:port")
    return host, int(port)


class IQFeedClient(Connector):
    """Live IQConnect client (Level 1, optionally Level 2).

    Args:
        symbols: IQFeed symbols (``AAPL``, ``@ESM21``).
        endpoint: Level 1 address (default ``tcp://127.0.0.1:5009``; a replay server's
            ``addresses["level1"]``).
        rest_endpoint: unused (IQConnect has no REST); accepted for a uniform signature.
        journal: a journal, a folder for one, or None.
        settings: session-loop settings.
        level2_endpoint: Level 2 address (None: no Level 2 connection).
        book: ``order`` (market by order, ``WOR``) or ``price`` (market by price, ``WPL``).
        fields: Level 1 fields to select (``Symbol`` comes first by itself).
        protocol: the protocol version to set.
        level1: also connect Level 1 (False: the Level 2 connection alone).

    Raises:
        ConfigError: an unknown ``book``, a bad endpoint, no connection at all.
    """

    def __init__(self, symbols: Sequence[str] | str, *, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None, level2_endpoint: str | None = None,
                 book: str = "order", fields: Sequence[str] = FIELDS, protocol: str = PROTOCOL,
                 level1: bool = True) -> None:
        if book not in BOOKS:
            raise ConfigError(f"iqfeed book {book!r} is not one of {sorted(BOOKS)}")
        if not level1 and not level2_endpoint:
            raise ConfigError("iqfeed: level1=False needs a level2_endpoint")
        self.use_level1 = level1
        listed = symbols.split(",") if isinstance(symbols, str) else symbols
        names = [s.strip() for s in listed if s.strip()]
        self.level1 = address(endpoint or LEVEL1)
        self.level2 = address(level2_endpoint) if level2_endpoint else None
        self.book, self.fields, self.protocol = book, tuple(fields), protocol
        self._writers: list[asyncio.StreamWriter] = []
        self._symbol_set = frozenset(names)
        super().__init__(names, venue=m.VENUE, endpoint=endpoint or LEVEL1, rest_endpoint=rest_endpoint,
                         journal=journal, settings=settings)

    def ws_url(self) -> str:
        """The Level 1 address (named in STATUS rows)."""
        return f"tcp://{self.level1[0]}:{self.level1[1]}"

    def make_decoder(self) -> IQFeedDecoder:
        """The batch decoder; its session state (field set, protocol, date, orders) spans reconnects."""
        return IQFeedDecoder()

    def subscribe_messages(self) -> list[str]:
        """Level 1: protocol, field selection, a watch per symbol."""
        return [f"S,SET PROTOCOL,{self.protocol}", "S,SELECT UPDATE FIELDS," + ",".join(self.fields),
                *(f"w{s}" for s in self.symbols)]

    def level2_messages(self) -> list[str]:
        """Level 2: protocol and a market-by-order (or by-price) watch per symbol."""
        return [f"S,SET PROTOCOL,{self.protocol}", *(f"{BOOKS[self.book]},{s}" for s in self.symbols)]

    def after_frame(self, frame: RawFrame) -> None:
        """A Level 2 summary (``6`` orders, ``7`` price levels, ``Z`` top level) is the whole book of
        its symbol, as IQConnect sends it after a watch: from there the symbol's book rows are valid
        (IQConnect has no sequence numbers, so nothing later can tell a gap; a reconnect watches
        again and gets a new summary)."""
        if frame.data[:2] in _SUMMARIES:
            symbol = frame.data.split(b",", 2)[1].decode("ascii", "replace")
            if symbol in self._symbol_set and not self.sync.synced(symbol):
                self.sync.sync_done(symbol, "IQConnect Level 2 summary")

    async def send(self, message: str) -> None:
        """Send a command on the first connection (Level 1; Level 2 when alone); dropped when closed."""
        if self._writers and not self._writers[0].is_closing():
            self._writers[0].write(message.encode() + b"\r\n")

    async def _session(self) -> AsyncIterator[LiveBatch]:
        s = self.settings
        targets = [(self.level1, self.subscribe_messages())] if self.use_level1 else []
        if self.level2 is not None:
            targets.append((self.level2, self.level2_messages()))
        streams = []
        try:
            for (host, port), commands in targets:
                async with asyncio.timeout(s.open_timeout_s):
                    reader, writer = await asyncio.open_connection(host, port, limit=_LIMIT)
                streams.append((reader, writer, commands))
        except (OSError, TimeoutError) as exc:
            for _, writer, _ in streams:
                writer.close()
            self.sync.lost(DISCONNECTED, f"connecting to IQConnect failed: {type(exc).__name__}: {exc}")
            yield self._batch([], [])
            return
        self._writers = [w for _, w, _ in streams]
        loop = asyncio.get_running_loop()
        self._last_frame_s = time.monotonic()
        tasks = [loop.create_task(self._lines(r)) for r, _, _ in streams]
        tasks.append(loop.create_task(self._watchdog(s.stale_after_s)))
        try:
            for _, writer, commands in streams:
                writer.write(b"".join(c.encode() + b"\r\n" for c in commands))
                await writer.drain()
            self.sync.connected(f"connected to IQConnect {self.ws_url()}")
            await self.on_open()
            while True:
                frames, end = await self._take()
                if frames:
                    yield self._process(frames)
                if end is not None:
                    if not self._closing:
                        self.sync.lost(end.state, end.detail)
                        yield self._batch([], [])
                    return
        finally:
            self._writers = []
            for task in tasks:
                task.cancel()
            for _, writer, _ in streams:
                writer.close()
            self._pending = [f for f in self._pending if type(f) is not SessionEnd]

    async def _lines(self, reader: asyncio.StreamReader) -> None:
        venue, time_ns = self.venue, time.time_ns
        try:
            while True:
                raw = await reader.readline()
                if not raw.endswith(b"\n"):
                    break  # closed (a cut-short last line is not a message)
                self._last_frame_s = time.monotonic()
                self.frames_received += 1
                self._put(RawFrame(venue, time_ns(), raw.rstrip(b"\r\n"), WS))
                if len(self._pending) >= self.settings.max_queued_frames:
                    self._room.clear()
                    await self._room.wait()
            self._put(SessionEnd(DISCONNECTED, "IQConnect closed the connection"))
        except (ConnectionError, ValueError) as exc:
            self._put(SessionEnd(DISCONNECTED, f"IQConnect connection failed: {type(exc).__name__}: {exc}"))


async def lookup(endpoint: str, command: str, *, protocol: str = PROTOCOL,
                 timeout_s: float = 30.0) -> list[bytes]:
    """One lookup request on IQConnect's lookup port (9100): the response lines up to ``!ENDMSG!``.

    Args:
        endpoint: ``tcp://host:port`` of the lookup port.
        command: e.g. ``HTX,NEPT,1000,1,req1``.

    Returns:
        The lines as received (``\\r\\n`` removed), the ``!ENDMSG!`` line last.

    Raises:
        ConfigError: a bad endpoint. OSError / TimeoutError: the port cannot be reached in time.
    """
    host, port = address(endpoint)
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port, limit=_LIMIT)
        try:
            writer.write(f"S,SET PROTOCOL,{protocol}\r\n{command}\r\n".encode())
            await writer.drain()
            out: list[bytes] = []
            while True:
                raw = await reader.readline()
                if not raw:
                    return out
                line = raw.rstrip(b"\r\n")
                if line.startswith(b"S,CURRENT PROTOCOL"):
                    continue
                out.append(line)
                if m.END_OF_RESPONSE.encode() in line:
                    return out
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
