"""BitMEX realtime captures -> ``book_delta``, ``quote`` and ``trade`` records.

``orderBookL2`` names each price level by ``id``; ``update`` carries the new size only and
``delete`` neither size nor price, so the decoder keeps ``id -> (side, price)`` per symbol from
the ``partial`` and later inserts. Prices arrive as JSON numbers, kept as the text BitMEX printed
(:func:`tapeflow.venues.fields.load_json`) and parsed exactly. Sizes are contracts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tapeflow.errors import BadInput, BadNumber
from tapeflow.schemas.records import (
    ASK,
    BID,
    F_GAP,
    F_LAST,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    NO_SIDE,
)
from tapeflow.venues.bitmex import messages as m
from tapeflow.venues.decoder import VenueDecoder
from tapeflow.venues.fields import array, field, obj
from tapeflow.wire.capture import CaptureLine, Decoded
from tapeflow.wire.numbers import to_nanos
from tapeflow.wire.rejects import Reason

VENUE = "bitmex"


class BitmexDecoder(VenueDecoder):
    """Stateful frame decoder; feed frames in arrival order, take chunks with :meth:`flush`."""

    venue = VENUE
    every_frame_accounted = True

    def __init__(self) -> None:
        super().__init__()
        self.levels: dict[str, dict[int, tuple[int, int]]] = {}  # symbol -> id -> (side, price)
        self.book_frame = False  # the frame being decoded is an orderBookL2 one

    def message(self, msg: Any, line: CaptureLine) -> None:
        msg = obj(msg, "the frame")
        if "table" not in msg:
            if not m.CONTROL_KEYS & msg.keys():
                raise BadInput(Reason.UNKNOWN_MESSAGE, f"object with keys {sorted(msg)[:5]}")
            self.quiet("control")
            return
        table, action = msg.get("table"), msg.get("action")
        self.book_frame = table == m.ORDER_BOOK_L2
        data = [obj(d, "a data item") for d in array(field(msg, "data"), "'data'")]
        self.frame_symbol = ",".join(sorted({str(d.get("symbol", "")) for d in data}))
        if action not in m.ACTIONS:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"action {action!r}")
        if table not in (m.ORDER_BOOK_L2, m.QUOTE, m.TRADE):
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"table {table!r}")
        if not data:
            self._empty(msg, table, action, line)
        elif table == m.ORDER_BOOK_L2:
            self._book(action, data, line)
        elif table == m.QUOTE:
            self._quotes(data, line)
        else:
            self._trades(action, data, line)

    def on_reject(self) -> None:
        # a lost book frame leaves those books behind the venue (a lost trade frame does not)
        if self.frame_symbol and self.book_frame:
            self.gap_pending |= set(self.frame_symbol.split(",")) & self.levels.keys()

    def _empty(self, msg: dict[str, Any], table: str, action: str, line: CaptureLine) -> None:
        """A frame with ``"data": []``. A ``partial`` is the table's state on subscription, which
        may hold nothing: an empty book (tardis-node's BitMEX fixtures hold a real one) is a book
        cleared, no trade or quote yet is ignored by rule (``empty_snapshot``). Updates of nothing
        are not sent by BitMEX: damage (``missing_field``)."""
        filt = msg.get("filter")
        symbol = filt.get("symbol") if isinstance(filt, dict) else None
        self.frame_symbol = symbol if isinstance(symbol, str) else ""
        if action != m.PARTIAL or table != m.ORDER_BOOK_L2 or not self.frame_symbol:
            self.items(msg["data"], f"{table} {action} 'data'", snapshot=action == m.PARTIAL)
        sym = self.frame_symbol
        self.levels[sym] = {}
        self.gap_pending.discard(sym)
        self.deltas.extend(1, ts_event_ns=line.recv_ns, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=sym,
                           sequence=-1, side=NO_SIDE, action=L2_CLEAR, price_nanos=0, size_nanos=0,
                           flags=F_SNAPSHOT | F_LAST)

    def _book(self, action: str, data: list[dict[str, Any]], line: CaptureLine) -> None:
        by_symbol: dict[str, list[tuple[int, int, int, int]]] = {}
        if action == m.PARTIAL:
            fresh: dict[str, dict[int, tuple[int, int]]] = {}
            for d in data:
                fresh.setdefault(d.get("symbol", ""), {})
            for sym in fresh:
                by_symbol[sym] = [(NO_SIDE, L2_CLEAR, 0, 0)]
            for d in data:
                level_id, side, px, size = _id(d), _side(d), _price(d), _size(d)
                fresh[d.get("symbol", "")][level_id] = (side, px)
                by_symbol[d.get("symbol", "")].append((side, L2_SET, px, size))
            self.levels.update(fresh)
            for sym in fresh:
                self.gap_pending.discard(sym)
            base = F_SNAPSHOT
        else:
            pending: dict[str, dict[int, tuple[int, int] | None]] = {}
            for d in data:
                sym, level_id = d.get("symbol", ""), _id(d)
                known = self.levels.get(sym)
                if known is None:
                    raise BadInput(Reason.NO_SNAPSHOT, f"{action} for {sym!r} before its partial")
                staged = pending.setdefault(sym, {})
                if action == m.INSERT:
                    side, px, size = _side(d), _price(d), _size(d)
                    staged[level_id] = (side, px)
                    by_symbol.setdefault(sym, []).append((side, L2_SET, px, size))
                    continue
                where = staged.get(level_id, known.get(level_id))
                if where is None:
                    raise BadInput(Reason.UNKNOWN_ID, f"{action} of unknown id {level_id} for {sym!r}")
                if action == m.UPDATE:
                    by_symbol.setdefault(sym, []).append((where[0], L2_SET, where[1], _size(d)))
                else:
                    staged[level_id] = None
                    by_symbol.setdefault(sym, []).append((where[0], L2_DELETE, where[1], 0))
            for sym, staged in pending.items():
                for level_id, where in staged.items():
                    if where is None:
                        self.levels[sym].pop(level_id, None)
                    else:
                        self.levels[sym][level_id] = where
            base = 0
        for sym, rows in by_symbol.items():
            first = F_GAP if sym in self.gap_pending and base == 0 else 0
            self.gap_pending.discard(sym)
            n = len(rows)
            side, act, px, size = (list(c) for c in zip(*rows, strict=True))
            flags = [base] * n
            flags[0] |= first
            flags[-1] |= F_LAST
            self.deltas.extend(n, ts_event_ns=_ts(rows_ts(data, sym), line), ts_recv_ns=line.recv_ns,
                               venue=VENUE, symbol=sym, sequence=-1, side=side, action=act, price_nanos=px,
                               size_nanos=size, flags=flags)

    def _quotes(self, data: list[dict[str, Any]], line: CaptureLine) -> None:
        rows = [dict(ts_event_ns=_ts(d.get("timestamp"), line, required=True),
                     symbol=str(d.get("symbol", "")),
                     bid_price_nanos=_price(d, "bidPrice"), bid_size_nanos=_size(d, "bidSize"),
                     ask_price_nanos=_price(d, "askPrice"), ask_size_nanos=_size(d, "askSize"))
                for d in data]
        for row in rows:
            self.quotes.append(ts_recv_ns=line.recv_ns, venue=VENUE, sequence=-1, flags=F_LAST, **row)

    def _trades(self, action: str, data: list[dict[str, Any]], line: CaptureLine) -> None:
        rows = []
        for d in data:
            if field(d, "side") not in (m.BUY, m.SELL):
                raise BadInput(Reason.BAD_FIELD, f"trade side {d.get('side')!r} is not Buy|Sell")
            rows.append(dict(ts_event_ns=_ts(d.get("timestamp"), line, required=True),
                             symbol=str(d.get("symbol", "")), trade_id=str(d.get("trdMatchID", "")),
                             price_nanos=_price(d), size_nanos=_size(d),
                             aggressor_side=BID if d["side"] == m.BUY else ASK))
        # a partial replays trades that already happened before the subscription: on a
        # resubscription it repeats trades already decoded, by design (rows kept, F_SNAPSHOT)
        base = F_SNAPSHOT if action == m.PARTIAL else 0
        symbols = [r["symbol"] for r in rows]
        repeated = self.repeated_trades(symbols, [r["trade_id"] for r in rows],
                                        whole_frame_is_duplicate=action != m.PARTIAL)
        # trdMatchIDs are UUIDs: a trade older than the symbol's newest is the only reorder to see
        late = self.late_trades(symbols, [r["ts_event_ns"] for r in rows])
        for i, row in enumerate(rows):
            self.trades.append(ts_recv_ns=line.recv_ns, venue=VENUE, sequence=-1,
                               flags=base | repeated[i] | late[i] | (F_LAST if i == len(rows) - 1 else 0),
                               **row)


def rows_ts(data: list[dict[str, Any]], symbol: str) -> Any:
    """The ``timestamp`` of a symbol's rows in a book frame (newer captures carry one)."""
    return next((d.get("timestamp") for d in data if d.get("symbol") == symbol), None)


def _number(d: dict[str, Any], key: str) -> int:
    value = d.get(key)
    if value is None:
        raise BadInput(Reason.MISSING_FIELD, f"{key!r} missing in {d}")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadNumber(Reason.BAD_NUMBER, value, key)
    try:
        # JSON numbers arrive as their text (tapeflow.venues.fields.load_json), parsed exactly here
        return to_nanos(value)
    except BadNumber as err:
        raise BadInput(err.reason, f"{key!r} {err.reason}: {value!r}") from None


def _price(d: dict[str, Any], key: str = "price") -> int:
    return _number(d, key)


def _size(d: dict[str, Any], key: str = "size") -> int:
    return _number(d, key)


def _id(d: dict[str, Any]) -> int:
    value = d.get("id")
    if value is None:
        raise BadInput(Reason.MISSING_FIELD, "no level id")
    if type(value) is not int:
        raise BadNumber(Reason.BAD_NUMBER, value, "level id")
    return value


def _side(d: dict[str, Any]) -> int:
    side = field(d, "side")
    if side not in (m.BUY, m.SELL):
        raise BadInput(Reason.BAD_FIELD, f"level side {side!r} is not Buy|Sell")
    return BID if side == m.BUY else ASK


def _ts(text: Any, line: CaptureLine, *, required: bool = False) -> int:
    if text is None and not required:
        return line.recv_ns  # 2021 orderBookL2 frames carry no venue time
    ts = m.iso_to_ns(text) if isinstance(text, str) else None
    if ts is None:
        reason = Reason.MISSING_FIELD if text is None else Reason.BAD_TIMESTAMP
        raise BadInput(reason, f"'timestamp' is {text!r}")
    return ts


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode BitMEX realtime captures (cryptofeed logs or ``<recv_ns> <json>`` lines).

    Args:
        paths: capture files, merged by capture time; the id map carries across files.

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``quote``, ``trade`` and ``rejected`` tables.
    """
    yield from BitmexDecoder().run(paths)
