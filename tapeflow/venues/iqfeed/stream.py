"""IQConnect streaming lines (Level 1 port 5009, Level 2 port 9200), protocol 6.x -> records.

Level 1 ``Q`` (update) and ``P`` (summary) carry the fields the session selected (``S,SELECT
UPDATE FIELDS`` / the server's ``S,CURRENT UPDATE FIELDNAMES`` answer; until then the 6.x default
set). A ``Q`` whose Message Contents holds ``C``, ``E`` or ``O`` is a ``trade`` (``trade_id`` the
basis, then the TickID when selected), one holding ``b``/``a`` a ``quote``; a ``P`` is a
``quote`` flagged ``F_SNAPSHOT``. A trade time has no date: the Most Recent Trade Date when
selected, else the date of the last ``T`` timestamp message, else the capture's Eastern date.
``F`` (fundamentals, protocol 6.2 layout) is an ``instrument`` row.

Level 2 market by order (``3`` add, ``4`` update, ``5`` delete, ``6`` summary) is ``order_event``
rows (a delete names only the order: its price and size come from the order's add); market by
price (``7`` summary, ``8`` update, ``9`` delete) is ``book_delta`` rows, a run of summaries
opening with a clear; the 6.0 market-maker quote of the top level (``Z``/``2`` of ``MD01``) is a
``quote``. What tapeflow has no record for (regional quotes ``R``, news ``N``, deeper ``MDnn`` and
market-maker quotes, price-level orders ``0``) is ``unsupported_channel``, ignored by rule.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tapeflow.errors import BadInput
from tapeflow.schemas.records import (
    F_LAST,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    L3_ADD,
    L3_CANCEL,
    L3_MODIFY,
    NO_SIDE,
    UNDEF_PRICE,
)
from tapeflow.venues.iqfeed import messages as m
from tapeflow.venues.iqfeed import values as v
from tapeflow.wire.rejects import Reason

if TYPE_CHECKING:
    import datetime as dt

    from tapeflow.venues.iqfeed.parse import IQFeedDecoder
    from tapeflow.wire.capture import CaptureLine

STREAM_TYPES = frozenset("QPFRSTEnNMZ2034567 89".replace(" ", ""))
_QUIET_SYSTEM = "system"


class StreamState:
    """What a session's earlier lines set: the field set, the protocol, the date, resting orders."""

    def __init__(self, protocol: str = m.DEFAULT_PROTOCOL, session_date: dt.date | None = None) -> None:
        self.fields: tuple[str, ...] = m.DEFAULT_L1_FIELDS
        self.protocol = protocol
        self.session_date = session_date
        self.orders: dict[tuple[str, int], tuple[int, int, int]] = {}  # (symbol, id) -> side, price, size
        self.level_summary: set[str] = set()  # symbols inside a run of price-level summaries


def _expect(f: list[str], names: tuple[str, ...], what: str) -> None:
    if len(f) != len(names):
        raise BadInput(Reason.BAD_LINE, f"{what} of {len(f)} fields, protocol 6.x has {len(names)} "
                                        f"({', '.join(names[:4])}, ...)")


def decode_line(dec: IQFeedDecoder, kind: str, f: list[str], line: CaptureLine) -> None:
    """One streaming line (message type ``kind``, fields ``f`` after it) into ``dec``'s buffers.

    Raises:
        BadInput: what is wrong with it.
    """
    s = dec.state
    if kind in (m.L1_UPDATE, m.L1_SUMMARY):
        _level1(dec, kind, f, line)
    elif kind == m.SYSTEM:
        _system(dec, f)
    elif kind == m.TIMESTAMP:
        if len(f) != 1:
            raise BadInput(Reason.BAD_LINE, f"T message of {len(f)} fields")
        s.session_date = v.parse_date(f[0].partition(" ")[0], "T")
        v.timestamp_ns(f[0], "T")
        dec.quiet("timestamp")
    elif kind == m.L1_FUNDAMENTAL:
        _fundamental(dec, f, line)
    elif kind in (m.ERROR, m.NOT_FOUND):
        dec.frame_symbol = f[0] if kind == m.NOT_FOUND and f else ""
        what = "symbol not found" if kind == m.NOT_FOUND else "error"
        raise BadInput(Reason.VENUE_ERROR, f"IQConnect {what}: {','.join(f)}")
    elif kind == m.MARKET_MAKER_NAME:
        dec.quiet("market maker name")
    elif kind in (m.L1_REGIONAL, m.NEWS, m.L2_PRICE_LEVEL_ORDER):
        raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"{kind} messages (regional quotes, news, price-level "
                                                   "orders) have no tapeflow record")
    elif kind in (m.L2_ORDER_ADD, m.L2_ORDER_UPDATE, m.L2_ORDER_SUMMARY, m.L2_ORDER_DELETE):
        _order(dec, kind, f, line)
    elif kind in (m.L2_LEVEL_SUMMARY, m.L2_LEVEL_UPDATE, m.L2_LEVEL_DELETE):
        _level(dec, kind, f, line)
    elif kind in (m.L2_MM_SUMMARY, m.L2_MM_UPDATE):
        _market_maker(dec, kind, f, line)
    else:
        raise BadInput(Reason.UNKNOWN_MESSAGE, f"message type {kind!r}")


def _system(dec: IQFeedDecoder, f: list[str]) -> None:
    s = dec.state
    name = f[0] if f else ""
    if name in m.FIELDSET_MESSAGES:
        names = tuple(f[1:])
        if not names or any(not n for n in names):
            raise BadInput(Reason.BAD_LINE, f"{name} with an empty field name")
        s.fields = names if names[0] == "Symbol" else ("Symbol", *names)
    elif name in m.PROTOCOL_MESSAGES:
        if len(f) != 2 or not f[1]:
            raise BadInput(Reason.BAD_LINE, f"{name} names no protocol")
        s.protocol = f[1]
    dec.quiet(_QUIET_SYSTEM)


def _date(dec: IQFeedDecoder, given: str, line: CaptureLine) -> dt.date:
    if given:
        return v.parse_date(given, "Most Recent Trade Date")
    if dec.state.session_date is not None:
        return dec.state.session_date
    if line.recv_ns >= 0:
        return v.eastern_date(line.recv_ns)
    raise BadInput(Reason.BAD_TIMESTAMP, "a time with no date: no trade date selected, no T message "
                                         "before it and no capture time")


def _level1(dec: IQFeedDecoder, kind: str, f: list[str], line: CaptureLine) -> None:
    names = dec.state.fields
    if len(f) != len(names):
        raise BadInput(Reason.BAD_LINE, f"{kind} message of {len(f)} fields, the selected field set has "
                                        f"{len(names)} ({', '.join(names[:4])}, ...)")
    row = dict(zip(names, f, strict=True))
    symbol = dec.frame_symbol = dec.check_symbol(row["Symbol"])
    contents = row.get("Message Contents", "")
    basis = next((c for c in contents if c in m.TRADE_BASES), "") if kind == m.L1_UPDATE else ""
    has_quote = "Bid" in row and "Ask" in row and (
        kind == m.L1_SUMMARY or "b" in contents or "a" in contents or "Message Contents" not in row)
    recv = line.recv_ns
    trade_ns = -1
    if basis or has_quote:
        day = _date(dec, row.get("Most Recent Trade Date", ""), line)
    if basis:
        clock = row.get("Most Recent Trade Time", "")
        if not clock:
            raise BadInput(Reason.MISSING_FIELD, "a trade update with no Most Recent Trade Time")
        trade_ns = v.eastern_ns(day, v.time_of_day_ns(clock, "Most Recent Trade Time"))
        tick_id = row.get("TickID", "")
        sequence = v.integer(tick_id, "TickID") if tick_id else -1
        price = v.price(row.get("Most Recent Trade", ""), "Most Recent Trade")
        size = v.price(row.get("Most Recent Trade Size", ""), "Most Recent Trade Size")
    if has_quote:
        bid, ask = v.price_or_undef(row["Bid"], "Bid"), v.price_or_undef(row["Ask"], "Ask")
        bid_size = v.size(row.get("Bid Size", ""), "Bid Size")
        ask_size = v.size(row.get("Ask Size", ""), "Ask Size")
        times = [v.time_of_day_ns(row[n], n) for n in ("Bid Time", "Ask Time") if row.get(n)]
        quote_ns = v.eastern_ns(day, max(times)) if times else trade_ns if basis else recv
        has_quote = kind == m.L1_UPDATE or bid != UNDEF_PRICE or ask != UNDEF_PRICE
    if basis:
        dec.trades.append(ts_event_ns=trade_ns, ts_recv_ns=recv if recv >= 0 else trade_ns, venue=m.VENUE,
                          symbol=symbol, sequence=sequence, trade_id=f"{basis}{tick_id}", price_nanos=price,
                          size_nanos=size, flags=0,
                          aggressor_side=v.aggressor(row.get("Most Recent Trade Aggressor", "")))
    if has_quote:
        dec.quotes.append(ts_event_ns=quote_ns, ts_recv_ns=recv if recv >= 0 else quote_ns, venue=m.VENUE,
                          symbol=symbol, sequence=-1, bid_price_nanos=bid, bid_size_nanos=bid_size,
                          ask_price_nanos=ask, ask_size_nanos=ask_size,
                          flags=F_SNAPSHOT if kind == m.L1_SUMMARY else 0)
    if not basis and not has_quote:
        dec.quiet("summary fields")  # open/high/low/volume changes: no trade and no quote in it


def _fundamental(dec: IQFeedDecoder, f: list[str], line: CaptureLine) -> None:
    if dec.state.protocol != m.FUNDAMENTAL_PROTOCOL:
        raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"fundamentals of protocol {dec.state.protocol}: only the "
                                                   f"{m.FUNDAMENTAL_PROTOCOL} layout is decoded")
    _expect(f, m.FUNDAMENTAL_FIELDS_62, "F message")
    row = dict(zip(m.FUNDAMENTAL_FIELDS_62, f, strict=True))
    symbol = dec.frame_symbol = dec.check_symbol(row["Symbol"])
    multiplier = row["Option Premium Multiplier"]
    expiry = row["Expiration Date"]
    dec.instruments.append(
        ts_event_ns=line.recv_ns, ts_recv_ns=line.recv_ns, venue=m.VENUE, symbol=symbol, instrument_id=0,
        instrument_class=row["Security Type"],
        tick_size_nanos=v.size(row["Minimum Tick Size"], "Minimum Tick Size"),
        lot_size_nanos=0, multiplier_nanos=v.size(multiplier, "Option Premium Multiplier"),
        currency=row["Base Currency"],
        expiration_ns=v.utc_day_ns(expiry, "Expiration Date") if expiry else -1,
        raw=json.dumps(row, separators=(",", ":")))


def _when(f: list[str], time_at: int, date_at: int) -> int:
    return v.eastern_ns(v.parse_date(f[date_at], "date"), v.time_of_day_ns(f[time_at], "time"))


def _order(dec: IQFeedDecoder, kind: str, f: list[str], line: CaptureLine) -> None:
    s = dec.state
    delete = kind == m.L2_ORDER_DELETE
    _expect(f, m.ORDER_DELETE_FIELDS if delete else m.ORDER_FIELDS, f"order message {kind}")
    symbol = dec.frame_symbol = dec.check_symbol(f[0])
    order_id = v.integer(f[1], "OrderID")
    side = v.side(f[3])
    key = (symbol, order_id)
    if delete:
        ts = _when(f, 4, 5)
        resting = s.orders.pop(key, None)
        if resting is None:
            raise BadInput(Reason.UNKNOWN_ID, f"delete of order {order_id}, never added")
        _, price, size = resting
        action, flags = L3_CANCEL, F_LAST
    else:
        price, size = v.price(f[4], "Price"), v.price(f[5], "OrderSize")
        v.integer(f[6], "OrderPriority")
        ts = _when(f, 8, 9)
        if kind == m.L2_ORDER_UPDATE and key not in s.orders:
            raise BadInput(Reason.UNKNOWN_ID, f"update of order {order_id}, never added")
        s.orders[key] = (side, price, size)
        action = L3_MODIFY if kind == m.L2_ORDER_UPDATE else L3_ADD
        flags = F_LAST | (F_SNAPSHOT if kind == m.L2_ORDER_SUMMARY else 0)
    recv = line.recv_ns if line.recv_ns >= 0 else ts
    dec.orders.append(ts_event_ns=ts, ts_recv_ns=recv, venue=m.VENUE, symbol=symbol, sequence=-1,
                      order_id=order_id, action=action, side=side, price_nanos=price, size_nanos=size,
                      flags=flags)


def _level(dec: IQFeedDecoder, kind: str, f: list[str], line: CaptureLine) -> None:
    s = dec.state
    delete = kind == m.L2_LEVEL_DELETE
    _expect(f, m.LEVEL_DELETE_FIELDS if delete else m.LEVEL_FIELDS, f"price level message {kind}")
    symbol = dec.frame_symbol = dec.check_symbol(f[0])
    side, price = v.side(f[1]), v.price(f[2], "Price")
    if delete:
        size, ts = 0, _when(f, 3, 4)
    else:
        size = v.price(f[3], "Size")
        v.integer(f[4], "OrderCount")
        ts = _when(f, 6, 7)
    recv = line.recv_ns if line.recv_ns >= 0 else ts
    rows = []
    if kind == m.L2_LEVEL_SUMMARY and symbol not in s.level_summary:
        s.level_summary.add(symbol)
        rows.append((NO_SIDE, L2_CLEAR, 0, 0, F_SNAPSHOT))  # the summary run replaces the whole book
    elif kind != m.L2_LEVEL_SUMMARY:
        s.level_summary.discard(symbol)
    snap = F_SNAPSHOT if kind == m.L2_LEVEL_SUMMARY else 0
    rows.append((side, L2_DELETE if delete or size == 0 else L2_SET, price, size, snap | F_LAST))
    for side_code, action, px, sz, flags in rows:
        dec.deltas.append(ts_event_ns=ts, ts_recv_ns=recv, venue=m.VENUE, symbol=symbol, sequence=-1,
                          side=side_code, action=action, price_nanos=px, size_nanos=sz, flags=flags)


def _market_maker(dec: IQFeedDecoder, kind: str, f: list[str], line: CaptureLine) -> None:
    _expect(f, m.MM_FIELDS, f"market maker message {kind}")
    symbol = dec.frame_symbol = dec.check_symbol(f[0])
    if f[1] != m.TOP_LEVEL_MMID:
        raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"MMID {f[1]!r}: only the top level {m.TOP_LEVEL_MMID} is "
                                                   "decoded (as a quote)")
    bid, ask = v.price_or_undef(f[2], "Bid"), v.price_or_undef(f[3], "Ask")
    bid_size, ask_size = v.size(f[4], "BidSize"), v.size(f[5], "AskSize")
    day = v.parse_date(f[7], "Date")
    ts = v.eastern_ns(day, max(v.time_of_day_ns(f[6], "BidTime"), v.time_of_day_ns(f[9], "AskTime")))
    dec.quotes.append(ts_event_ns=ts, ts_recv_ns=line.recv_ns if line.recv_ns >= 0 else ts, venue=m.VENUE,
                      symbol=symbol, sequence=-1, bid_price_nanos=bid, bid_size_nanos=bid_size,
                      ask_price_nanos=ask, ask_size_nanos=ask_size,
                      flags=F_SNAPSHOT if kind == m.L2_MM_SUMMARY else 0)
