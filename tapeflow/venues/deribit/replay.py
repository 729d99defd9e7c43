"""Deribit websocket v2 on loopback: JSON-RPC ``public/subscribe`` / ``public/unsubscribe`` /
``public/test`` / ``public/get_instruments``, subscription notifications from the tape, and a
mid-stream ``book`` snapshot of the book the tape has passed (its ``change_id`` the last one, so the
next change links to it).

A mid-stream ``ticker`` subscriber first gets the instrument's last ticker the tape has passed, as
captured (a ticker is the instrument's whole state, which Deribit sends a fresh subscriber within
one interval). ``public/get_instruments`` (``kind=option``) is answered from a ``get_instruments``
answer recorded in the capture where one lists the currency's options, else composed from the
tape's option names (strike, expiry, type and currency from the name; ``expired=true``: none).
"""

from __future__ import annotations

import time
from typing import Any

from tapeflow.errors import BadInput
from tapeflow.options.instruments import parse_option_name
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
        self.tickers: dict[Key, bytes] = {}  # ticker key -> the last ticker the tape has passed
        self.recorded_instruments: list[dict[str, Any]] = []  # items of captured get_instruments answers

    def classify(self, line: CaptureLine) -> Frame | None:
        """Subscription notifications become frames; answers and heartbeats are not replayed (a
        captured ``get_instruments`` answer is kept to answer that request)."""
        if line.kind != RECV:
            return None
        msg = loads(line.payload)
        if isinstance(msg, dict) and _instrument_list(msg.get("result")):
            self.recorded_instruments.extend(msg["result"])
            return None
        if not isinstance(msg, dict) or "result" in msg or msg.get("method") == "heartbeat":
            return None
        params = msg.get("params")
        channel = params.get("channel") if isinstance(params, dict) else None
        key = channel_key(channel) if isinstance(channel, str) else None
        if key is None:
            self.unknown_shape(line, msg, "without a subscription channel")
            return None
        self.channels.setdefault(key, channel)  # type: ignore[arg-type]
        return Frame(line.recv_ns, line.payload, key, line.location)

    def apply(self, frame: Frame) -> None:
        """Book notifications update the instrument's book; a ``snapshot`` resets it; a ticker is kept."""
        if frame.key is not None and frame.key[0] == "ticker":
            self.tickers[frame.key] = frame.payload
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
        """A ``snapshot`` notification of the book now, with the last message's ``change_id``; for a
        ticker, its last notification as captured."""
        if key[0] == "ticker":
            return [self.tickers[key]] if key in self.tickers else []
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

    def instruments(self, currency: str, kind: str | None, expired: bool) -> list[dict[str, Any]]:
        """The ``public/get_instruments`` result: recorded items of ``currency``, else the tape's options."""
        if expired or kind not in ("option", None):
            return []
        recorded = [i for i in self.recorded_instruments if i.get("kind") == "option"
                    and currency in (i.get("base_currency"), i.get("settlement_currency"))]
        if recorded:
            return recorded
        names = sorted({k[1] for k in self.keys})
        return [item for item in map(_composed_option, names) if item is not None
                and currency in (item["base_currency"], item["settlement_currency"])]

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
        if method == "public/get_instruments" and isinstance(params, dict):
            currency, kind = params.get("currency"), params.get("kind")
            if not isinstance(currency, str):
                return Reply(send=[_error(rid, -32602, "Invalid params: currency")])
            result = self.adapter.instruments(currency, kind, bool(params.get("expired", False)))
            return Reply(send=[_result(rid, result)])
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
        reply.send.append(_result(rid, done))
        return reply


def _result(rid: Any, result: Any) -> bytes:
    """An answer as Deribit writes it: the result, then its receive/send times in microseconds."""
    now_us = time.time_ns() // 1000
    return dumps({"jsonrpc": "2.0", "id": rid, "result": result, "usIn": now_us, "usOut": now_us, "usDiff": 0,
                  "testnet": False})


def _error(rid: Any, code: int, message: str) -> bytes:
    return dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})


def _instrument_list(result: Any) -> bool:
    return (isinstance(result, list) and bool(result)
            and all(isinstance(i, dict) and "instrument_name" in i and "kind" in i for i in result))


def _composed_option(name: str) -> dict[str, Any] | None:
    """A ``get_instruments`` item for an option name (None for a future, perpetual or bad name)."""
    try:
        option = parse_option_name(name)
    except BadInput:
        return None
    base, _, quote = option.underlying.partition("_")
    settlement = quote or base  # inverse options settle in the coin, linear ones in USDC
    return {"instrument_name": name, "kind": "option", "strike": option.strike_nanos / 1e9,
            "expiration_timestamp": option.expiry_ns // 1_000_000,
            "option_type": "call" if option.is_call else "put", "base_currency": base,
            "settlement_currency": settlement, "quote_currency": settlement, "counter_currency": "USD",
            "contract_size": 1.0, "is_active": True}
