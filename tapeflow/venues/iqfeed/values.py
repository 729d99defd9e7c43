"""Exact numbers and US Eastern times of IQFeed fields, each bad value a ``BadInput``.

IQFeed writes every time as Eastern wall-clock time (``2021-03-03 19:58:32.254017``, ``19:58:32``,
``03/30/2021``, ``20191018 12:49:55``); they become int64 ns UTC through the zone's offset at that
local hour, computed once per date and hour.
"""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo

from tapeflow.errors import BadInput, BadNumber
from tapeflow.schemas.records import ASK, BID, NO_SIDE, UNDEF_PRICE
from tapeflow.venues.iqfeed.messages import AGGRESSOR_BUY, AGGRESSOR_SELL, TIMEZONE
from tapeflow.wire.numbers import nanos
from tapeflow.wire.rejects import Reason

_NS = 1_000_000_000
ZONE = ZoneInfo(TIMEZONE)
SIDES = {"B": BID, "A": ASK}


def price(text: str, what: str) -> int:
    """An exact non-negative decimal in 1e-9 units (``2938.`` is 2938: IQFeed writes it so).

    Raises:
        BadInput: ``missing_field`` when empty; ``bad_number`` / ``negative`` / ``out_of_range``.
    """
    if not text:
        raise BadInput(Reason.MISSING_FIELD, f"{what} is empty")
    if text.endswith(".") and text[:-1].isdigit():
        text = text[:-1]
    try:
        return nanos(text, what)
    except BadNumber as exc:
        raise BadInput(exc.reason, f"{what} {text!r}: {exc.reason}") from None


def price_or_undef(text: str, what: str) -> int:
    """:func:`price`, or ``UNDEF_PRICE`` for an empty field (no bid, no ask)."""
    return UNDEF_PRICE if not text else price(text, what)


def size(text: str, what: str) -> int:
    """A quantity in 1e-9 units; an empty field is 0."""
    return 0 if not text else price(text, what)


def integer(text: str, what: str) -> int:
    """A non-negative integer of at most 19 digits.

    Raises:
        BadInput: ``missing_field`` when empty, ``bad_number`` when not digits, ``out_of_range``.
    """
    if not text:
        raise BadInput(Reason.MISSING_FIELD, f"{what} is empty")
    if not (text.isascii() and text.isdigit()):
        raise BadInput(Reason.BAD_NUMBER, f"{what} {text!r} is not an integer")
    value = int(text[:20])
    if len(text) > 19 or value >= 2**63:
        raise BadInput(Reason.OUT_OF_RANGE, f"{what} {text!r} is beyond int64")
    return value


def side(text: str, what: str = "Side") -> int:
    """``B`` bid or ``A`` ask.

    Raises:
        BadInput: ``bad_side`` for anything else.
    """
    code = SIDES.get(text)
    if code is None:
        raise BadInput(Reason.BAD_SIDE, f"{what} {text!r} is neither B nor A")
    return code


def aggressor(text: str) -> int:
    """Trade Aggressor ``1`` buy -> ``B``, ``2`` sell -> ``A``, anything else (0 invalid, 3 neither) ``N``."""
    return BID if text == AGGRESSOR_BUY else ASK if text == AGGRESSOR_SELL else NO_SIDE


def _digits(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise BadInput(Reason.BAD_TIMESTAMP, f"{what}: {text!r} is not digits")
    return int(text)


def parse_date(text: str, what: str = "date") -> dt.date:
    """``YYYY-MM-DD``, ``MM/DD/YYYY`` or ``YYYYMMDD``.

    Raises:
        BadInput: ``bad_timestamp``.
    """
    try:
        if len(text) == 10 and text[4] == "-" and text[7] == "-":
            return dt.date(_digits(text[:4], what), _digits(text[5:7], what), _digits(text[8:], what))
        if len(text) == 10 and text[2] == "/" and text[5] == "/":
            return dt.date(_digits(text[6:], what), _digits(text[:2], what), _digits(text[3:5], what))
        if len(text) == 8:
            return dt.date(_digits(text[:4], what), _digits(text[4:6], what), _digits(text[6:], what))
    except ValueError:
        pass
    raise BadInput(Reason.BAD_TIMESTAMP, f"{what} {text!r} is not a date")


def time_of_day_ns(text: str, what: str = "time") -> int:
    """``HH:MM:SS`` with up to 9 decimals, as ns after local midnight.

    Raises:
        BadInput: ``bad_timestamp``.
    """
    clock, _, frac = text.partition(".")
    parts = clock.split(":")
    if len(parts) != 3 or any(len(p) != 2 for p in parts) or len(frac) > 9 or ("." in text and not frac):
        raise BadInput(Reason.BAD_TIMESTAMP, f"{what} {text!r} is not HH:MM:SS[.ffffff]")
    h, m, s = (_digits(p, what) for p in parts)
    if h > 23 or m > 59 or s > 59:
        raise BadInput(Reason.BAD_TIMESTAMP, f"{what} {text!r} is not a time of day")
    sub = _digits(frac, what) * 10 ** (9 - len(frac)) if frac else 0
    return (h * 3600 + m * 60 + s) * _NS + sub


@functools.lru_cache(maxsize=4096)
def _local_hour_utc_ns(day: dt.date, hour: int) -> int:
    local = dt.datetime(day.year, day.month, day.day, hour, tzinfo=ZONE)
    return int(local.timestamp()) * _NS


def _in_range(ns: int, day: dt.date) -> int:
    if not -(2**63) < ns < 2**63:
        raise BadInput(Reason.BAD_TIMESTAMP, f"{day} is beyond int64 ns since 1970 (1677-2262)")
    return ns


def eastern_ns(day: dt.date, time_ns: int) -> int:
    """UTC ns of Eastern wall-clock ``time_ns`` after midnight of ``day``.

    Raises:
        BadInput: ``bad_timestamp`` beyond int64 ns.
    """
    hour, rest = divmod(time_ns, 3600 * _NS)
    return _in_range(_local_hour_utc_ns(day, hour) + rest, day)


def timestamp_ns(text: str, what: str = "Timestamp") -> int:
    """``YYYY-MM-DD HH:MM:SS[.ffffff]``, ``YYYYMMDD HH:MM:SS`` or a date alone, Eastern, to UTC ns.

    Raises:
        BadInput: ``bad_timestamp``.
    """
    day, _, clock = text.partition(" ")
    return eastern_ns(parse_date(day, what), time_of_day_ns(clock, what) if clock else 0)


def utc_day_ns(text: str, what: str = "Timestamp") -> int:
    """A date alone as UTC midnight ns: a vendor daily bar's session date, filed as tapeflow's ``1d``
    bars are (a US regular session lies inside its UTC day)."""
    day = parse_date(text, what)
    return _in_range((day - dt.date(1970, 1, 1)).days * 86_400 * _NS, day)


def eastern_date(utc_ns: int) -> dt.date:
    """The Eastern calendar date at ``utc_ns``."""
    return dt.datetime.fromtimestamp(utc_ns / _NS, ZONE).date()
