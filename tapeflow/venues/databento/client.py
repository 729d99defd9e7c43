"""Databento's live gateway as a source of the live flow: MBO (any schema) over the raw TCP protocol.

:class:`DatabentoLive` runs each session through the official client, ``databento.Live(key,
gateway=host, port=port)`` (greeting, CRAM challenge, authentication, subscription,
``start_session``, then a DBN stream), against a configurable host and port: ``subscribe`` opens
the session, and the client writes its metadata and every record it decodes (as DBN, upgraded to
v3) to a stream whose bytes this loop takes over.

Every byte of that stream is journaled first (``<journal>/dbn/<dataset>/<session>.dbn``:
the session's metadata and records as the official client hands them over, a DBN file the landing sensor and
``tapeflow ingest`` decode) and then decoded by :class:`~tapeflow.venues.databento.stream.StreamDecoder`
with the batch decoder's framing and converters, so the live records equal a batch decode of the
journal. The key is a :class:`~tapeflow.secrets.Secret`: only its CRAM hash is sent.

Outages: when a session ends the client writes ``disconnected`` STATUS rows and reconnects with
backoff; the first record of the next session closes the hole with one ``gap`` row per symbol whose
``ts_recv_ns`` .. ``until_ns`` is the capture-time range no record arrived for (the last record's
``ts_recv`` + 1 to the next one's), which the gap-repair sensor fills from the historical API.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import ConfigError, FormatError
from tapeflow.live.frames import LiveBatch, StatusLog
from tapeflow.secrets import Secret, scrub
from tapeflow.venues.databento.stream import StreamDecoder

GAP_SCHEMA = "schema="  # a gap row's detail starts with schema=<schema>: (what the repair requests)


def gateway_address(endpoint: str | None, dataset: str, host: str | None, port: int) -> tuple[str, int]:
    """``(host, port)`` from ``tcp://host:port`` / ``host:port``, else the configured or production one.

    Raises:
        ConfigError: an endpoint that is not ``host:port``.
    """
    if endpoint:
        text = endpoint.removeprefix("tcp://").rstrip("/")
        name, sep, port_text = text.rpartition(":")
        if not sep or not name or not port_text.isdigit():
            raise ConfigError(f"a Databento live endpoint is tcp://host:port, got {endpoint!r}")
        return name, int(port_text)
    return host or f"{dataset.lower().replace('.', '-')}.lsg.databento.com", port


class DatabentoLive:
    """A live session loop yielding :class:`~tapeflow.live.frames.LiveBatch` es (the flow's ``LiveSource``).

    Args:
        symbols: the symbols to subscribe (``stype_in`` spelling).
        endpoint: ``tcp://host:port`` of the gateway (None: ``TAPEFLOW_DATABENTO_LIVE`` or the
            dataset's production gateway).
        rest_endpoint: unused (the live gateway has no REST side); accepted as every client takes it.
        journal: a :class:`tapeflow.journal.Journal` or a folder: sessions go to
            ``<root>/dbn/<dataset>/``; None: no journal.
        dataset: the dataset code.
        schema: the DBN schema to subscribe.
        stype_in: the symbology of ``symbols``.
        api_key: the key (None: ``DATABENTO_API_KEY`` / ``DATABENTO_API_KEY_FILE``).
        max_connects: stop after this many connections (None: reconnect for ever).
        backoff_s: wait before reconnecting (doubles per failed connection, up to 30 s).
        open_timeout_s: limit of the connection and the handshake.
    """

    def __init__(self, symbols: Sequence[str], *, endpoint: str | None = None,
                 rest_endpoint: str | None = None,
                 journal: Any = None, dataset: str = "GLBX.MDP3", schema: str = "mbo",
                 stype_in: str = "raw_symbol", api_key: Secret | None = None, max_connects: int | None = None,
                 backoff_s: float = 0.5, open_timeout_s: float = 10.0) -> None:
        from tapeflow.settings import DatabentoSettings

        settings = DatabentoSettings.from_env() if api_key is None or endpoint is None else None
        key = api_key if api_key is not None else settings.api_key if settings is not None else None
        if key is None:
            raise ConfigError("no Databento API key: set DATABENTO_API_KEY or DATABENTO_API_KEY_FILE")
        self._key: Secret = key
        self.symbols = list(symbols)
        self.dataset, self.schema, self.stype_in = dataset, schema, stype_in
        self.host, self.port = gateway_address(endpoint, dataset, settings.live_host if settings else None,
                                               settings.live_port if settings else 13000)
        root = journal if journal is None or isinstance(journal, (str, Path)) else journal.root  # a Journal
        self.journal_dir = Path(root) / "dbn" / dataset if root is not None else None
        self.max_connects = max_connects
        self.backoff_s = backoff_s
        self.open_timeout_s = open_timeout_s
        self.venue = dataset
        self.log = StatusLog(dataset)
        self.connects = 0
        self.sessions: list[Path] = []
        self.gaps: list[tuple[int, int]] = []
        self._last_recv_ns: int | None = None
        self._closing = False
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"DatabentoLive({self.dataset} {self.schema} {self.symbols} at {self.host}:{self.port})"

    def close(self) -> None:
        """Stop: the session ends and :meth:`batches` returns after its last batch."""
        self._closing = True
        self._closed.set()

    async def batches(self) -> AsyncIterator[LiveBatch]:
        """Connect, authenticate, subscribe and yield micro-batches until closed or out of connections."""
        delay = self.backoff_s
        while not self._closing and (self.max_connects is None or self.connects < self.max_connects):
            self.connects += 1
            got = False
            async for batch in self._session():
                got = got or bool(batch.records)
                yield batch
            if self._closing or (self.max_connects is not None and self.connects >= self.max_connects):
                break
            delay = self.backoff_s if got else min(delay * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)

    async def _session(self) -> AsyncIterator[LiveBatch]:
        import databento as db  # lazy: heavy, and only a live session needs it

        where = f"{self.host}:{self.port}"
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        live = db.Live(self._key.reveal(), gateway=self.host, port=self.port)
        try:
            async with asyncio.timeout(self.open_timeout_s):
                # subscribe() connects, authenticates and subscribes, blocking on the client's own loop
                await asyncio.to_thread(live.subscribe, dataset=self.dataset, schema=self.schema,
                                        stype_in=self.stype_in, symbols=list(self.symbols))
        except (db.BentoError, OSError, TimeoutError, ValueError) as exc:
            live.terminate()
            self._status("disconnected", _refusal(where, exc))
            yield self._batch({})
            return
        session_id = str(live.session_id or "")
        self._status("connected", f"session {session_id} at {where}: {self.schema} {','.join(self.symbols)}")
        # the client writes the session's metadata and then every record it decodes, as DBN, to a
        # stream (on its own thread): the bytes come over to this loop in order
        live.add_stream(_ToLoop(loop, chunks))
        live.start()
        closer = asyncio.ensure_future(live.wait_for_close())
        closer.add_done_callback(lambda _: chunks.put_nowait(None))  # after every write before it
        path, sink = self._journal_file(session_id)
        decoder = StreamDecoder(path)
        first = True
        why = ""
        try:
            while not self._closing:
                got = asyncio.ensure_future(chunks.get())
                closed = asyncio.ensure_future(self._closed.wait())
                done, _ = await asyncio.wait({got, closed}, return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                if got not in done:
                    got.cancel()
                    break
                data, ended_here = _drain(got.result(), chunks)  # the client writes record by record
                if data and sink is not None:
                    sink.write(data)
                    sink.flush()
                if ended_here and not data:
                    break
                try:
                    tables = decoder.feed(data)
                except FormatError as exc:  # not DBN: nothing after it can be framed; the journal keeps it
                    why = f"the gateway's stream could not be decoded: {exc}"
                    break
                if tables:
                    if first:
                        self._close_gap(tables)
                        first = False
                    self._advance(tables)
                    yield self._batch(tables)
                if ended_here:
                    break
        finally:
            if sink is not None:
                sink.close()
            if not closer.done():
                live.terminate()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(closer), self.open_timeout_s)
        tail = decoder.finish()
        ended = closer.exception() if closer.done() and not closer.cancelled() else None
        if not why and ended is not None:
            # the official client ends a session it cannot decode, or one the gateway broke, with an error
            why = (f"the gateway's stream could not be decoded or the session at {where} broke: "
                   f"{type(ended).__name__}: {scrub(str(ended), [self._key])}")
        if not why and not self._closing and decoder.bytes_fed == 0:
            # databento.Live logs a stream it cannot decode (not DBN) and closes the session without
            # an error and without handing over a byte: a session that ends before its metadata
            why = ("the gateway's stream could not be decoded: the session ended before the official "
                   "client handed over any DBN metadata (the gateway sent none, or bytes that are not "
                   "DBN: the `databento.live.protocol` log says which)")
        if not why:
            why = "closed by the consumer" if self._closing else \
                f"the gateway closed the session after {decoder.bytes_fed:,} bytes"
        self._status("disconnected", why)
        yield self._batch(tail)

    def _journal_file(self, session_id: str) -> tuple[Path, IO[bytes] | None]:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-session{session_id or 0}-{self.connects}.{self.schema}.dbn"
        if self.journal_dir is None:
            return Path(f"live-{name}"), None
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        path = self.journal_dir / name
        self.sessions.append(path)
        return path, open(path, "wb")

    def _close_gap(self, tables: dict[str, pa.Table]) -> None:
        first = _recv_bound(tables, pc.min)
        if self._last_recv_ns is None or first is None or first <= self._last_recv_ns + 1:
            return
        start, end = self._last_recv_ns + 1, first
        self.gaps.append((start, end))
        for symbol in self.symbols:
            self.log.add(symbol, "gap", ts_recv_ns=start, until_ns=end,
                         detail=f"{GAP_SCHEMA}{self.schema}: no record captured in [{start}, {end}) while "
                                f"reconnecting; the Databento gap-repair sensor fetches it from the "
                                f"historical API")

    def _advance(self, tables: dict[str, pa.Table]) -> None:
        last = _recv_bound(tables, pc.max)
        if last is not None and (self._last_recv_ns is None or last > self._last_recv_ns):
            self._last_recv_ns = last

    def _status(self, state: str, detail: str) -> None:
        now = time.time_ns()
        for symbol in self.symbols:
            self.log.add(symbol, state, detail=detail, ts_recv_ns=now)

    def _batch(self, tables: dict[str, pa.Table]) -> LiveBatch:
        records = {k: t for k, t in tables.items() if t.num_rows}
        return LiveBatch(frames=[], records=records, status=self.log.drain())


class _ToLoop(io.RawIOBase):
    """A writable stream for ``databento.Live.add_stream``: the writes (record by record, on the
    client's thread) are gathered and queued, in order, on the session's event loop as one chunk
    per loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
        super().__init__()
        self._loop, self._queue = loop, queue
        self._lock = threading.Lock()
        self._parts: list[bytes] = []
        self._scheduled = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        with self._lock:
            self._parts.append(chunk)
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon_threadsafe(self._hand_over)
        return len(chunk)

    def _hand_over(self) -> None:
        with self._lock:
            data, self._parts, self._scheduled = b"".join(self._parts), [], False
        self._queue.put_nowait(data)


def _drain(first: bytes | None, queue: asyncio.Queue[bytes | None]) -> tuple[bytes, bool]:
    """``first`` and every chunk already queued behind it, joined; and whether the end (None) came."""
    if first is None:
        return b"", True
    parts = [first]
    while not queue.empty():
        chunk = queue.get_nowait()
        if chunk is None:
            return b"".join(parts), True
        parts.append(chunk)
    return b"".join(parts), False


def _refusal(where: str, exc: BaseException) -> str:
    """The STATUS detail of a session that did not start (the official client's message kept)."""
    text = str(exc) or type(exc).__name__
    if "auth" in text.lower() or "Authentication" in text:
        return f"authentication refused: {text}"
    return f"connecting to the gateway at {where} failed: {type(exc).__name__}: {text}"


def _recv_bound(tables: dict[str, pa.Table], how: Any) -> int | None:
    values = [how(t.column("ts_recv_ns")).as_py() for name, t in tables.items()
              if name != "rejected" and t.num_rows and "ts_recv_ns" in t.column_names]
    values = [v for v in values if v is not None and v >= 0]
    if not values:
        return None
    return min(values) if how is pc.min else max(values)
