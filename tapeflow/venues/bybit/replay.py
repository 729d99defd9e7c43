"""Bybit on loopback: v5 (``orderbook.N.SYM``, ``publicTrade.SYM``) and legacy v2 (``orderBookL2_25.SYM``,
``trade.SYM``) topics, ``{"op":"subscribe"}`` / ``{"op":"ping"}``, snapshots for mid-stream joins.

A subscription matches a captured topic by its family and symbol (``orderbook.50.XRPUSDT`` gets
the captured ``orderbook.500.XRPUSDT``): the replay serves the depth that was recorded.
History zips (``*.data.zip``) have no capture time; each line's ``ts`` stands in for it.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tapeflow.replay.protocol import (
    Frame,
    Key,
    Reply,
    Session,
    StringBook,
    VenueReplay,
    dumps,
    is_zero,
    loads,
    price_key,
)
from tapeflow.wire.capture import RECV, CaptureLine
from tapeflow.wire.rejects import Rejects

_V5_BOOK, _V2_BOOK = "orderbook", "orderBookL2_25"
_BOOK_FAMILIES = frozenset({_V5_BOOK, _V2_BOOK, "orderBookL2_200", "orderBook_200"})


def topic_key(topic: str) -> Key:
    """``orderbook.500.XRPUSDT`` -> ``("orderbook", "XRPUSDT")``; ``trade.X`` -> ``("trade", "X")``."""
    parts = topic.split(".")
    return parts[0], parts[-1]


class _V2Book:
    def __init__(self, wrapped: bool) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.wrapped = wrapped  # linear snapshots wrap the rows in {"order_book": [...]}


class BybitReplay(VenueReplay):
    """Bybit public topics from v5 history zips and v5/v2 websocket captures."""

    name = "bybit"

    def __init__(self) -> None:
        super().__init__()
        self.topics: dict[Key, str] = {}
        self.v5: dict[str, StringBook] = {}
        self.v5_last: dict[str, dict[str, Any]] = {}
        self.v2: dict[str, _V2Book] = {}
        self.v2_last: dict[str, dict[str, Any]] = {}

    def frames_of(self, path: Path, rejects: Rejects) -> Iterator[Frame]:
        """History zips line by line (``ts`` as capture time), other files as captures."""
        if not zipfile.is_zipfile(path):
            yield from super().frames_of(path, rejects)
            return
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                with zf.open(member) as raw:
                    for lineno, body in enumerate(io.BufferedReader(raw), 1):
                        body = body.strip()
                        msg = loads(body) if body else None
                        ts = msg.get("ts") if isinstance(msg, dict) else None
                        line = CaptureLine(ts * 1_000_000 if isinstance(ts, int) else 0, RECV, "", body,
                                           f"{path.name}/{member}:{lineno}")
                        if not body:
                            continue
                        frame = self.classify(line)
                        if frame is not None:
                            yield frame

    def classify(self, line: CaptureLine) -> Frame | None:
        """Topic messages keyed by ``(family, symbol)``; ``success``/``op`` replies are not replayed."""
        if line.kind != RECV:
            return None
        msg = loads(line.payload)
        if isinstance(msg, dict) and ("success" in msg or "op" in msg):
            return None
        if not isinstance(msg, dict) or not isinstance(msg.get("topic"), str):
            self.unknown_shape(line, msg, "without a topic")
            return None
        key = topic_key(msg["topic"])
        self.topics.setdefault(key, msg["topic"])
        return Frame(line.recv_ns, line.payload, key, line.location)

    def apply(self, frame: Frame) -> None:
        """Book topics update the symbol's book (v5 by price, v2 by row id)."""
        if frame.key is None or frame.key[0] not in _BOOK_FAMILIES:
            return
        msg = loads(frame.payload)
        symbol, data = frame.key[1], msg.get("data")
        if frame.key[0] == _V5_BOOK and isinstance(data, dict):
            if msg.get("type") == "snapshot":
                self.v5[symbol] = StringBook()
            book = self.v5.get(symbol)
            if book is None:
                return
            for key, is_bid in (("b", True), ("a", False)):
                for px, size in data.get(key, []):
                    book.set(is_bid, px, [px, size], is_zero(size))
            self.v5_last[symbol] = {"ts": msg.get("ts"), "u": data.get("u"), "seq": data.get("seq")}
            return
        self._apply_v2(symbol, msg, data)

    def _apply_v2(self, symbol: str, msg: dict[str, Any], data: Any) -> None:
        if msg.get("type") == "snapshot":
            wrapped = isinstance(data, dict)
            rows = data.get("order_book", []) if isinstance(data, dict) else data
            book = self.v2[symbol] = _V2Book(wrapped)
            for row in rows or []:
                book.rows[str(row["id"])] = dict(row)
        else:
            book = self.v2.get(symbol)
            if book is None or not isinstance(data, dict):
                return
            for row in data.get("delete", []):
                book.rows.pop(str(row["id"]), None)
            for row in data.get("update", []):
                book.rows.setdefault(str(row["id"]), {}).update(row)
            for row in data.get("insert", []):
                book.rows[str(row["id"])] = dict(row)
        self.v2_last[symbol] = {k: msg[k] for k in ("cross_seq", "timestamp_e6") if k in msg}

    def snapshot(self, key: Key) -> list[bytes]:
        """The symbol's book now as a ``"type":"snapshot"`` message of its captured topic."""
        topic = self.topics.get(key, "")
        if key[0] == _V5_BOOK and key[1] in self.v5:
            book, last = self.v5[key[1]], self.v5_last.get(key[1], {})
            data = {"s": key[1], "b": book.top_bids(), "a": book.top_asks(), "u": last.get("u"),
                    "seq": last.get("seq")}
            return [dumps({"topic": topic, "type": "snapshot", "ts": last.get("ts"), "data": data})]
        if key[0] in _BOOK_FAMILIES and key[1] in self.v2:
            v2 = self.v2[key[1]]
            rows = sorted(v2.rows.values(), key=lambda r: price_key(str(r.get("price", "0"))))
            body: Any = {"order_book": rows} if v2.wrapped else rows
            return [dumps({"topic": topic, "type": "snapshot", "data": body, **self.v2_last.get(key[1], {})})]
        return []

    def session(self, connection: int) -> Session:
        """Bybit's op protocol for one connection."""
        return _BybitSession(self, connection)


class _BybitSession(Session):
    adapter: BybitReplay

    def on_message(self, text: str) -> Reply:
        msg = loads(text)
        op = msg.get("op") if isinstance(msg, dict) else None
        conn_id = f"replay-{self.connection}"
        base = {"conn_id": conn_id, "req_id": msg.get("req_id", "") if isinstance(msg, dict) else ""}
        if op == "ping":
            return Reply(send=[dumps({"success": True, "ret_msg": "pong", **base, "op": "ping"})])
        args = msg.get("args") if isinstance(msg, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return Reply(send=[dumps({"success": False, "ret_msg": f"Invalid op {op!r}", **base, "op": op})])
        keys = [topic_key(str(a)) for a in args]
        unknown = [a for a, k in zip(args, keys, strict=True) if k not in self.adapter.keys]
        request = {"op": op, "args": args}
        if unknown and op == "subscribe":
            why = f"Invalid topic: {', '.join(map(str, unknown))}"
            nack = {"success": False, "ret_msg": why, **base, "op": op, "request": request}
            return Reply(send=[dumps(nack)])
        ack = dumps({"success": True, "ret_msg": "", **base, "op": op, "request": request})
        if op == "subscribe":
            return Reply(send=[ack], subscribe=keys)
        return Reply(send=[ack], unsubscribe=keys)
