"""The live flow's publisher: every output micro-batch as one JSON line to local subscribers.

``tapeflow live --publish 127.0.0.1:PORT`` starts a :class:`Publisher` in the flow (one, on the
sink's single partition); ``tapeflow serve --live 127.0.0.1:PORT`` subscribes and relays each line
to the browsers' WebSockets. The flow never waits on a subscriber: each has a bounded queue and a
writer thread, and one that falls a whole queue behind is disconnected (it reconnects and starts
from the next batch; history fills the rest from the lake). The port has no authentication, so it
binds loopback only.

Line format (``docs/dashboard.md``): ``{"type": "rows", "table": NAME, "pub_ns": WALL_NS, "rows": [...]}``
with the record's columns (``rejected`` rows without their raw bytes); ``alert`` lines carry the
alerts engine's payloads (:meth:`tapeflow.alerts.alert.Alert.payload`), published by the flow's
alerts step through :func:`running` (the publisher its flow started on the same address).
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Any

import orjson
import pyarrow as pa

from tapeflow.serve.settings import check_publish, parse_address

# What the dashboard shows; the decoded input (book deltas, order events, venue quotes) stays in the lake.
PUBLISHED = ("trade", "bbo", "book_snapshot", "bar", "metric", "signal", "status", "rejected")
ALERT = "alert"
QUEUE_LINES = 4096
_RUNNING: dict[str, Publisher] = {}  # by the address it was asked for (the flow's --publish value)
_RUNNING_LOCK = threading.Lock()


def running(address: str) -> Publisher | None:
    """The open publisher of this process started on ``address`` (None: none, or it closed)."""
    with _RUNNING_LOCK:
        return _RUNNING.get(address)


def encode(table_name: str, table: pa.Table | list[dict[str, Any]], pub_ns: int) -> bytes:
    """One line of the publisher's protocol (newline included)."""
    if isinstance(table, pa.Table) and table_name == "rejected" and "raw" in table.column_names:
        table = table.drop_columns(["raw"])
    rows = table.to_pylist() if isinstance(table, pa.Table) else table
    return orjson.dumps({"type": "rows", "table": table_name, "pub_ns": pub_ns, "rows": rows},
                        default=_bytes) + b"\n"


def _bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


class _Subscriber:
    def __init__(self, conn: socket.socket, on_drop: Any, queue_lines: int) -> None:
        self.conn = conn
        self.lines: queue.Queue[bytes | None] = queue.Queue(queue_lines)
        self.alive = True
        self._on_drop = on_drop
        threading.Thread(target=self._write, name="tapeflow-publish-writer", daemon=True).start()

    def offer(self, line: bytes) -> None:
        try:
            self.lines.put_nowait(line)
        except queue.Full:
            self.drop()

    def drop(self) -> None:
        if self.alive:
            self.alive = False
            self._on_drop(self)
            try:
                self.lines.put_nowait(None)
            except queue.Full:
                pass
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _write(self) -> None:
        try:
            while self.alive:
                line = self.lines.get()
                if line is None:
                    break
                self.conn.sendall(line)
        except OSError:
            pass
        finally:
            self.drop()
            self.conn.close()


class Publisher:
    """A loopback TCP server that sends every published batch to each connected subscriber.

    Args:
        address: ``HOST:PORT`` (port 0: any free port; :attr:`port` says which).
        queue_lines: batches a subscriber may fall behind before it is disconnected.

    Raises:
        ConfigError: the address is malformed or not loopback.
        OSError: the port cannot be bound.
    """

    def __init__(self, address: str, *, queue_lines: int = QUEUE_LINES) -> None:
        host, port = parse_address(check_publish(address), "--publish", allow_zero=True)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.socket(family, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, port))
        self._server.listen(16)
        self.host, self.port = host, self._server.getsockname()[1]
        self._subscribers: list[_Subscriber] = []
        self._queue_lines = queue_lines
        self._lock = threading.Lock()
        self.published = 0
        self.dropped_subscribers = 0
        self._closed = False
        self.address = address
        with _RUNNING_LOCK:
            _RUNNING[address] = self
        threading.Thread(target=self._accept, name="tapeflow-publish-accept", daemon=True).start()

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._subscribers.append(_Subscriber(conn, self._forget, self._queue_lines))

    def _forget(self, sub: _Subscriber) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
                self.dropped_subscribers += 1

    def publish(self, table_name: str, table: pa.Table) -> None:
        """Send one output batch (nothing when no one listens or the table is not dashboard data)."""
        if table_name not in PUBLISHED or table.num_rows == 0:
            return
        self._send(table_name, table)

    def publish_alerts(self, payloads: list[dict[str, Any]]) -> None:
        """Send the alerts a batch raised (their JSON payloads) as one ``alert`` line."""
        if payloads:
            self._send(ALERT, payloads)

    def _send(self, table_name: str, rows: pa.Table | list[dict[str, Any]]) -> None:
        with self._lock:
            subs = list(self._subscribers)
        if not subs:
            return
        line = encode(table_name, rows, time.time_ns())
        for sub in subs:
            sub.offer(line)
        self.published += 1

    def close(self) -> None:
        """Stop accepting; flush what each subscriber has queued, then close."""
        self._closed = True
        with _RUNNING_LOCK:
            if _RUNNING.get(self.address) is self:
                del _RUNNING[self.address]
        self._server.close()
        with self._lock:
            subs = list(self._subscribers)
        for sub in subs:
            try:
                sub.lines.put(None, timeout=5)
            except queue.Full:
                sub.drop()
