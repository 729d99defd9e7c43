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

from tapeflow.errors import BadInput
from tapeflow.schemas.records import ASK, BID, F_GAP
from tapeflow.venues.decoder import CHUNK_ROWS, VenueDecoder
from tapeflow.venues.fields import decimal, field, integer, levels, load_json, obj
from tapeflow.venues.kucoin import messages as wire
from tapeflow.venues.l2sync import L2Message, L2Snapshot
from tapeflow.wire.capture import CaptureLine, Decoded
from tapeflow.wire.numbers import ms_to_ns
from tapeflow.wire.rejects import Reason

_SIDE = {"buy": BID, "sell": ASK}


class KucoinDecoder(VenueDecoder):
    """One decode pass over KuCoin captures; ``stats`` holds the l2update chain counts."""

    venue = wire.VENUE
    every_frame_accounted = True

    def __init__(self, *, symbols: Collection[str] | None = None, chunk_rows: int = CHUNK_ROWS) -> None:
        super().__init__(symbols=symbols, chunk_rows=chunk_rows)
        self.match_high: dict[str, int] = {}  # symbol -> newest match sequence decoded
        self.ticker_high: dict[str, int] = {}  # symbol -> newest ticker sequence decoded

    def message(self, msg: Any, line: CaptureLine) -> None:
        msg = obj(msg, "the frame")
        kind = msg.get("type")
        if kind in wire.CONTROL_TYPES:
            self.quiet(kind)  # welcome, subscription ack, pong: no market data
            return
        if kind == "error":
            raise BadInput(Reason.VENUE_ERROR, f"venue error {msg.get('code')}: {msg.get('data')}")
        if kind != "message":
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"frame type {kind!r}")
        subject = msg.get("subject")
        data = obj(field(msg, "data"), f"data of {subject!r}")
        named = data.get("symbol")  # the instrument a dead letter of this frame names (the topic's, else)
        self.frame_symbol = named if isinstance(named, str) else _topic_symbol(msg)
        if subject == wire.L2_UPDATE:
            self._l2update(data, line)
        elif subject in wire.MATCH:
            self._match(data, line)
        elif subject == wire.TICKER:
            self._ticker(data, _topic_symbol(msg), line)
        elif isinstance(subject, str) and subject.startswith(wire.UNSUPPORTED_PREFIXES):
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"subject {subject!r} is not decoded")
        else:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"subject {subject!r} on topic {msg.get('topic')!r}")

    def _l2update(self, data: dict[str, Any], line: CaptureLine) -> None:
        symbol = self.check_symbol(data.get("symbol"))
        first, last = integer(data, "sequenceStart"), integer(data, "sequenceEnd")
        if first > last:
            raise BadInput(Reason.OUT_OF_RANGE, f"sequenceStart {first} is above sequenceEnd {last}")
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
                    raise BadInput(Reason.BAD_SHAPE, f"{key}[{i}] was {row!r}, not [price, size, sequence]")
                if px[i] == 0:
                    continue  # price "0": the change only advances the sequence
                sides.append(side)
                prices.append(px[i])
                sizes.append(sz[i])
                row_ids.append(integer(row, 2))
        # a diff of price-"0" changes only (sequence advances) is quiet; one before the snapshot waits
        ts_event = ms_to_ns(data.get("time"), line.recv_ns)
        self.apply_diff(L2Message(wire.VENUE, symbol, first, last, None, ts_event, line.recv_ns, sides,
                                  prices, sizes, row_ids))

    def http(self, line: CaptureLine) -> None:
        url = urlsplit(line.url)
        symbols = parse_qs(url.query).get("symbol")
        if "/market/orderbook/level2" not in url.path or not symbols:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"REST response of {line.url} is not a level-2 snapshot")
        body = obj(load_json(line.payload), "the snapshot body")
        if body.get("code") != wire.OK_CODE:
            raise BadInput(Reason.VENUE_ERROR,
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
            raise BadInput(Reason.BAD_FIELD, f"taker side was {data.get('side')!r}")
        trade_id = field(data, "tradeId")
        ts = data.get("time")
        seq, px, size = integer(data, "sequence"), decimal(data, "price"), decimal(data, "size")
        # a match repeating the symbol's newest sequence is a doubled frame; one below it is late
        high = self.match_high.get(symbol, -1)
        if seq == high:
            raise BadInput(Reason.DUPLICATE, f"{symbol} match sequence {seq} repeats the newest one")
        self.match_high[symbol] = max(high, seq)
        self.trades.append(
            ts_event_ns=int(ts) if isinstance(ts, str) and ts.isascii() and ts.isdigit() else line.recv_ns,
            ts_recv_ns=line.recv_ns, venue=wire.VENUE, symbol=symbol, sequence=seq,
            trade_id=str(trade_id), price_nanos=px, size_nanos=size, aggressor_side=side,
            flags=F_GAP if seq < high else 0,
        )

    def _ticker(self, data: dict[str, Any], symbol: str, line: CaptureLine) -> None:
        """A ticker: its ``sequence`` repeating the symbol's newest is a ``duplicate`` (a doubled
        frame); one below it arrived out of order: the row carries ``F_GAP``."""
        symbol = self.check_symbol(symbol)
        seq = integer(data, "sequence")
        row = dict(
            ts_event_ns=ms_to_ns(data.get("time"), line.recv_ns), ts_recv_ns=line.recv_ns,
            venue=wire.VENUE, symbol=symbol, sequence=seq,
            bid_price_nanos=decimal(data, "bestBid"), bid_size_nanos=decimal(data, "bestBidSize"),
            ask_price_nanos=decimal(data, "bestAsk"), ask_size_nanos=decimal(data, "bestAskSize"),
        )
        high = self.ticker_high.get(symbol, -1)
        if seq == high:
            raise BadInput(Reason.DUPLICATE, f"{symbol} ticker sequence {seq} repeats the newest one")
        self.ticker_high[symbol] = max(high, seq)
        self.quotes.append(**row, flags=F_GAP if seq < high else 0)


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
