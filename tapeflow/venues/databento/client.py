"""Databento's live gateway as a source of the live flow: MBO (any schema) over the raw TCP protocol.

:class:`DatabentoLive` speaks the gateway protocol as the official ``databento.Live`` does
(``databento/live/protocol.py``: greeting, CRAM challenge, authentication, subscriptions,
``start_session``, then a DBN stream), against a configurable host and port. The official
package is not used: no release of it accepts ``databento-dbn==0.72.0`` (docs/databento.md).

Every byte of a session's DBN stream is journaled first (``<journal>/dbn/<dataset>/<session>.dbn``:
the session's metadata and records exactly as received, a DBN file the landing sensor and
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
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import ConfigError, FormatError
from tapeflow.live.frames import LiveBatch, StatusLog
from tapeflow.secrets import Secret
from tapeflow.venues.databento.gateway import cram_response, parse_line
from tapeflow.venues.databento.stream import StreamDecoder

READ_BYTES = 1 << 16
GAP_SCHEMA = "schema="  # a gap row's detail starts with schema=<schema>: (what the repair requests)
CLIENT = "tapeflow"


class HandshakeError(ConnectionError):
    """The gateway refused the session or spoke out of turn (the message never holds the key)."""


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
        where = f"{self.host}:{self.port}"
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.open_timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                session_id = await self._handshake(reader, writer)
        except (OSError, TimeoutError, HandshakeError, ValueError) as exc:
            self._status("disconnected",
                         f"connecting to the gateway at {where} failed: {type(exc).__name__}: {exc}")
            if writer is not None:
                writer.close()
            yield self._batch({})
            return
        self._status("connected", f"session {session_id} at {where}: {self.schema} {','.join(self.symbols)}")
        path, sink = self._journal_file(session_id)
        decoder = StreamDecoder(path)
        first = True
        why = ""
        try:
            while not self._closing:
                read = asyncio.ensure_future(reader.read(READ_BYTES))
                closed = asyncio.ensure_future(self._closed.wait())
                done, _ = await asyncio.wait({read, closed}, return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                if read not in done:
                    read.cancel()
                    break
                data = read.result()
                if not data:
                    break
                if sink is not None:
                    sink.write(data)
                    sink.flush()
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
        except OSError as exc:
            why = f"the session at {where} broke: {type(exc).__name__}: {exc}"
        finally:
            if sink is not None:
                sink.close()
            writer.close()
        tail = decoder.finish()
        if not why:
            why = "closed by the consumer" if self._closing else \
                f"the gateway closed the session after {decoder.bytes_fed:,} bytes"
        self._status("disconnected", why)
        yield self._batch(tail)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        greeting = parse_line((await reader.readline()).decode())
        if "lsg_version" not in greeting:
            raise HandshakeError(f"the gateway sent no greeting (got keys {sorted(greeting)})")
        challenge = parse_line((await reader.readline()).decode()).get("cram")
        if not challenge:
            raise HandshakeError("the gateway sent no CRAM challenge")
        auth = cram_response(challenge, self._key.reveal())
        writer.write(f"auth={auth}|dataset={self.dataset}|encoding=dbn|ts_out=0|compression=none|"
                     f"client={CLIENT}\n".encode())
        await writer.drain()
        answer = parse_line((await reader.readline()).decode())
        if answer.get("success") != "1":
            raise HandshakeError(f"authentication refused: {answer.get('error', 'no reason given')}")
        writer.write(f"schema={self.schema}|stype_in={self.stype_in}|symbols={','.join(self.symbols)}|"
                     f"snapshot=0|is_last=1\n".encode())
        writer.write(b"start_session=0\n")
        await writer.drain()
        return answer.get("session_id") or ""

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


def _recv_bound(tables: dict[str, pa.Table], how: Any) -> int | None:
    values = [how(t.column("ts_recv_ns")).as_py() for name, t in tables.items()
              if name != "rejected" and t.num_rows and "ts_recv_ns" in t.column_names]
    values = [v for v in values if v is not None and v >= 0]
    if not values:
        return None
    return min(values) if how is pc.min else max(values)
