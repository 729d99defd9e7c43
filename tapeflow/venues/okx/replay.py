"""OKX v5 public websocket on loopback: ``subscribe`` events, text ``ping``/``pong``, and mid-stream
``books`` snapshots with a correct checksum (computed over the kept wire strings)."""

from __future__ import annotations

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
)
from tapeflow.venues.okx import messages as m
from tapeflow.wire.capture import RECV, CaptureLine


def arg_key(arg: Any) -> Key | None:
    """``(channel, instId)`` of a push's or a subscription's ``arg``; channels subscribed per
    instrument type (``liquidation-orders``) are keyed ``(channel, instType)``. None: not an arg."""
    if not isinstance(arg, dict) or not isinstance(arg.get("channel"), str):
        return None
    for name in ("instId", "instType"):
        if name in arg:
            return arg["channel"], str(arg[name])
    return None


class OkxReplay(VenueReplay):
    """OKX ``books``-family and ``trades`` channels keyed by ``(channel, instId)``."""

    name = "okx"

    def __init__(self) -> None:
        super().__init__()
        self.books: dict[Key, StringBook] = {}
        self.last: dict[Key, dict[str, Any]] = {}

    def classify(self, line: CaptureLine) -> Frame | None:
        """Channel pushes become frames; events and ``pong`` are not replayed."""
        if line.kind != RECV or line.payload.strip() in (b"pong", b"ping"):
            return None
        msg = loads(line.payload)
        if isinstance(msg, dict) and "event" in msg:
            return None
        arg = msg.get("arg") if isinstance(msg, dict) else None
        key = arg_key(arg)
        if key is None:
            self.unknown_shape(line, msg, "without a channel arg")
            return None
        return Frame(line.recv_ns, line.payload, key, line.location)

    def apply(self, frame: Frame) -> None:
        """Book pushes update the instrument's book; ``snapshot`` resets it."""
        if frame.key is None or frame.key[0] not in m.BOOK_CHANNELS:
            return
        msg = loads(frame.payload)
        for item in msg.get("data") or []:
            if msg.get("action") == m.SNAPSHOT or frame.key not in self.books:
                if msg.get("action") != m.SNAPSHOT:
                    continue
                self.books[frame.key] = StringBook()
            book = self.books[frame.key]
            for key, is_bid in (("bids", True), ("asks", False)):
                for level in item.get(key, []):
                    book.set(is_bid, level[0], level, is_zero(level[1]))
            self.last[frame.key] = {"ts": item.get("ts"), "seqId": item.get("seqId")}

    def snapshot(self, key: Key) -> list[bytes]:
        """``"action":"snapshot"`` of the book now: ``prevSeqId`` -1, ``seqId`` of the last push."""
        book = self.books.get(key)
        if book is None:
            return []
        bids, asks = book.top_bids(), book.top_asks()
        checksum = m.book_checksum([(b[0], b[1]) for b in bids], [(a[0], a[1]) for a in asks])
        last = self.last.get(key, {})
        item = {"asks": asks, "bids": bids, "ts": last.get("ts"), "checksum": checksum, "prevSeqId": -1,
                "seqId": last.get("seqId")}
        return [dumps({"arg": {"channel": key[0], "instId": key[1]}, "action": m.SNAPSHOT, "data": [item]})]

    def session(self, connection: int) -> Session:
        """OKX's op protocol for one connection."""
        return _OkxSession(self, connection)


class _OkxSession(Session):
    adapter: OkxReplay

    def on_message(self, text: str) -> Reply:
        if text.strip() == "ping":
            return Reply(send=["pong"])
        conn_id = f"{self.connection:08x}"
        msg = loads(text)
        op = msg.get("op") if isinstance(msg, dict) else None
        args = msg.get("args") if isinstance(msg, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            why = f"Invalid request: {text[:200]}"
            return Reply(send=[dumps({"event": "error", "code": "60012", "msg": why, "connId": conn_id})])
        reply = Reply()
        for arg in args:
            key = arg_key(arg) or ("", "")
            if key not in self.adapter.keys:
                why = f"Wrong URL or channel:{key[0]},instId:{key[1]} doesn't exist."
                reply.send.append(dumps({"event": "error", "code": "60018", "msg": why, "connId": conn_id}))
                continue
            reply.send.append(dumps({"event": op, "arg": arg, "connId": conn_id}))
            (reply.subscribe if op == "subscribe" else reply.unsubscribe).append(key)
        return reply
