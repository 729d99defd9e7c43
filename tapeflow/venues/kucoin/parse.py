"""KuCoin spot captures (cryptofeed ``.ws`` + ``.http``) -> ``book_delta``, ``trade``, ``quote``.

``trade.l2update`` diffs go through :class:`~tapeflow.venues.l2sync.SeqChain` per symbol with
contiguous ids (``sequenceStart == previous sequenceEnd + 1``) against the REST snapshot's
``sequence``; each row's ``sequence`` is its own change sequence, so inside the diff that
bridges the snapshot the changes already in it are flagged ``F_SUPERSEDED``. Trades come from
``/market/match``, quotes from ``/market/ticker``.

KuCoin quotes some small-priced pairs with 10 decimals and some sizes with 11: those numbers have
no exact 1e-9 value, so their frame is rejected (``bad_number``) as a whole; a rejected diff
then shows as a gap in its chain, and a rejected snapshot leaves its symbol unsynced.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tapeflow.schemas.records import ASK, BID
from tapeflow.venues.base import Decoded
from tapeflow.venues.capture import HTTP, RECV, CaptureLine
from tapeflow.venues.jsonframes import (
    CHUNK_ROWS,
    BadFrame,
    CaptureDecoder,
    field,
    integer,
    levels,
    load_json,
    ms_to_ns,
    nanos,
)
from tapeflow.venues.kucoin import messages as wire
from tapeflow.venues.l2sync import L2Message, L2Snapshot

_SIDE = {"buy": BID, "sell": ASK}


class KucoinDecoder(CaptureDecoder):
    """One decode pass over KuCoin captures; ``stats`` holds the l2update chain counts."""

    def __init__(self, *, symbols: Collection[str] | None = None, chunk_rows: int = CHUNK_ROWS) -> None:
        super().__init__(wire.VENUE, symbols=symbols, chunk_rows=chunk_rows)

    def frame(self, index: int, line: CaptureLine) -> None:
        if line.kind == HTTP:
            self._http(line)
        elif line.kind == RECV:
            self._message(line)

    def _message(self, line: CaptureLine) -> None:
        msg = load_json(line.payload)
        if not isinstance(msg, dict):
            raise BadFrame("unknown_message", f"frame is a JSON {type(msg).__name__}, not an object")
        kind = msg.get("type")
        if kind in wire.CONTROL_TYPES:
            return
        if kind == "error":
            raise BadFrame("venue_error", f"venue error {msg.get('code')}: {msg.get('data')}")
        if kind != "message":
            raise BadFrame("unknown_message", f"frame type {kind!r}")
        subject = msg.get("subject")
        data = field(msg, "data")
        if not isinstance(data, dict):
            raise BadFrame("unknown_message", f"data of {subject!r} is not an object")
        if subject == wire.L2_UPDATE:
            self._l2update(data, line)
        elif subject in wire.MATCH:
            self._match(data, line)
        elif subject == wire.TICKER:
            self._ticker(data, _topic_symbol(msg), line)
        elif isinstance(subject, str) and subject.startswith(wire.UNSUPPORTED_PREFIXES):
            raise BadFrame("unsupported_channel", f"subject {subject!r} is not decoded")
        else:
            raise BadFrame("unknown_message", f"subject {subject!r} on topic {msg.get('topic')!r}")

    def _l2update(self, data: dict[str, Any], line: CaptureLine) -> None:
        symbol = self.check_symbol(data.get("symbol"))
        first, last = integer(data, "sequenceStart"), integer(data, "sequenceEnd")
        if first > last:
            raise BadFrame("out_of_range", f"sequenceStart {first} is above sequenceEnd {last}")
        changes = field(data, "changes")
        sides: list[int] = []
        prices: list[int] = []
        sizes: list[int] = []
        row_ids: list[int] = []
        for key, side in (("bids", BID), ("asks", ASK)):
            rows = field(changes, key)
            px, sz = levels(rows, key)
            for i, row in enumerate(rows):
                if len(row) < 3:
                    raise BadFrame("bad_level", f"{key}[{i}] was {row!r}, not [price, size, sequence]")
                if px[i] == 0:
                    continue  # price "0": the change only advances the sequence
                sides.append(side)
                prices.append(px[i])
                sizes.append(sz[i])
                row_ids.append(integer(row, 2))
        msg = L2Message(wire.VENUE, symbol, first, last, None, ms_to_ns(data.get("time"), line.recv_ns),
                        line.recv_ns, sides, prices, sizes, row_ids)
        self.chain(wire.VENUE, symbol).update(msg, self.deltas)

    def _http(self, line: CaptureLine) -> None:
        url = urlsplit(line.url)
        symbols = parse_qs(url.query).get("symbol")
        if "/market/orderbook/level2" not in url.path or not symbols:
            raise BadFrame("unknown_message", f"REST response of {line.url} is not a level-2 snapshot")
        body = load_json(line.payload)
        if not isinstance(body, dict):
            raise BadFrame("unknown_message", f"snapshot body is a JSON {type(body).__name__}")
        if body.get("code") != wire.OK_CODE:
            raise BadFrame("venue_error",
                           f"{line.url} answered code {body.get('code')!r}: {body.get('msg')!r}")
        data = field(body, "data")
        symbol = self.check_symbol(symbols[0])
        bid_px, bid_sz = levels(field(data, "bids"), "bids")
        ask_px, ask_sz = levels(field(data, "asks"), "asks")
        ts_event = ms_to_ns(data.get("time"), line.recv_ns)
        snap = L2Snapshot(wire.VENUE, symbol, integer(data, "sequence"), ts_event, line.recv_ns,
                          [BID] * len(bid_px) + [ASK] * len(ask_px), bid_px + ask_px, bid_sz + ask_sz)
        self.chain(wire.VENUE, symbol).snapshot(snap, self.deltas)

    def _match(self, data: dict[str, Any], line: CaptureLine) -> None:
        symbol = self.check_symbol(data.get("symbol"))
        side = _SIDE.get(field(data, "side"))
        if side is None:
            raise BadFrame("bad_field", f"taker side was {data.get('side')!r}")
        trade_id = field(data, "tradeId")
        ts = data.get("time")
        self.trades.append(
            ts_event_ns=int(ts) if isinstance(ts, str) and ts.isdigit() else line.recv_ns,
            ts_recv_ns=line.recv_ns, venue=wire.VENUE, symbol=symbol, sequence=integer(data, "sequence"),
            trade_id=str(trade_id), price_nanos=nanos(field(data, "price"), "price"),
            size_nanos=nanos(field(data, "size"), "size"), aggressor_side=side, flags=0,
        )

    def _ticker(self, data: dict[str, Any], symbol: str, line: CaptureLine) -> None:
        symbol = self.check_symbol(symbol)
        self.quotes.append(
            ts_event_ns=ms_to_ns(data.get("time"), line.recv_ns), ts_recv_ns=line.recv_ns,
            venue=wire.VENUE, symbol=symbol, sequence=integer(data, "sequence"),
            bid_price_nanos=nanos(field(data, "bestBid"), "bestBid"),
            bid_size_nanos=nanos(field(data, "bestBidSize"), "bestBidSize"),
            ask_price_nanos=nanos(field(data, "bestAsk"), "bestAsk"),
            ask_size_nanos=nanos(field(data, "bestAskSize"), "bestAskSize"), flags=0,
        )


def _topic_symbol(msg: dict[str, Any]) -> str:
    topic = msg.get("topic")
    return topic.rpartition(":")[2] if isinstance(topic, str) else ""


def decode(paths: Sequence[Path], *, symbols: Collection[str] | None = None,
           chunk_rows: int = CHUNK_ROWS) -> Iterator[Decoded]:
    """Decode KuCoin websocket captures (with the REST snapshot capture beside them).

    Args:
        paths: capture files, merged by capture time.
        symbols: keep only these symbols; others become ``unknown_symbol`` rejects.
        chunk_rows: rows per yielded chunk (about).

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``trade``, ``quote`` and ``rejected`` tables.
    """
    yield from KucoinDecoder(symbols=symbols, chunk_rows=chunk_rows).run(paths)
