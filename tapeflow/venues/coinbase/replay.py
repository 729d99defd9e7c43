"""Coinbase Exchange websocket on loopback: ``subscribe`` -> ``subscriptions``, level2 snapshots mid-stream.

Channels map to message types as Coinbase does: ``level2`` carries ``snapshot``/``l2update``,
``matches`` carries ``match``/``last_match``, ``ticker`` and ``heartbeat`` carry their own type.
A ``matches`` subscription in the middle of the tape gets a ``last_match`` (the product's latest
trade the tape passed), as Coinbase sends one on every subscription; the live sync re-anchors the
trade-id chain on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
from tapeflow.venues.coinbase import messages as m
from tapeflow.wire.capture import RECV, CaptureLine

CHANNEL_OF_TYPE = {m.SNAPSHOT: "level2", m.L2UPDATE: "level2", m.TICKER: "ticker", "match": "matches",
                   "last_match": "matches", "heartbeat": "heartbeat"}
_SKIPPED_TYPES = frozenset({"subscriptions", "status", "error"})


class CoinbaseReplay(VenueReplay):
    """Coinbase ``level2``, ``matches``, ``ticker``, ``heartbeat`` channels."""

    name = "coinbase"
    idle_heartbeat_s = 1.0  # the heartbeat channel beats once a second per product

    def __init__(self) -> None:
        super().__init__()
        self.books: dict[str, StringBook] = {}
        self.last_match: dict[str, bytes] = {}  # product -> its latest match the tape passed, as captured
        self.clock_ns = 0  # capture time of the last frame the tape passed (heartbeat times after it)

    def classify(self, line: CaptureLine) -> Frame | None:
        """Messages keyed by ``(channel, product_id)``; subscription acks are not replayed."""
        if line.kind != RECV:
            return None
        msg = loads(line.payload)
        if not isinstance(msg, dict) or msg.get("type") in _SKIPPED_TYPES:
            if not isinstance(msg, dict):
                self.unknown_shape(line, msg, "is not an object")
            return None
        channel, product = CHANNEL_OF_TYPE.get(str(msg.get("type"))), msg.get("product_id")
        if channel is None or not isinstance(product, str):
            self.unknown_shape(line, msg, "without a known type and a product_id")
            return None
        return Frame(line.recv_ns, line.payload, (channel, product), line.location)

    def apply(self, frame: Frame) -> None:
        """``snapshot`` resets the product's book, ``l2update`` changes it (size "0" deletes)."""
        self.clock_ns = frame.recv_ns
        if frame.key is None:
            return
        if frame.key[0] == "matches":
            self.last_match[frame.key[1]] = frame.payload  # parsed only if someone subscribes mid-stream
            return
        if frame.key[0] != "level2":
            return
        msg = loads(frame.payload)
        product = frame.key[1]
        if msg["type"] == m.SNAPSHOT:
            book = self.books[product] = StringBook()
            for key, is_bid in (("bids", True), ("asks", False)):
                for px, size in msg.get(key, []):
                    book.set(is_bid, px, [px, size], is_zero(size))
            return
        book = self.books.get(product)
        if book is None:
            return
        for side, px, size in msg.get("changes", []):
            book.set(side == m.BUY, px, [px, size], is_zero(size))

    def snapshot(self, key: Key) -> list[bytes]:
        """``level2``: ``{"type":"snapshot","product_id":..,"asks":..,"bids":..}`` of the book now;
        ``matches``: the product's latest match as a ``last_match`` (its fields as captured)."""
        if key[0] == "matches":
            raw = self.last_match.get(key[1])
            msg = loads(raw) if raw is not None else None
            if not isinstance(msg, dict):
                return []
            msg["type"] = m.LAST_MATCH  # the key keeps its place: the rest reads as captured
            return [dumps(msg)]
        book = self.books.get(key[1])
        if key[0] != "level2" or book is None:
            return []
        return [dumps({"type": m.SNAPSHOT, "product_id": key[1], "asks": book.top_asks(),
                       "bids": book.top_bids()})]

    def heartbeat(self, product: str, beat: int) -> bytes:
        """The ``heartbeat`` channel's message for ``product``: its last trade id and sequence on the
        tape, timed ``beat`` seconds after the tape's last frame."""
        last = loads(self.last_match[product]) if product in self.last_match else None
        last = last if isinstance(last, dict) else {}
        ns = self.clock_ns + beat * 1_000_000_000
        stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return dumps({"type": "heartbeat", "last_trade_id": last.get("trade_id", 0), "product_id": product,
                      "sequence": last.get("sequence", 0),
                      "time": f"{stamp}.{ns % 1_000_000_000 // 1000:06d}Z"})

    def session(self, connection: int) -> Session:
        """Coinbase's subscribe handshake for one connection."""
        return _CoinbaseSession(self, connection)


class _CoinbaseSession(Session):
    adapter: CoinbaseReplay

    def __init__(self, adapter: CoinbaseReplay, connection: int) -> None:
        super().__init__(adapter, connection)
        self.channels: dict[str, list[str]] = {}
        self.beats = 0

    def heartbeats(self, keys: set[Key]) -> list[bytes | str]:
        self.beats += 1
        return [self.adapter.heartbeat(product, self.beats) for channel, product in sorted(keys)
                if channel == "heartbeat"]

    def on_message(self, text: str) -> Reply:
        msg = loads(text)
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            return Reply(send=[_error("Failed to subscribe", f"type {kind!r} is not subscribe/unsubscribe")])
        default_products = msg.get("product_ids") or []
        wanted: list[tuple[str, list[Any]]] = []
        for ch in msg.get("channels") or []:
            if isinstance(ch, str):
                wanted.append((ch, default_products))
            elif isinstance(ch, dict) and isinstance(ch.get("name"), str):
                wanted.append((ch["name"], ch.get("product_ids") or default_products))
        reply = Reply()
        for channel, products in wanted:
            for product in products:
                key = (channel, str(product))
                if channel not in CHANNEL_OF_TYPE.values():
                    return Reply(send=[_error("Failed to subscribe", f"{channel} is not a valid channel")])
                if kind == "subscribe":
                    if not any(p == product for _, p in self.adapter.keys):
                        why = f"{product} is not a valid product"
                        return Reply(send=[_error("Failed to subscribe", why)])
                    reply.subscribe.append(key)
                    self.channels.setdefault(channel, [])
                    if product not in self.channels[channel]:
                        self.channels[channel].append(product)
                else:
                    reply.unsubscribe.append(key)
                    if product in self.channels.get(channel, []):
                        self.channels[channel].remove(product)
        listing = [{"name": ch, "product_ids": ps} for ch, ps in self.channels.items() if ps]
        reply.send.append(dumps({"type": "subscriptions", "channels": listing}))
        return reply


def _error(message: str, reason: str) -> bytes:
    return dumps({"type": "error", "message": message, "reason": reason})
