"""Deribit websocket v2 on loopback: JSON-RPC ``public/subscribe`` / ``public/unsubscribe`` /
``public/test``, subscription notifications from the tape, and a mid-stream ``book`` snapshot of
the book the tape has passed (its ``change_id`` the last one, so the next change links to it)."""

from __future__ import annotations

from typing import Any

from tapeflow.replay.protocol import Frame, Key, Reply, Session, VenueReplay, dumps, loads
from tapeflow.wire.capture import RECV, CaptureLine

CHANNEL_KINDS = ("book", "trades", "ticker")


def channel_key(channel: str) -> Key | None:
    """``book.BTC-PERPETUAL.raw`` -> ``("book", "BTC-PERPETUAL")``; None for another channel."""
    kind, _, rest = channel.partition(".")
    instrument = rest.rsplit(".", 1)[0]
    if kind not in CHANNEL_KINDS or not instrument or "." not in rest:
        return None
    return kind, instrument


class DeribitReplay(VenueReplay):
    """Deribit ``book``, ``trades`` and ``ticker`` notifications keyed by ``(kind, instrument)``."""

    name = "deribit"

    def __init__(self) -> None:
        super().__init__()
        self.books: dict[Key, dict[str, Any]] = {}  # key -> {"bids": {px: amt}, "asks": ..., "last": data}
        self.channels: dict[Key, str] = {}  # key -> the channel name as captured

    def classify(self, line: CaptureLine) -> Frame | None:
        """Subscription notifications become frames; answers and heartbeats are not replayed."""
        if line.kind != RECV:
            return None
        msg = loads(line.payload)
        if not isinstance(msg, dict) or "result" in msg or msg.get("method") == "heartbeat":
            return None
        params = msg.get("params")
        channel = params.get("channel") if isinstance(params, dict) else None
        key = channel_key(channel) if isinstance(channel, str) else None
        if key is None:
            self.bad_lines += 1
            return None
        self.channels.setdefault(key, channel)  # type: ignore[arg-type]
        return Frame(line.recv_ns, line.payload, key, line.location)

    def apply(self, frame: Frame) -> None:
        """Book notifications update the instrument's book; a ``snapshot`` resets it."""
        if frame.key is None or frame.key[0] != "book":
            return
        data = (loads(frame.payload).get("params") or {}).get("data")
        if not isinstance(data, dict):
            return
        if data.get("type") == "snapshot":
            self.books[frame.key] = {"bids": {}, "asks": {}}
        book = self.books.get(frame.key)
        if book is None:
            return
        for side in ("bids", "asks"):
            for level in data.get(side) or []:
                if isinstance(level, list) and len(level) == 3:
                    action, price, amount = level
                    if action == "delete":
                        book[side].pop(price, None)
                    else:
                        book[side][price] = amount
        book["last"] = data

    def snapshot(self, key: Key) -> list[bytes]:
        """A ``snapshot`` notification of the book now, with the last message's ``change_id``."""
        book = self.books.get(key)
        if book is None or "last" not in book:
            return []
        last = book["last"]
        data = {"type": "snapshot", "timestamp": last.get("timestamp"), "instrument_name": key[1],
                "change_id": last.get("change_id"),
                "bids": [["new", p, a] for p, a in sorted(book["bids"].items(), reverse=True)],
                "asks": [["new", p, a] for p, a in sorted(book["asks"].items())]}
        channel = self.channels.get(key, f"book.{key[1]}.raw")
        params = {"channel": channel, "data": data}
        return [dumps({"jsonrpc": "2.0", "method": "subscription", "params": params})]

    def session(self, connection: int) -> Session:
        """Deribit's JSON-RPC for one connection."""
        return _DeribitSession(self, connection)


class _DeribitSession(Session):
    adapter: DeribitReplay

    def on_message(self, text: str) -> Reply:
        msg = loads(text)
        if not isinstance(msg, dict):
            return Reply(send=[_error(None, -32700, "parse error")])
        rid, method, params = msg.get("id"), msg.get("method"), msg.get("params") or {}
        if method in ("public/test", "public/set_heartbeat", "public/disable_heartbeat"):
            return Reply(send=[dumps({"jsonrpc": "2.0", "id": rid, "result": "ok" if method != "public/test"
                                      else {"version": "replay"}})])
        if method not in ("public/subscribe", "public/unsubscribe") or not isinstance(params, dict):
            return Reply(send=[_error(rid, -32601, f"Method not found: {method!r}")])
        channels = params.get("channels")
        if not isinstance(channels, list):
            return Reply(send=[_error(rid, -32602, "Invalid params: channels")])
        reply = Reply()
        done = []
        for channel in channels:
            key = channel_key(channel) if isinstance(channel, str) else None
            if key is None or key not in self.adapter.keys:
                continue  # Deribit answers with the channels it did subscribe
            done.append(channel)
            (reply.subscribe if method == "public/subscribe" else reply.unsubscribe).append(key)
        reply.send.append(dumps({"jsonrpc": "2.0", "id": rid, "result": done}))
        return reply


def _error(rid: Any, code: int, message: str) -> bytes:
    return dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})
