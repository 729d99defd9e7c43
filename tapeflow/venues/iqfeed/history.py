"""Historical lookup rows (port 9100) -> ``trade`` / ``quote`` / ``bar`` rows.

Tick rows (``HTX``/``HTD``/``HTT``): a ``C``, ``E`` or ``O`` basis is a ``trade`` whose
``trade_id`` is the basis followed by IQFeed's TickID (``C595``): IQFeed gives no exchange trade
id, and the basis is what tells the last-qualified trades (``C``, ``E``) from the others (``O``,
left out of IQFeed's own bars: :func:`tapeflow.venues.iqfeed.bars.bar_trades`); ``sequence`` is
the TickID. An ``a``/``b`` basis (a quote update, when non-trade ticks were asked for) is a
``quote`` (6.x tick rows carry no quote sizes: 0). A settlement (``S``) is no trade:
``unsupported_channel``. Interval rows (``HIX``/``HID``/``HIT``) and daily/weekly/monthly rows
(``HDX``/``HDT``/``HWX``/``HMX``) are ``bar`` rows labelled as the file labels them; a file with no
capture time has ``ts_recv_ns`` = ``ts_event_ns`` (as LOBSTER).
"""

from __future__ import annotations

import re
from pathlib import PurePath

from tapeflow.errors import BadInput
from tapeflow.schemas.records import UNDEF_PRICE
from tapeflow.venues.columns import Columns
from tapeflow.venues.iqfeed import values as v
from tapeflow.venues.iqfeed.messages import (
    DAILY_FIELDS,
    INTERVAL_FIELDS,
    QUOTE_BASES,
    TICK_FIELDS,
    TRADE_BASES,
    VENUE,
)
from tapeflow.wire.rejects import Reason

TICKS, INTERVALS, DAILIES = "ticks", "intervals", "dailies"
_LENGTHS = {len(TICK_FIELDS): TICKS, len(INTERVAL_FIELDS): INTERVALS, len(DAILY_FIELDS): DAILIES}
_INTERVAL_IN_NAME = re.compile(r"(?:^|_)(\d+[smhd])(?:_|\.|$)")
_SYMBOL_IN_NAME = re.compile(r"^([A-Z0-9@#.+\-]*[A-Z][A-Z0-9@#.+\-]*)_")


def row_kind(fields: list[str]) -> str | None:
    """The kind of a lookup row by its field count and first field's shape (None: not a lookup row)."""
    kind = _LENGTHS.get(len(fields))
    first = fields[0]
    # a date first (2021-03-01...): a streaming message of as many fields starts with its type
    if kind is None or len(first) < 10 or not first[:4].isdigit() or first[4] != "-":
        return None
    return kind


def file_symbol(*names: str) -> str:
    """The symbol a lookup file is named after (``NEPT_ticks_newest.zip`` -> ``NEPT``), '' when none:
    lookup rows do not repeat the symbol they answer for."""
    for name in names:
        m = _SYMBOL_IN_NAME.match(PurePath(name).name)
        if m:
            return m.group(1)
    return ""


def bar_interval(kind: str, *names: str) -> str:
    """The ``interval`` label of a file's bars: ``1s`` from ``..._1s_...``; ``1d``/``1w``/``1mo``."""
    text = " ".join(PurePath(n).name.lower() for n in names)
    if kind == DAILIES:
        return "1w" if "week" in text else "1mo" if "month" in text else "1d"
    for name in names:
        m = _INTERVAL_IN_NAME.search(PurePath(name).stem)
        if m:
            return m.group(1)
    return "interval"


def tick(f: list[str], symbol: str, recv_ns: int, trades: Columns, quotes: Columns) -> None:
    """One 6.x tick row into ``trades`` or ``quotes``.

    Raises:
        BadInput: any field unreadable; ``bad_value`` for an unknown basis.
    """
    ts = v.timestamp_ns(f[0])
    basis = f[7]
    bid = v.price_or_undef(f[4], "Bid")
    ask = v.price_or_undef(f[5], "Ask")
    tick_id = v.integer(f[6], "TickID")
    v.integer(f[3], "TotalVolume")
    recv = ts if recv_ns < 0 else recv_ns
    if basis in TRADE_BASES:
        trades.append(ts_event_ns=ts, ts_recv_ns=recv, venue=VENUE, symbol=symbol, sequence=tick_id,
                      trade_id=f"{basis}{tick_id}", price_nanos=v.price(f[1], "Last"),
                      size_nanos=v.price(f[2], "LastSize"), aggressor_side=v.aggressor(f[10]), flags=0)
    elif basis in QUOTE_BASES:
        quotes.append(ts_event_ns=ts, ts_recv_ns=recv, venue=VENUE, symbol=symbol, sequence=tick_id,
                      bid_price_nanos=bid, bid_size_nanos=0, ask_price_nanos=ask, ask_size_nanos=0, flags=0)
    elif basis == "S":
        raise BadInput(Reason.UNSUPPORTED_CHANNEL, "a settlement tick (basis S) is no trade")
    else:
        raise BadInput(Reason.BAD_VALUE, f"BasisForLast {basis!r} is not one of C, E, O, S, a, b")


def bar(f: list[str], kind: str, interval: str, symbol: str, recv_ns: int, bars: Columns) -> None:
    """One interval or daily/weekly/monthly row into ``bars``.

    Raises:
        BadInput: any field unreadable.
    """
    if kind == INTERVALS:
        ts = v.timestamp_ns(f[0])
        v.integer(f[5], "TotalVolume")
        volume, count = v.price(f[6], "PeriodVolume"), v.integer(f[7], "NumberOfTrades")
    else:
        ts = v.utc_day_ns(f[0])
        volume, count = v.price(f[5], "PeriodVolume"), 0
        v.integer(f[6], "OpenInterest")
    high, low = v.price(f[1], "High"), v.price(f[2], "Low")
    if low > high:
        raise BadInput(Reason.OUT_OF_RANGE, f"Low {f[2]} above High {f[1]}")
    bars.append(ts_event_ns=ts, ts_recv_ns=ts if recv_ns < 0 else recv_ns, venue=VENUE, symbol=symbol,
                interval=interval, open_price_nanos=v.price(f[3], "Open"), high_price_nanos=high,
                low_price_nanos=low, close_price_nanos=v.price(f[4], "Close"),
                volume_nanos=volume, vwap_price_nanos=UNDEF_PRICE, trade_count=count,
                buy_volume_nanos=0, sell_volume_nanos=0, flags=0, revision=0)
