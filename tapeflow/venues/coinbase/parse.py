"""Coinbase websocket captures -> ``book_delta``, ``trade`` and ``quote`` records.

The level2 channel has no sequence and no checksum, so there is nothing to chain; the book oracle
(never crossed once synced) runs on the emitted deltas in ``verify``. The one state kept is each
product's highest ``trade_id``: Coinbase answers every ``matches`` subscription with a
``last_match`` (the product's latest trade), so a resubscription repeats a trade already decoded;
that repeat is not a second trade row.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tapeflow.errors import BadInput
from tapeflow.schemas.records import (
    ASK,
    BID,
    F_GAP,
    F_LAST,
    F_MAYBE_BAD_BOOK,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    NO_SIDE,
    UNDEF_PRICE,
)
from tapeflow.venues.coinbase import messages as m
from tapeflow.venues.decoder import VenueDecoder
from tapeflow.venues.fields import array, decimal, field, obj, sequence_or_none
from tapeflow.wire.capture import CaptureLine, Decoded
from tapeflow.wire.numbers import nanos
from tapeflow.wire.rejects import Reason

VENUE = "coinbase"


class CoinbaseDecoder(VenueDecoder):
    """Frame decoder; feed frames in arrival order, take chunks with :meth:`flush`."""

    venue = VENUE
    every_frame_accounted = True

    def __init__(self) -> None:
        super().__init__()
        self.last_trade_id: dict[str, int] = {}  # product -> highest trade_id decoded (kept across flushes)
        self.repeated_last_matches = 0
        self.ids: dict[tuple[str, str], RecentIds] = {}  # (type, product) -> trade ids / sequences seen
        self.last_update: dict[str, tuple[int, bytes]] = {}  # product -> newest l2update time, last frame
        self.duplicates = 0
        self.reorders = 0

    def message(self, msg: Any, line: CaptureLine) -> None:
        msg = obj(msg, "the frame")
        kind, product = msg.get("type"), str(msg.get("product_id", ""))
        self.frame_symbol = product
        if kind in m.CONTROL:
            self.quiet(kind)  # subscriptions, heartbeat, status: no market data
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
        flags = [base] * (n - 1) + [base | F_LAST]
        flags[0] |= self.take_gap(product)
        self.deltas.extend(n, ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=product,
                           sequence=-1, side=side, action=action, price_nanos=px, size_nanos=size,
                           flags=flags)

    def _sequenced(self, kind: str, product: str, number: Any) -> int:
        """A trade id or sequence already decoded is a ``duplicate`` dead letter; one below the
        highest decoded arrived out of order: its row carries ``F_GAP``. Returns that flag."""
        if not isinstance(number, int):
            return 0
        ids = self.ids.setdefault((kind, product), RecentIds())
        if number in ids:
            self.duplicates += 1
            raise BadInput(Reason.DUPLICATE, f"{kind} {product} {number} was already decoded")
        late = ids.add(number)
        self.reorders += late
        return F_GAP if late else 0

    def _snapshot(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        rows = [(NO_SIDE, L2_CLEAR, 0, 0)]
        for key, side in (("asks", ASK), ("bids", BID)):
            for raw in array(field(msg, key), key):
                if not isinstance(raw, list) or len(raw) < 2:
                    raise BadInput(Reason.BAD_SHAPE, f"{key!r} level {raw!r} is not [price, size]")
                px, size = nanos(raw[0], "price"), nanos(raw[1], "size")
                rows.append((side, L2_SET if size else L2_DELETE, px, size))
        # a snapshot carries no venue time: its capture time stands in
        self.resync(product)
        self.last_update.pop(product, None)
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
        self._emit(line, product, ts, rows, self._order(product, ts, line))

    def _order(self, product: str, ts: int, line: CaptureLine) -> int:
        """level2 has no sequence: an l2update identical to the product's previous one has its rows
        flagged ``F_MAYBE_BAD_BOOK`` (absolute sizes: the book is unchanged, the rows are twice);
        one older than the newest may have put stale sizes back: the book resyncs (``F_GAP``)."""
        newest, previous = self.last_update.get(product, (ts, b""))
        self.last_update[product] = (max(newest, ts), line.payload)
        if line.payload == previous:
            self.duplicates += 1
            return F_MAYBE_BAD_BOOK
        if ts < newest:
            self.reorders += 1
            self.lose_sync(product)
        return 0

    def _match(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        maker = field(msg, "side")
        if maker not in (m.BUY, m.SELL):
            raise BadInput(Reason.BAD_FIELD, f"match side {maker!r} is not buy|sell")
        trade_id = msg.get("trade_id")
        if isinstance(trade_id, int):
            sequence_or_none(trade_id, "trade_id")  # beyond int64: out_of_range, not a broken chunk
        seen = self.last_trade_id.get(product)
        if (msg.get("type") == m.LAST_MATCH and isinstance(trade_id, int) and seen is not None
                and trade_id <= seen):
            # a resubscription's last_match repeats a trade this stream already carried
            self.repeated_last_matches += 1
            self.quiet("repeated last_match")  # the subscription's answer, not a second trade
            return
        ts, px, size = _time(msg), decimal(msg, "price"), decimal(msg, "size")
        late = self._sequenced("trade_id", product, trade_id)
        # the side is the resting (maker) order's: a sell maker means a buyer took it
        aggressor = BID if maker == m.SELL else ASK
        self.trades.append(ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=product,
                           sequence=trade_id if isinstance(trade_id, int) else -1,
                           trade_id="" if trade_id is None else str(trade_id), price_nanos=px,
                           size_nanos=size, aggressor_side=aggressor, flags=F_LAST | late)
        if isinstance(trade_id, int):  # only a trade that became a row counts as seen
            self.last_trade_id[product] = trade_id if seen is None else max(seen, trade_id)

    def _ticker(self, msg: dict[str, Any], product: str, line: CaptureLine) -> None:
        seq = msg.get("sequence")
        if isinstance(seq, int):
            sequence_or_none(seq, "sequence")
        bid, ask = msg.get("best_bid"), msg.get("best_ask")
        row = dict(
            ts_event_ns=_time(msg), ts_recv_ns=line.recv_ns, venue=VENUE, symbol=product,
            sequence=seq if isinstance(seq, int) else -1,
            bid_price_nanos=UNDEF_PRICE if bid is None else nanos(bid, "best_bid"),
            bid_size_nanos=nanos(msg.get("best_bid_size", "0"), "best_bid_size"),
            ask_price_nanos=UNDEF_PRICE if ask is None else nanos(ask, "best_ask"),
            ask_size_nanos=nanos(msg.get("best_ask_size", "0"), "best_ask_size"))
        self.quotes.append(**row, flags=F_LAST | self._sequenced("ticker sequence", product, seq))


class RecentIds:
    """The ids seen lately (a bounded window, so memory stays flat on a long capture) and the
    highest one: ``in`` finds a repeat, :meth:`add` says whether an id came below the highest."""

    WINDOW = 65_536

    def __init__(self) -> None:
        self.order: deque[int] = deque()
        self.seen: set[int] = set()
        self.highest: int | None = None

    def __contains__(self, number: int) -> bool:
        return number in self.seen

    def add(self, number: int) -> bool:
        self.order.append(number)
        self.seen.add(number)
        if len(self.order) > self.WINDOW:
            self.seen.discard(self.order.popleft())
        late = self.highest is not None and number < self.highest
        self.highest = number if self.highest is None else max(self.highest, number)
        return late


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
