"""Coinbase websocket captures -> ``book_delta``, ``trade`` and ``quote`` records.

The level2 channel has no sequence and no checksum, so there is nothing to chain; the book oracle
(never crossed once synced) runs on the emitted deltas in ``verify``. The one state kept is each
product's highest ``trade_id``: Coinbase answers every ``matches`` subscription with a
``last_match`` (the product's latest trade), so a resubscription repeats a trade already decoded;
that repeat is not a second trade row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from tapeflow.schemas.records import (
    ASK,
    BID,
    BOOK_DELTA,
    F_LAST,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    NO_SIDE,
    QUOTE,
    TRADE,
    UNDEF_PRICE,
)
from tapeflow.venues.base import BadNumber, Decoded, FrameBuffers, RecordReject, to_nanos
from tapeflow.venues.capture import RECV, CaptureLine, decode_captures
from tapeflow.venues.coinbase import messages as m

VENUE = "coinbase"
CHUNK_ROWS = 100_000


_Reject = RecordReject  # the shared per-record reject, under this module's short name


class CoinbaseDecoder(FrameBuffers):
    """Frame decoder; feed frames in arrival order, take chunks with :meth:`flush`."""

    venue = VENUE
    records = (BOOK_DELTA, TRADE, QUOTE)

    def __init__(self) -> None:
        self._new_buffers()
        self.last_trade_id: dict[str, int] = {}  # product -> highest trade_id decoded (kept across flushes)
        self.repeated_last_matches = 0

    def feed(self, line: CaptureLine) -> None:
        """Decode one captured frame; bad frames become ``rejected`` rows."""
        if line.kind != RECV:
            return
        product = ""
        try:
            msg = _loads(line.payload)
            if not isinstance(msg, dict):
                raise _Reject("unknown_message", f"top level is {type(msg).__name__}, not an object")
            kind, product = msg.get("type"), str(msg.get("product_id", ""))
            if kind in m.CONTROL:
                return
            if kind == m.SNAPSHOT:
                self._snapshot(msg, product, line)
            elif kind == m.L2UPDATE:
                self._l2update(msg, product, line)
            elif kind in m.MATCHES:
                self._match(msg, product, line)
            elif kind == m.TICKER:
                self._ticker(msg, product, line)
            else:
                raise _Reject("unknown_message", f"type {kind!r}")
        except _Reject as err:
            self.rejects.add(err.reason, err.detail, line.location, line.payload,
                             ts_recv_ns=line.recv_ns, symbol=product)

    def _emit(self, line: CaptureLine, product: str, ts: int, rows: list[tuple[int, int, int, int]],
              base: int) -> None:
        for i, (side, action, px, size) in enumerate(rows):
            self.deltas.append(ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=product,
                               sequence=-1, side=side, action=action, price_nanos=px, size_nanos=size,
                               flags=base | (F_LAST if i == len(rows) - 1 else 0))

    def _snapshot(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        rows = [(NO_SIDE, L2_CLEAR, 0, 0)]
        for key, side in (("asks", ASK), ("bids", BID)):
            for raw in _list(msg.get(key), key):
                if not isinstance(raw, list) or len(raw) < 2:
                    raise _Reject("missing_field", f"{key!r} level {raw!r} is not [price, size]")
                px, size = _nanos(raw[0], "price"), _nanos(raw[1], "size")
                rows.append((side, L2_SET if size else L2_DELETE, px, size))
        # a snapshot carries no venue time: its capture time stands in
        self._emit(line, product, line.recv_ns, rows, F_SNAPSHOT)

    def _l2update(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        ts = _time(msg)
        rows = []
        for raw in _list(msg.get("changes"), "changes"):
            if not isinstance(raw, list) or len(raw) < 3 or raw[0] not in (m.BUY, m.SELL):
                raise _Reject("missing_field", f"change {raw!r} is not [buy|sell, price, size]")
            px, size = _nanos(raw[1], "price"), _nanos(raw[2], "size")
            rows.append((BID if raw[0] == m.BUY else ASK, L2_SET if size else L2_DELETE, px, size))
        self._emit(line, product, ts, rows, 0)

    def _match(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        maker = msg.get("side")
        if maker not in (m.BUY, m.SELL):
            raise _Reject("missing_field", f"match side {maker!r} is not buy|sell")
        trade_id = msg.get("trade_id")
        seen = self.last_trade_id.get(product)
        if (msg.get("type") == m.LAST_MATCH and isinstance(trade_id, int) and seen is not None
                and trade_id <= seen):
            # a resubscription's last_match repeats a trade this stream already carried
            self.repeated_last_matches += 1
            return
        # the side is the resting (maker) order's: a sell maker means a buyer took it
        self.trades.append(ts_event_ns=_time(msg), ts_recv_ns=line.recv_ns, venue=VENUE, symbol=product,
                           sequence=trade_id if isinstance(trade_id, int) else -1,
                           trade_id="" if trade_id is None else str(trade_id),
                           price_nanos=_nanos(msg.get("price"), "price"),
                           size_nanos=_nanos(msg.get("size"), "size"),
                           aggressor_side=BID if maker == m.SELL else ASK, flags=F_LAST)
        if isinstance(trade_id, int):  # only a trade that became a row counts as seen
            self.last_trade_id[product] = trade_id if seen is None else max(seen, trade_id)

    def _ticker(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        seq = msg.get("sequence")
        bid, ask = msg.get("best_bid"), msg.get("best_ask")
        self.quotes.append(
            ts_event_ns=_time(msg), ts_recv_ns=line.recv_ns, venue=VENUE, symbol=product,
            sequence=seq if isinstance(seq, int) else -1,
            bid_price_nanos=UNDEF_PRICE if bid is None else _nanos(bid, "best_bid"),
            bid_size_nanos=_nanos(msg.get("best_bid_size", "0"), "best_bid_size"),
            ask_price_nanos=UNDEF_PRICE if ask is None else _nanos(ask, "best_ask"),
            ask_size_nanos=_nanos(msg.get("best_ask_size", "0"), "best_ask_size"), flags=F_LAST)


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        if err.pos >= len(payload.rstrip()):
            raise _Reject("truncated", f"frame ends at byte {len(payload)} inside a JSON value") from None
        head = payload[err.pos:err.pos + 9]
        if head.startswith((b"NaN", b"Infinity", b"-Infinity")):
            raise _Reject("bad_number", f"non-finite number {head!r} at byte {err.pos}") from None
        raise _Reject("bad_json", str(err)) from None


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Reject("missing_field", f"{key!r} is {value!r}, not a list")
    return value


def _nanos(text: Any, key: str) -> int:
    if not isinstance(text, str):
        raise _Reject("missing_field", f"{key!r} is {text!r}, not a decimal string")
    try:
        return to_nanos(text)
    except BadNumber as err:
        raise _Reject(err.reason, f"{key!r} {err.reason}: {text!r}") from None


def _time(msg: dict[str, Any]) -> int:
    text = msg.get("time")
    ts = m.iso_to_ns(text) if isinstance(text, str) else None
    if ts is None:
        raise _Reject("missing_field" if text is None else "bad_timestamp", f"'time' is {text!r}")
    return ts


def decode_with(decoder: CoinbaseDecoder, paths: Sequence[Path]) -> Iterator[Decoded]:
    """Run ``decoder`` over capture files (see :func:`tapeflow.venues.capture.decode_captures`)."""
    return decode_captures(decoder, paths, chunk_rows=CHUNK_ROWS)


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode Coinbase websocket captures (cryptofeed logs or ``<recv_ns> <json>`` lines).

    Args:
        paths: capture files, decoded in order.

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``trade``, ``quote`` and ``rejected`` tables.
    """
    yield from decode_with(CoinbaseDecoder(), paths)
