"""The relay: the flow's publisher (:mod:`tapeflow.serve.publish`) -> state + browsers' WebSockets.

One asyncio task subscribes to the publisher (reconnecting every second while it is down), keeps
the latest state per instrument (book snapshot, BBO, last bar per interval, recent trades,
metrics, signals, feed state, rejects per reason), the recent alerts the flow's alerts step
raised, and forwards each line unchanged to every
WebSocket client. A browser gets the state first (``{"type": "hello", ...}``), then the lines. A
client that falls :data:`CLIENT_QUEUE` lines behind is closed (1013) rather than slowing the others.
Nothing here polls the lake or the warehouse.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import orjson

CLIENT_QUEUE = 2048
RECENT_TRADES = 50
RECENT_SIGNALS = 200
RECENT_ALERTS = 200
RETRY_S = 1.0
LINE_LIMIT = 256 * 1024 * 1024


class Instrument:
    """The latest of everything for one instrument."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] | None = None
        self.bbo: dict[str, Any] | None = None
        self.bars: dict[str, dict[str, Any]] = {}
        self.trades: deque[dict[str, Any]] = deque(maxlen=RECENT_TRADES)
        self.metric: dict[str, Any] | None = None
        self.signals: deque[dict[str, Any]] = deque(maxlen=RECENT_SIGNALS)
        self.signal_count = 0
        self.state: dict[str, Any] | None = None
        self.state_counts: dict[str, int] = {}
        self.rejects: dict[str, int] = {}

    def apply(self, table: str, row: dict[str, Any]) -> None:
        if table == "book_snapshot":
            self.snapshot = row
        elif table == "bbo":
            self.bbo = row
        elif table == "bar":
            last = self.bars.get(row["interval"])
            if last is None or (row["ts_event_ns"], row["revision"]) >= (
                last["ts_event_ns"],
                last["revision"],
            ):
                self.bars[row["interval"]] = row
        elif table == "trade":
            self.trades.append(row)
        elif table == "metric":
            self.metric = row
        elif table == "signal":
            self.signals.append(row)
            self.signal_count += 1
        elif table == "status":
            since = row["ts_event_ns"] if row["ts_event_ns"] >= 0 else row["ts_recv_ns"]
            self.state = {"state": row["state"], "since_ns": since, "detail": row["detail"]}
            self.state_counts[row["state"]] = self.state_counts.get(row["state"], 0) + 1
        elif table == "rejected":
            self.rejects[row["reason"]] = self.rejects.get(row["reason"], 0) + 1

    def view(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "bbo": self.bbo,
            "bars": self.bars,
            "trades": list(self.trades),
            "metric": self.metric,
            "signals": list(self.signals),
            "signal_count": self.signal_count,
            "state": self.state,
            "state_counts": self.state_counts,
            "rejects": self.rejects,
        }


class LiveHub:
    """Subscribes to a publisher and fans its lines out to WebSocket clients.

    Args:
        host, port: the publisher (``tapeflow live --publish``).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.instruments_state: dict[tuple[str, str], Instrument] = {}
        self.clients: set[asyncio.Queue[bytes | None]] = set()
        self.connected = False
        self.lines = 0
        self.last_pub_ns: int | None = None
        self.alert_ids: deque[str] = deque(maxlen=RECENT_ALERTS)
        self.alerts: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle (the app's lifespan)
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for q in list(self.clients):
            self._close_client(q)

    async def _run(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=LINE_LIMIT)
            except OSError:
                await asyncio.sleep(RETRY_S)
                continue
            self._set_connected(True)
            try:
                while line := await reader.readline():
                    self.receive(line)
            except (OSError, ValueError):
                pass
            finally:
                self._set_connected(False)
                writer.close()
            await asyncio.sleep(RETRY_S)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        self._broadcast(orjson.dumps({"type": "relay", "connected": connected}) + b"\n")

    # ---- the stream
    def receive(self, line: bytes) -> None:
        """Apply one publisher line to the state and forward it to every client."""
        try:
            message = orjson.loads(line)
            table, rows = message["table"], message["rows"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return  # not a line of ours: the publisher is the only writer, so this is a torn connection
        for row in rows:
            if table == "alert":  # not instrument data: a run's or a check's alert has no instrument
                self.alerts.append(row)
                self.alert_ids.append(str(row.get("alert_id", "")))
                continue
            key = (row.get("venue", ""), row.get("symbol", ""))
            self.instruments_state.setdefault(key, Instrument()).apply(table, row)
        self.lines += 1
        self.last_pub_ns = message.get("pub_ns")
        self._broadcast(line)

    def _broadcast(self, line: bytes) -> None:
        for q in list(self.clients):
            try:
                q.put_nowait(line)
            except asyncio.QueueFull:
                self._close_client(q)

    def _close_client(self, q: asyncio.Queue[bytes | None]) -> None:
        self.clients.discard(q)
        with contextlib.suppress(asyncio.QueueFull):
            q.put_nowait(None)

    def subscribe(self) -> asyncio.Queue[bytes | None]:
        q: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE)
        self.clients.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[bytes | None]) -> None:
        self.clients.discard(q)

    # ---- what the API reads
    def has(self, venue: str, symbol: str) -> bool:
        return (venue, symbol) in self.instruments_state

    def instruments(self) -> list[tuple[str, str]]:
        return sorted(self.instruments_state)

    def knows_alert(self, alert_id: str) -> bool:
        return alert_id in self.alert_ids

    def feed(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The feed state per instrument: its last STATUS row, else streaming or ended with the relay."""
        out = {}
        for key, inst in self.instruments_state.items():
            state = inst.state or {
                "state": "streaming" if self.connected else "ended",
                "since_ns": None,
                "detail": "no feed-status event yet",
            }
            out[key] = {**state, "counts": dict(inst.state_counts), "rejects": dict(inst.rejects)}
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "publisher": f"{self.host}:{self.port}",
            "connected": self.connected,
            "lines": self.lines,
            "clients": len(self.clients),
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "lines": self.lines,
            "last_pub_ns": self.last_pub_ns,
            "instruments": {
                f"{v}|{s}": inst.view() for (v, s), inst in sorted(self.instruments_state.items())
            },
            "feed": {f"{v}|{s}": f for (v, s), f in self.feed().items()},
            "alerts": list(self.alerts),
        }
