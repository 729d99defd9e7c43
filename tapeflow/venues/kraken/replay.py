"""Kraken websocket v1 on loopback: subscribe/ping handshake and checksum-exact mid-stream snapshots.

The book keeps each level's captured ``[price, volume, timestamp]`` strings, so a snapshot sent
to a connection that joins in the middle hashes exactly as Kraken's own book, and every later
captured ``c`` checksum verifies against it.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from tapeflow.venues.kraken import messages as m
from tapeflow.wire.capture import RECV, CaptureLine

_SKIPPED_EVENTS = frozenset({"systemStatus", "subscriptionStatus", "pong"})
HEARTBEAT = b'{"event":"heartbeat"}'  # as Kraken sends it


def family(channel_name: str) -> str:
    """``book-1000`` -> ``book``, ``ohlc-1`` -> ``ohlc``, ``trade`` -> ``trade``."""
    return channel_name.partition("-")[0]


class KrakenReplay(VenueReplay):
    """Kraken v1 public channels (``book-N``, ``trade``, ``spread``, ``ticker``, ``ohlc-N``)."""

    name = "kraken"
    idle_heartbeat_s = 1.0  # Kraken: a heartbeat when a subscribed connection is quiet for about 1 s

    def __init__(self) -> None:
        super().__init__()
        self.channel_ids: dict[Key, int] = {}
        self.channel_names: dict[Key, str] = {}
        self.books: dict[str, StringBook] = {}
        self.depths: dict[str, int] = {}

    def classify(self, line: CaptureLine) -> Frame | None:
        """Public arrays keyed by ``(family, pair)``; heartbeats to everyone; other events skipped."""
        if line.kind != RECV:
            return None
        msg = loads(line.payload)
        if isinstance(msg, dict):
            if msg.get("event") == "heartbeat":
                return Frame(line.recv_ns, line.payload, None, line.location)
            if msg.get("event") in _SKIPPED_EVENTS:
                return None
        if (not isinstance(msg, list) or len(msg) < 4 or not isinstance(msg[-1], str)
                or not isinstance(msg[-2], str) or not isinstance(msg[0], int)):
            self.unknown_shape(line, msg, "is not a channel array [id, ..., channel, pair]")
            return None
        key = (family(msg[-2]), msg[-1])
        self.channel_ids.setdefault(key, msg[0])
        self.channel_names.setdefault(key, msg[-2])
        return Frame(line.recv_ns, line.payload, key, line.location)

    def apply(self, frame: Frame) -> None:
        """Book frames update the pair's string book (snapshot resets it; depth from ``book-N``)."""
        if frame.key is None or frame.key[0] != "book":
            return
        msg = loads(frame.payload)
        pair, parts = msg[-1], [p for p in msg[1:-2] if isinstance(p, dict)]
        if parts and (m.SNAPSHOT_ASKS in parts[0] or m.SNAPSHOT_BIDS in parts[0]):
            book = self.books[pair] = StringBook()
            _, _, depth = msg[-2].partition("-")
            self.depths[pair] = int(depth) if depth.isdigit() else m.DEFAULT_DEPTH
            for key, is_bid in ((m.SNAPSHOT_ASKS, False), (m.SNAPSHOT_BIDS, True)):
                for level in parts[0].get(key, []):
                    book.set(is_bid, level[0], level[:3], is_zero(level[1]))
            return
        book = self.books.get(pair)
        if book is None:
            return
        for part in parts:
            for key, is_bid in ((m.UPDATE_ASKS, False), (m.UPDATE_BIDS, True)):
                for level in part.get(key, []):
                    book.set(is_bid, level[0], level[:3], is_zero(level[1]))
        book.truncate(self.depths[pair])

    def snapshot(self, key: Key) -> list[bytes]:
        """``[chan, {"as": asks ascending, "bs": bids descending}, "book-N", pair]`` as captured strings."""
        book = self.books.get(key[1])
        if key[0] != "book" or book is None:
            return []
        body = {m.SNAPSHOT_ASKS: book.top_asks(), m.SNAPSHOT_BIDS: book.top_bids()}
        return [dumps([self.channel_ids[key], body, self.channel_names[key], key[1]])]

    def session(self, connection: int) -> Session:
        """Kraken's handshake for one connection."""
        return _KrakenSession(self, connection)


class _KrakenSession(Session):
    adapter: KrakenReplay

    def heartbeats(self, keys: set[Key]) -> list[bytes | str]:
        return [HEARTBEAT]

    def on_open(self, path: str, query: Mapping[str, str]) -> Reply:
        return Reply(send=[dumps({"connectionID": 10_000_000 + self.connection, "event": "systemStatus",
                                  "status": "online", "version": "1.9.0"})])

    def on_message(self, text: str) -> Reply:
        msg = loads(text)
        if not isinstance(msg, dict):
            return Reply(send=[dumps({"errorMessage": "Malformed request", "event": "error"})])
        event = msg.get("event")
        reqid = {"reqid": msg["reqid"]} if "reqid" in msg else {}
        if event == "ping":
            return Reply(send=[dumps({"event": "pong", **reqid})])
        if event not in ("subscribe", "unsubscribe"):
            return Reply(send=[dumps({"errorMessage": f"Unsupported event {event!r}", "event": "error",
                                      **reqid})])
        sub = msg.get("subscription") if isinstance(msg.get("subscription"), dict) else {}
        name, pairs = sub.get("name"), msg.get("pair")
        if not isinstance(name, str) or not isinstance(pairs, list):
            return Reply(send=[dumps({"errorMessage": "Missing subscription name or pair", "event": "error",
                                      **reqid})])
        reply = Reply()
        for pair in pairs:
            key = (family(name), str(pair))
            if key not in self.adapter.keys:
                reply.send.append(dumps({"errorMessage": f"Currency pair not in ISO 4217-A3 format {pair}",
                                         "event": "subscriptionStatus", "pair": pair, "status": "error",
                                         "subscription": sub, **reqid}))
                continue
            channel = self.adapter.channel_names[key]
            served: dict[str, Any] = {"name": name}
            if "-" in channel and name == "book":
                served = {"depth": int(channel.partition("-")[2]), "name": name}
            status = "subscribed" if event == "subscribe" else "unsubscribed"
            reply.send.append(dumps({"channelID": self.adapter.channel_ids[key], "channelName": channel,
                                     "event": "subscriptionStatus", "pair": pair, "status": status,
                                     "subscription": served, **reqid}))
            (reply.subscribe if event == "subscribe" else reply.unsubscribe).append(key)
        return reply
