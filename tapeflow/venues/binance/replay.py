"""Binance spot, USD-M and COIN-M on loopback: combined and raw streams (the futures derivatives
streams ``markPrice``, ``forceOrder``, ``!forceOrder@arr`` and COIN-M's ``<pair>@indexPrice`` among
them), and a REST depth snapshot that matches the stream position.

The REST book is the captured REST snapshot plus every depth diff the tape has passed (levels
keep their wire strings). Its ``lastUpdateId`` is chosen so the standard sync algorithms bridge
to the next diff the client will receive: spot, the last passed ``u`` (next diff has
``U == lastUpdateId + 1``); futures, the next diff's ``U`` (so ``U <= lastUpdateId <= u`` holds,
the diff re-applies nothing already in the book, and the last passed diff, ``u < lastUpdateId``,
is dropped by a client that buffered it).
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tapeflow.replay.protocol import (
    Frame,
    Key,
    Reply,
    RestHandler,
    Session,
    StringBook,
    VenueReplay,
    compact_json,
    dumps,
    is_zero,
    loads,
)
from tapeflow.venues.binance import messages as wire
from tapeflow.wire.capture import HTTP, RECV, read_capture
from tapeflow.wire.rejects import Rejects

_STREAM = re.compile(rb'^\{"stream":"([^"]+)","data":')
_IDS = re.compile(rb'"U":(\d+),"u":(\d+)')
_SNAPSHOT = b'{"lastUpdateId"'
ALL_FORCE_ORDERS = "!forceOrder@arr"  # the all-market liquidation stream: every symbol's forceOrder
_FUTURES_ONLY = frozenset({"markprice", "forceorder", "indexprice"})
# (default, max) depth levels of GET /api/v3/depth (spot) and /fapi/v1/depth (USD-M), as Binance documents
_LIMITS = {False: (100, 5000), True: (500, 1000)}


def stream_key(stream: str) -> Key:
    """``btcusdt@depth@100ms`` -> ``("depth", "btcusdt")`` (diff speed ignored, as the mark's and
    COIN-M's index: ``x@markPrice@1s`` -> ``("markprice", "x")``, ``btcusd@indexPrice@1s`` ->
    ``("indexprice", "btcusd")``); ``x@trade`` -> ``("trade", "x")``; partial depth
    ``x@depth20@100ms`` keeps ``depth20``."""
    symbol, _, rest = stream.lower().partition("@")
    kind = rest.partition("@")[0] if rest.startswith(("depth", "markprice", "indexprice")) else rest
    return kind, symbol


class _Book(StringBook):
    def __init__(self, last_id: int, times: dict[str, int]) -> None:
        super().__init__()
        self.last_id = last_id
        self.times = times  # futures E/T of the last event the book reflects

    @classmethod
    def from_rest(cls, body: bytes) -> _Book:
        snap = loads(body)
        book = cls(int(snap["lastUpdateId"]), {k: snap[k] for k in ("E", "T") if k in snap})
        for key, is_bid in (("bids", True), ("asks", False)):
            for px, qty in snap.get(key, []):
                book.set(is_bid, px, [px, qty], is_zero(qty))
        return book


class BinanceReplay(VenueReplay):
    """Binance combined-stream captures (cryptofeed ``.ws``/``.http``, hftbacktest ``.gz``)."""

    name = "binance"
    # as Binance documents them: spot pings every 20 s and cuts after a minute without a pong;
    # USD-M futures ping every 3 minutes and wait 10 minutes
    ws_ping_interval_s, ws_pong_timeout_s = 20.0, 60.0
    futures_ping_interval_s, futures_pong_timeout_s = 180.0, 600.0

    def __init__(self) -> None:
        super().__init__()
        self.books: dict[str, _Book] = {}
        self.captured: dict[str, bytes] = {}  # first captured REST snapshot per symbol
        self.futures: set[str] = set()
        self.futures_streams = False  # the tape holds streams only futures markets publish
        self.next_first: dict[str, tuple[list[int], list[int]]] = {}  # symbol -> (tape idx, U) of diffs
        self.passed = 0

    def frames_of(self, path: Path, rejects: Rejects) -> Iterator[Frame]:
        """Stream envelopes become frames; REST snapshots (``.http`` lines, the hftbacktest bare
        snapshot line) become state-only frames for the symbol they belong to."""
        last_symbol: str | None = None
        orphan: list[Frame] = []  # a bare snapshot seen before any diff names its symbol
        for line in read_capture(path, rejects):
            if line.kind not in (HTTP, RECV):
                continue
            if _STREAM.match(line.payload) is None and not line.payload.startswith(_SNAPSHOT):
                msg = loads(line.payload)
                if msg is None:
                    if line.kind == RECV:
                        self.unknown_shape(line, msg, "")  # bad_json
                    continue
                # valid JSON written with spaces (``json.dumps``' ", " and ": ", a documented
                # example): served in the compact form Binance sends, which the envelope match reads
                line = dataclasses.replace(line, payload=compact_json(line.payload))
            if line.kind == HTTP:
                symbol = parse_qs(urlsplit(line.url).query).get("symbol", [""])[0].upper()
                if line.payload.startswith(_SNAPSHOT) and symbol:
                    yield Frame(line.recv_ns, line.payload, ("rest", symbol), line.location, send=False)
                continue
            if line.kind != RECV:
                continue
            m = _STREAM.match(line.payload)
            if m is not None:
                key = stream_key(m.group(1).decode())
                if key[0] in _FUTURES_ONLY or key == stream_key(ALL_FORCE_ORDERS):
                    self.futures_streams = True
                if key[0] == "depth":
                    last_symbol = key[1].upper()
                    if b'"pu":' in line.payload:
                        self.futures.add(last_symbol)
                    for f in orphan:
                        yield Frame(f.recv_ns, f.payload, ("rest", last_symbol), f.location, send=False)
                    orphan = []
                yield Frame(line.recv_ns, line.payload, key, line.location)
            elif line.payload.startswith(_SNAPSHOT):
                key = ("rest", last_symbol or "")
                frame = Frame(line.recv_ns, line.payload, key, line.location, send=False)
                if last_symbol is None:
                    orphan.append(frame)
                else:
                    yield frame
            else:
                msg = loads(line.payload)
                if not (isinstance(msg, dict) and "id" in msg):  # an answer to a request: not replayed
                    self.unknown_shape(line, msg, "is neither a stream envelope nor a depth snapshot")

    def load(self, paths: Sequence[Path]) -> list[Frame]:
        """Merge the files, then index each symbol's diffs by tape position (futures lookahead)."""
        tape = super().load(paths)
        self.keys.discard(("rest", ""))
        for i, frame in enumerate(tape):
            if frame.key is not None and frame.key[0] == "depth":
                ids = _IDS.search(frame.payload)
                if ids is not None:
                    pos, first = self.next_first.setdefault(frame.key[1].upper(), ([], []))
                    pos.append(i)
                    first.append(int(ids.group(1)))
            elif frame.key is not None and frame.key[0] == "rest":
                self.captured.setdefault(frame.key[1], frame.payload)
        return tape

    def apply(self, frame: Frame) -> None:
        """REST snapshots seed a symbol's book; depth diffs after it update it."""
        self.passed += 1
        if frame.key is None or frame.key[0] not in ("depth", "rest"):
            return
        symbol = frame.key[1].upper()
        if frame.key[0] == "rest":
            if symbol not in self.books:  # a later snapshot adds nothing to a continuous book
                self.books[symbol] = _Book.from_rest(frame.payload)
            return
        book = self.books.get(symbol)
        if book is None:
            return
        data = loads(frame.payload)["data"]
        if data.get("e") != wire.DEPTH_UPDATE or int(data["u"]) <= book.last_id:
            return
        for key, is_bid in (("b", True), ("a", False)):
            for px, qty in data.get(key, []):
                book.set(is_bid, px, [px, qty], is_zero(qty))
        book.last_id = int(data["u"])
        book.times = {k: data[k] for k in ("E", "T") if k in data}

    def depth(self, query: Mapping[str, str], *, futures: bool, coinm: bool = False) -> tuple[int, bytes]:
        """``GET /api/v3/depth`` / ``/fapi/v1/depth`` / ``/dapi/v1/depth``: the book at the current
        position (COIN-M's body also names its ``symbol`` and ``pair``, as its API reference shows)."""
        symbol = query.get("symbol", "").upper()
        try:
            default, most = _LIMITS[futures]
            limit = min(int(query.get("limit", default)), most)
        except ValueError:
            return 400, dumps({"code": -1100, "msg": f"Illegal characters found in parameter 'limit': "
                                                     f"{query.get('limit')!r}"})
        book = self.books.get(symbol)
        ahead = book is None and symbol in self.captured
        if ahead:  # the tape has not reached the captured snapshot: serve it (it is ahead, as on Binance)
            book = _Book.from_rest(self.captured[symbol])
        if book is None:
            return 400, dumps({"code": -1121, "msg": "Invalid symbol."})
        last_id = book.last_id
        if symbol in self.futures and not ahead:
            pos, first = self.next_first.get(symbol, ([], []))
            j = bisect.bisect_left(pos, self.passed)
            last_id = max(last_id, first[j]) if j < len(first) else last_id
        body: dict[str, object] = {"lastUpdateId": last_id}
        if coinm:
            body |= {"symbol": symbol, "pair": symbol.partition("_")[0]}
        if futures:
            body |= {"E": book.times.get("E", 0), "T": book.times.get("T", 0)}
        body |= {"bids": book.top_bids(limit), "asks": book.top_asks(limit)}
        return 200, dumps(body)

    def rest_routes(self) -> dict[str, RestHandler]:
        """Spot, USD-M and COIN-M depth endpoints (each serves every symbol of the tape)."""
        return {"/api/v3/depth": lambda q: self.depth(q, futures=False),
                "/fapi/v1/depth": lambda q: self.depth(q, futures=True),
                "/dapi/v1/depth": lambda q: self.depth(q, futures=True, coinm=True)}

    def ws_keepalive(self, path: str) -> tuple[float | None, float | None]:
        """USD-M/COIN-M values when the tape holds futures depth (``pu`` in its diffs) or streams
        only futures publish (mark, index, liquidations), else spot's."""
        if self.futures or self.futures_streams:
            return self.futures_ping_interval_s, self.futures_pong_timeout_s
        return self.ws_ping_interval_s, self.ws_pong_timeout_s

    def session(self, connection: int) -> Session:
        """Combined (``/stream``) or raw (``/ws``) streams."""
        return _BinanceSession(self, connection)


class _BinanceSession(Session):
    adapter: BinanceReplay

    def __init__(self, adapter: BinanceReplay, connection: int) -> None:
        super().__init__(adapter, connection)
        self.combined = True
        self.streams: dict[Key, str] = {}
        self.all_force_orders = False

    def on_open(self, path: str, query: Mapping[str, str]) -> Reply:
        self.combined = path.startswith("/stream")
        names = query.get("streams", "").split("/") if self.combined else path[len("/ws/"):].split("/")
        return self._subscribe([n for n in names if n])

    def _subscribe(self, names: list[str]) -> Reply:
        reply = Reply()
        for name in names:
            if name.lower() == ALL_FORCE_ORDERS.lower():
                # every symbol's liquidations, each sent under the all-market stream's name
                self.all_force_orders = True
                reply.subscribe += [k for k in sorted(self.adapter.keys) if k[0] == "forceorder"]
                continue
            key = stream_key(name)
            self.streams[key] = name
            reply.subscribe.append(key)
        return reply

    def on_message(self, text: str) -> Reply:
        msg = loads(text)
        if not isinstance(msg, dict) or "method" not in msg:
            return Reply(send=[dumps({"error": {"code": 3, "msg": "Invalid JSON: expected a method"},
                                      "id": None})])
        method, params, rid = msg.get("method"), msg.get("params") or [], msg.get("id")
        if method == "SUBSCRIBE" and isinstance(params, list):
            reply = self._subscribe([str(p) for p in params])
        elif method == "UNSUBSCRIBE" and isinstance(params, list):
            keys = [stream_key(str(p)) for p in params]
            for k in keys:
                self.streams.pop(k, None)
            reply = Reply(unsubscribe=keys)
        elif method == "LIST_SUBSCRIPTIONS":
            return Reply(send=[dumps({"result": sorted(self.streams.values()), "id": rid})])
        else:
            return Reply(send=[dumps({"error": {"code": 1, "msg": f"Unknown method {method!r}"}, "id": rid})])
        reply.send.append(dumps({"result": None, "id": rid}))
        return reply

    def render(self, frame: Frame) -> bytes:
        m = _STREAM.match(frame.payload)
        if self.all_force_orders and frame.key not in self.streams and m is not None:
            frame = Frame(frame.recv_ns, b'{"stream":"%s","data":' % ALL_FORCE_ORDERS.encode()
                          + frame.payload[m.end():], frame.key, frame.location)
            m = _STREAM.match(frame.payload)
        if self.combined:
            return frame.payload
        # raw streams carry the envelope's data object alone, byte-for-byte
        return frame.payload[m.end():-1] if m is not None else frame.payload
