"""A local TCP server speaking Databento's live gateway protocol and streaming a real DBN file.

The handshake is the gateway's, as the official client implements it (``databento/live/gateway.py``,
``protocol.py``) and the API test vectors record it: text lines ``key=value|...\\n``:

1. server: ``lsg_version=<version>`` (the greeting), then, in a separate write, ``cram=<challenge>``;
2. client: ``auth=<sha256_hex(challenge + "|" + key)>-<last 5 characters of the key>|dataset=...|
   encoding=dbn|ts_out=0|compression=none|client=...``;
3. server: ``success=1|session_id=<n>`` (or ``success=0|error=...`` and the connection closed);
4. client: one or more ``schema=...|stype_in=...|symbols=...|snapshot=0|is_last=1`` lines, then
   ``start_session=0``;
5. server: the DBN stream: the file's metadata, then its records.

``sessions`` scripts outages: connection ``k`` streams the records ``sessions[k]`` (start, stop
indices) and then closes, so a session that stops short and a next one that starts later leaves
exactly the records in between unsent (what a live client misses while it reconnects).
Connections past the script are closed right after the greeting. Not implemented: ``start=``
intraday replay, snapshots, heartbeats and zstd sessions.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from pathlib import Path

import numpy as np

from tapeflow.venues.databento.framing import cut_records, read_all, read_dbn_header
from tapeflow.venues.databento.gateway import cram_response, parse_line

GREETING = "lsg_version=0.0.0-tapeflow-mock\n"


class MockGateway:
    """The server; ``with MockGateway(path, key) as gw: (gw.host, gw.port)``.

    Args:
        path: the DBN file to stream (its metadata names the dataset and schema).
        key: the API key it accepts.
        sessions: ``(start, stop)`` record indices per connection (default: one session, every record).
        chunk_bytes: bytes per socket write (records split across writes, as TCP may deliver them).
    """

    def __init__(self, path: Path, key: str, *, sessions: list[tuple[int, int]] | None = None,
                 chunk_bytes: int = 4096) -> None:
        header = read_dbn_header(path)
        raw = read_all(path)
        self.dataset = header.metadata.dataset
        self.schema = str(header.metadata.schema)
        self.meta = raw[: header.records_at]
        buf = np.frombuffer(raw, dtype=np.uint8)
        cut = cut_records(buf, header.records_at, None)
        self.records = raw
        self.offsets = cut.offsets.tolist() + [cut.stop]
        self.count = cut.offsets.size
        self.sessions = sessions if sessions is not None else [(0, self.count)]
        self.key = key
        self.chunk_bytes = chunk_bytes
        self.received: list[list[str]] = []  # control lines per connection
        self.connections = 0
        self.host, self.port = "127.0.0.1", 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MockGateway:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="mock-databento-lsg")
        self._thread.start()
        ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(asyncio.start_server(self._session, self.host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        self._server.close()
        loop.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        lines: list[str] = []
        self.received.append(lines)
        try:
            writer.write(GREETING.encode())
            await writer.drain()
            if index >= len(self.sessions):
                return
            challenge = secrets.token_urlsafe(24)[:32]
            writer.write(f"cram={challenge}\n".encode())  # a separate write, as the gateway does
            await writer.drain()
            line = (await reader.readline()).decode()
            lines.append(line)
            auth = parse_line(line)
            if auth.get("auth") != cram_response(challenge, self.key) or auth.get("dataset") != self.dataset:
                writer.write(b"success=0|error=Authentication failed.\n")
                await writer.drain()
                return
            writer.write(f"success=1|session_id={index + 1}\n".encode())
            await writer.drain()
            while True:
                line = (await reader.readline()).decode()
                if not line:
                    return
                lines.append(line)
                if line.startswith("start_session"):
                    break
            start, stop = self.sessions[index]
            body = self.meta + self.records[self.offsets[start]: self.offsets[stop]]
            for at in range(0, len(body), self.chunk_bytes):
                writer.write(body[at: at + self.chunk_bytes])
                await writer.drain()
        except (ConnectionError, ValueError):
            return
        finally:
            writer.close()
