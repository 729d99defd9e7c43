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

from tapeflow.errors import BadInput
from tapeflow.schemas.records import (
    ASK,
    BID,
    F_LAST,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    NO_SIDE,
    UNDEF_PRICE,
)
from tapeflow.venues.coinbase import messages as m
from tapeflow.venues.decoder import VenueDecoder
from tapeflow.venues.fields import array, decimal, field, obj
from tapeflow.wire.capture import CaptureLine, Decoded
from tapeflow.wire.numbers import nanos
from tapeflow.wire.rejects import Reason

VENUE = "coinbase"


class CoinbaseDecoder(VenueDecoder):
    """Frame decoder; feed frames in arrival order, take chunks with :meth:`flush`."""

    venue = VENUE

    def __init__(self) -> None:
        super().__init__()
        self.last_trade_id: dict[str, int] = {}  # product -> highest trade_id decoded (kept across flushes)
        self.repeated_last_matches = 0

    def message(self, msg: Any, line: CaptureLine) -> None:
        msg = obj(msg, "the frame")
        kind, product = msg.get("type"), str(msg.get("product_id", ""))
        self.frame_symbol = product
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
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"type {kind!r}")

    def _emit(self, line: CaptureLine, product: str, ts: int, rows: list[tuple[int, int, int, int]],
              base: int) -> None:
        n = len(rows)
        if not n:
            return
        side, action, px, size = (list(c) for c in zip(*rows, strict=True))
        self.deltas.extend(n, ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=product,
                           sequence=-1, side=side, action=action, price_nanos=px, size_nanos=size,
                           flags=[base] * (n - 1) + [base | F_LAST])

    def _snapshot(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        rows = [(NO_SIDE, L2_CLEAR, 0, 0)]
        for key, side in (("asks", ASK), ("bids", BID)):
            for raw in array(field(msg, key), key):
                if not isinstance(raw, list) or len(raw) < 2:
                    raise BadInput(Reason.BAD_SHAPE, f"{key!r} level {raw!r} is not [price, size]")
                px, size = nanos(raw[0], "price"), nanos(raw[1], "size")
                rows.append((side, L2_SET if size else L2_DELETE, px, size))
        # a snapshot carries no venue time: its capture time stands in
        self._emit(line, product, line.recv_ns, rows, F_SNAPSHOT)

    def _l2update(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        ts = _time(msg)
        rows = []
        for raw in array(field(msg, "changes"), "changes"):
            if not isinstance(raw, list) or len(raw) < 3:
                raise BadInput(Reason.BAD_SHAPE, f"change {raw!r} is not [buy|sell, price, size]")
            if raw[0] not in (m.BUY, m.SELL):
                raise BadInput(Reason.BAD_FIELD, f"change {raw!r} is not [buy|sell, price, size]")
            px, size = nanos(raw[1], "price"), nanos(raw[2], "size")
            rows.append((BID if raw[0] == m.BUY else ASK, L2_SET if size else L2_DELETE, px, size))
        self._emit(line, product, ts, rows, 0)

    def _match(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        maker = field(msg, "side")
        if maker not in (m.BUY, m.SELL):
            raise BadInput(Reason.BAD_FIELD, f"match side {maker!r} is not buy|sell")
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
                           price_nanos=decimal(msg, "price"), size_nanos=decimal(msg, "size"),
                           aggressor_side=BID if maker == m.SELL else ASK, flags=F_LAST)
        if isinstance(trade_id, int):  # only a trade that became a row counts as seen
            self.last_trade_id[product] = trade_id if seen is None else max(seen, trade_id)

    def _ticker(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        seq = msg.get("sequence")
        bid, ask = msg.get("best_bid"), msg.get("best_ask")
        self.quotes.append(
            ts_event_ns=_time(msg), ts_recv_ns=line.recv_ns, venue=VENUE, symbol=product,
            sequence=seq if isinstance(seq, int) else -1,
            bid_price_nanos=UNDEF_PRICE if bid is None else nanos(bid, "best_bid"),
            bid_size_nanos=nanos(msg.get("best_bid_size", "0"), "best_bid_size"),
            ask_price_nanos=UNDEF_PRICE if ask is None else nanos(ask, "best_ask"),
            ask_size_nanos=nanos(msg.get("best_ask_size", "0"), "best_ask_size"), flags=F_LAST)


def _time(msg: dict[str, Any]) -> int:
    text = msg.get("time")
    ts = m.iso_to_ns(text) if isinstance(text, str) else None
    if ts is None:
        raise BadInput(Reason.MISSING_FIELD if text is None else Reason.BAD_TIMESTAMP, f"'time' is {text!r}")
    return ts


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode Coinbase websocket captures (cryptofeed logs or ``<recv_ns> <json>`` lines).

    Args:
        paths: capture files, merged by capture time.

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``trade``, ``quote`` and ``rejected`` tables.
    """
    yield from CoinbaseDecoder().run(paths)
