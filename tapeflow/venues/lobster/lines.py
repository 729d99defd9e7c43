"""The per-line rules of LOBSTER rows: what a message or orderbook line must be, and its reject.

These functions are the reference: the per-line decode (``decode(..., fast=False)``) reads every
line through them, and the block path (:mod:`tapeflow.venues.lobster.block`) reads every line its
compiled scan or its vectorized checks refuse through them, so each reject reason and detail is
written here once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from tapeflow.errors import BadInput, BadNumber
from tapeflow.schemas.records import SCALE
from tapeflow.venues.lobster import messages as m
from tapeflow.wire.numbers import I64_MAX, to_nanos
from tapeflow.wire.rejects import Reason

DAY_NS = 86_400 * 1_000_000_000
HOUR_NS = 3_600_000_000_000
_INT = re.compile(r"^-?\d+$")
_MAX_INT_CHARS = 20  # "-9223372036854775808"

Message = tuple[int, int, int, int, int, int]  # ts_ns (UTC), Type, OrderID, Size, Price, Direction


def wall_clock(day: date) -> tuple[int, np.ndarray]:
    """``(naive_epoch_ns, offsets_ns)``: a time ``t`` ns after local midnight of ``day`` is
    ``naive_epoch_ns + t - offsets_ns[t // HOUR_NS]`` ns UTC (the zone offset of each wall-clock
    hour, so a day of a daylight-saving change is right hour by hour)."""
    zone = ZoneInfo(m.TIMEZONE)
    midnight = datetime(day.year, day.month, day.day)
    naive_epoch_ns = int((midnight - datetime(1970, 1, 1)) / timedelta(microseconds=1)) * 1000
    offsets_ns = []
    for hour in range(25):
        wall = (midnight + timedelta(hours=hour)).replace(tzinfo=zone)
        offsets_ns.append(int(wall.utcoffset() / timedelta(microseconds=1)) * 1000)
    return naive_epoch_ns, np.array(offsets_ns, np.int64)


def wall_clock_to_utc(day: date) -> Callable[[int], int]:
    """seconds-after-local-midnight ns -> UTC ns (see :func:`wall_clock`)."""
    naive_epoch_ns, offsets = wall_clock(day)
    offsets_ns = offsets.tolist()

    def to_utc(seconds_ns: int) -> int:
        return naive_epoch_ns + seconds_ns - offsets_ns[seconds_ns // HOUR_NS]

    return to_utc


def _int(text: str, name: str) -> int:
    if not _INT.match(text):
        raise BadInput("bad_number", f"{name} was {text!r}, not an integer")
    if len(text) > _MAX_INT_CHARS:  # before int(): Python refuses more than 4,300 digits
        raise BadInput(Reason.OUT_OF_RANGE, f"{name} has {len(text):,} characters, beyond int64")
    return int(text)


def parse_message(raw: bytes, to_utc: Callable[[int], int]) -> Message:
    """One message line -> ``(ts_ns UTC, Type, OrderID, Size, Price, Direction)``.

    Raises:
        BadInput: the line's reject (``truncated``, ``bad_format``, ``bad_number``,
            ``out_of_range``, ``unknown_message``, ``negative``).
    """
    fields = raw.decode("ascii", "replace").strip().split(",")
    if len(fields) != len(m.MESSAGE_FIELDS):
        reason = "truncated" if len(fields) < len(m.MESSAGE_FIELDS) else "bad_format"
        raise BadInput(reason, f"{len(fields)} fields, LOBSTER messages have {len(m.MESSAGE_FIELDS)} "
                               f"({','.join(m.MESSAGE_FIELDS)})")
    time_text, *rest = fields
    try:
        seconds_ns = to_nanos(time_text)
    except BadNumber as exc:
        raise BadInput(exc.reason, f"Time was {time_text!r}") from None
    if seconds_ns >= DAY_NS:
        raise BadInput("out_of_range", f"Time was {time_text!r}, beyond one day after midnight")
    kind, order_id, size, price, direction = (_int(t, n) for t, n in zip(rest, m.MESSAGE_FIELDS[1:],
                                                                          strict=True))
    if kind not in m.MESSAGE_TYPES:
        raise BadInput("unknown_message", f"Type was {kind}; LOBSTER types are 1..7")
    if order_id < 0:
        raise BadInput("negative", f"OrderID was {order_id}")
    if order_id > I64_MAX:
        raise BadInput("out_of_range", f"OrderID was {order_id}, beyond int64")
    if kind == m.TRADING_HALT:
        if price not in m.HALT_CODES:
            raise BadInput("out_of_range", f"Price was {price} on a halt message (expected -1, 0 or 1)")
        # a halt changes no order: its Size and Direction mean nothing (any integer is let through)
        return to_utc(seconds_ns), kind, order_id, 0, price, 0
    for name, value in (("Size", size), ("Price", price)):
        if value < 0:
            raise BadInput("negative", f"{name} was {value}")
        if value == 0:
            raise BadInput("out_of_range", f"{name} was 0 on a type {kind} message")
    if direction not in (m.BUY, m.SELL):
        raise BadInput("out_of_range", f"Direction was {direction} (expected 1 or -1)")
    if price * m.PRICE_UNIT_NANOS > I64_MAX or size * SCALE > I64_MAX:
        raise BadInput("out_of_range", f"Price {price} or Size {size} does not fit int64 nanos")
    return to_utc(seconds_ns), kind, order_id, size, price, direction


def parse_book(raw: bytes, levels: int) -> list[int]:
    """One orderbook line -> its ``4 * levels`` integers (AskPrice_1, AskSize_1, BidPrice_1, ...).

    Raises:
        BadInput: the line's reject (``truncated``, ``bad_format``, ``bad_number``, ``negative``,
            ``out_of_range``).
    """
    fields = raw.decode("ascii", "replace").strip().split(",")
    want = 4 * levels
    if len(fields) != want:
        reason = "truncated" if len(fields) < want else "bad_format"
        raise BadInput(reason, f"{len(fields)} fields, a {levels}-level LOBSTER orderbook row has {want}")
    names = [f"{m.ORDERBOOK_FIELDS_PER_LEVEL[j % 4]}_{j // 4 + 1}" for j in range(want)]
    values = [_int(t, name) for t, name in zip(fields, names, strict=True)]
    for j in range(0, want, 2):
        price, size, name = values[j], values[j + 1], names[j]
        if size < 0:
            raise BadInput("negative", f"{names[j + 1]} was {size}")
        if size * SCALE > I64_MAX:
            raise BadInput("out_of_range", f"{names[j + 1]} was {size}, beyond int64 nanos")
        if price in (m.EMPTY_ASK_PRICE, m.EMPTY_BID_PRICE):
            if size != 0:
                raise BadInput("out_of_range", f"{name} was the empty-level price {price}, size {size}")
        elif price <= 0:
            raise BadInput("negative" if price < 0 else "out_of_range", f"{name} was {price}")
        elif price * m.PRICE_UNIT_NANOS > I64_MAX:
            raise BadInput("out_of_range", f"{name} was {price}, beyond int64 nanos")
    return values


def unpaired(has_message_file: bool) -> BadInput:
    """The reject of an orderbook row with no message row (its time comes from that row)."""
    where = "the message file ends before it" if has_message_file else "no message file was given"
    return BadInput(Reason.UNPAIRED, f"orderbook row without a message row ({where}): no time for a snapshot")
