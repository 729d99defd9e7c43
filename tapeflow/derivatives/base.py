"""The decoder base of the derivatives streams and the readers of their values.

A derivatives decoder is a :class:`~tapeflow.venues.decoder.VenueDecoder` (the one frame loop: a bad
frame is one ``rejected`` row with a :class:`~tapeflow.wire.rejects.Reason`, never a traceback) that
writes the records of :mod:`tapeflow.schemas.derivatives` instead of books and trades.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from tapeflow.errors import BadInput, BadNumber
from tapeflow.schemas.derivatives import (
    FUNDING_RATE,
    INDEX_PRICE,
    INSURANCE_FUND,
    LIQUIDATION,
    MARK_PRICE,
    OPEN_INTEREST,
)
from tapeflow.schemas.records import ASK, BID, UNDEF_PRICE, UNDEF_TS
from tapeflow.venues.columns import Columns
from tapeflow.venues.decoder import VenueDecoder
from tapeflow.venues.fields import field
from tapeflow.wire.capture import CaptureLine, Decoded
from tapeflow.wire.numbers import I64_MAX, ms_to_ns, to_nanos
from tapeflow.wire.rejects import Reason

NAN = math.nan
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_WIDE = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$")


class DerivativesDecoder(VenueDecoder):
    """Frames in, chunks of the derivatives records (and ``rejected``) out.

    Every frame ends as rows, a dead letter, or a quiet frame (a subscription answer, a ticker
    update that carries no derivatives field): ``every_frame_accounted``.
    """

    every_frame_accounted = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.funding = Columns(FUNDING_RATE)
        self.marks = Columns(MARK_PRICE)
        self.indexes = Columns(INDEX_PRICE)
        self.open_interest = Columns(OPEN_INTEREST)
        self.liquidations = Columns(LIQUIDATION)
        self.insurance = Columns(INSURANCE_FUND)
        self._outputs = (
            self.funding,
            self.marks,
            self.indexes,
            self.open_interest,
            self.liquidations,
            self.insurance,
        )

    @property
    def rows(self) -> int:
        """Rows buffered since the last chunk."""
        return sum(len(c) for c in self._outputs) + len(self.rejects)

    def chunk(self, bytes_read: int, source: str) -> Decoded:
        """Hand over the buffered rows (empty tables left out); the buffers start again."""
        tables = {c.record.name: c.drain() for c in self._outputs}
        tables["rejected"] = self.rejects.drain()
        return Decoded({k: t for k, t in tables.items() if t.num_rows}, bytes_read, source)

    def finish(self) -> None:
        """End of input: nothing is held back (no book waits for a snapshot)."""

    # -- rows ------------------------------------------------------------------------------

    def add_funding(
        self,
        line: CaptureLine,
        symbol: str,
        ts_ns: int,
        rate: float,
        funding_time_ns: int,
        predicted: float = NAN,
        *,
        settled: bool = False,
    ) -> None:
        """One ``funding_rate`` row."""
        self.funding.append(
            ts_event_ns=ts_ns,
            ts_recv_ns=line.recv_ns,
            venue=self.venue,
            symbol=symbol,
            funding_rate=rate,
            funding_time_ns=funding_time_ns,
            predicted_rate=predicted,
            settled=int(settled),  # u8: Columns packs numpy bools as bytes, Arrow bools are bits
        )

    def add_mark(self, line: CaptureLine, symbol: str, ts_ns: int, price_nanos: int) -> None:
        """One ``mark_price`` row."""
        self.marks.append(
            ts_event_ns=ts_ns,
            ts_recv_ns=line.recv_ns,
            venue=self.venue,
            symbol=symbol,
            mark_price_nanos=price_nanos,
        )

    def add_index(self, line: CaptureLine, symbol: str, ts_ns: int, price_nanos: int) -> None:
        """One ``index_price`` row."""
        self.indexes.append(
            ts_event_ns=ts_ns,
            ts_recv_ns=line.recv_ns,
            venue=self.venue,
            symbol=symbol,
            index_price_nanos=price_nanos,
        )

    def add_open_interest(
        self, line: CaptureLine, symbol: str, ts_ns: int, oi_nanos: int, value_nanos: int = UNDEF_PRICE
    ) -> None:
        """One ``open_interest`` row."""
        self.open_interest.append(
            ts_event_ns=ts_ns,
            ts_recv_ns=line.recv_ns,
            venue=self.venue,
            symbol=symbol,
            open_interest_nanos=oi_nanos,
            open_interest_value_nanos=value_nanos,
        )

    def add_liquidation(
        self,
        line: CaptureLine,
        symbol: str,
        ts_ns: int,
        side: int,
        price_nanos: int,
        size_nanos: int,
        liquidation_id: str = "",
    ) -> None:
        """One ``liquidation`` row."""
        self.liquidations.append(
            ts_event_ns=ts_ns,
            ts_recv_ns=line.recv_ns,
            venue=self.venue,
            symbol=symbol,
            liquidation_id=liquidation_id,
            side=side,
            price_nanos=price_nanos,
            size_nanos=size_nanos,
        )

    def add_insurance(
        self, line: CaptureLine, symbol: str, ts_ns: int, asset: str, balance_nanos: int
    ) -> None:
        """One ``insurance_fund`` row (``balance_nanos`` from :func:`balance`: it may pass int64)."""
        self.insurance.append(
            ts_event_ns=ts_ns,
            ts_recv_ns=line.recv_ns,
            venue=self.venue,
            symbol=symbol,
            asset=asset,
            balance_nanos=balance_nanos,
        )


# -- values --------------------------------------------------------------------------------


def present(container: Any, key: str) -> bool:
    """Whether ``container`` carries ``key`` with a value (not absent, null or the empty string)."""
    value = container.get(key) if type(container) is dict else None
    return value is not None and value != ""


def quantity(container: Any, key: str) -> int:
    """An exact non-negative decimal (a size, an open interest, a traded price) as nanos.

    Raises:
        BadInput: ``missing_field``, ``bad_number``, ``negative`` or ``out_of_range``.
    """
    value = field(container, key)
    try:
        return to_nanos(value)
    except BadNumber as exc:
        raise BadNumber(exc.reason, value, key) from None


def balance(container: Any, key: str) -> int:
    """An exact non-negative decimal (a fund's balance) as nanos of up to 38 digits: the range of the
    ``insurance_fund`` column (``dec38``), past int64 (Bybit's shared USDT pool, 1.01e10 units).

    Raises:
        BadInput: ``missing_field``, ``bad_number`` (not a decimal, or digits below the nano),
            ``negative`` or ``out_of_range`` (38 digits of nanos or more).
    """
    value = field(container, key)
    if type(value) is int:
        value = str(value)
    m = _WIDE.match(value) if type(value) is str else None
    if m is None or not (m.group(2) or m.group(3)):
        raise BadNumber(Reason.BAD_NUMBER, value, key)
    whole, frac, exp = m.group(2) or "", m.group(3) or "", m.group(4) or "0"
    digits = (whole + frac).lstrip("0")
    if not digits:
        return 0
    if m.group(1) == "-":
        raise BadNumber(Reason.NEGATIVE, value, key)
    if len(exp.lstrip("+-").lstrip("0")) > 3:  # 10**1000 and beyond: never computed
        raise BadNumber(Reason.BAD_NUMBER if exp.startswith("-") else Reason.OUT_OF_RANGE, value, key)
    shift = 9 - len(frac) + int(exp)  # value = int(digits) * 10**shift nanos
    if len(digits) + shift > 38:
        raise BadNumber(Reason.OUT_OF_RANGE, value, key)
    if shift >= 0:
        return int(digits) * 10**shift
    head, tail = digits[:shift], digits[shift:]
    if tail.strip("0"):
        raise BadNumber(Reason.BAD_NUMBER, value, key)
    return int(head or "0")


def computed_price(container: Any, key: str, *, signed: bool = False) -> int:
    """A price the venue computes (a mark, an index) as nanos: exact when it has at most 9
    decimals; a model value with more (OKX option marks carry 16) is rounded half-even to the nano,
    which is below every venue's tick, rather than dead-lettering every row of the stream.

    Args:
        signed: the price may be below zero (the mark of a spread instrument).

    Raises:
        BadInput: ``missing_field``, ``bad_number``, ``negative`` or ``out_of_range``.
    """
    value = field(container, key)
    try:
        return to_nanos(value, allow_negative=signed)
    except BadNumber as exc:
        if exc.reason != Reason.BAD_NUMBER or type(value) is not str or not _DECIMAL.match(value):
            raise BadNumber(exc.reason, value, key) from None
    try:
        nanos = int((Decimal(value) * 1_000_000_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    except InvalidOperation:  # more digits than the decimal context holds
        raise BadNumber(Reason.OUT_OF_RANGE, value, key) from None
    if abs(nanos) > I64_MAX:
        raise BadNumber(Reason.OUT_OF_RANGE, value, key)
    if nanos < 0 and not signed:
        raise BadNumber(Reason.NEGATIVE, value, key)
    return nanos


def rate(container: Any, key: str) -> float:
    """A funding rate: the closest double to the venue's decimal; NaN when absent, null or ''.

    Raises:
        BadInput: ``bad_number`` for anything but a finite decimal (a JSON number or its text).
    """
    value = container.get(key) if type(container) is dict else None
    if value is None or value == "":
        return NAN
    if type(value) is int:
        value = str(value)
    if type(value) is not str or not _DECIMAL.match(value):
        raise BadNumber(Reason.BAD_NUMBER, value, key)
    number = float(value)
    if not math.isfinite(number):  # "1e999": a decimal no double holds
        raise BadNumber(Reason.OUT_OF_RANGE, value, key)
    return number


def time_ms(container: Any, key: str) -> int:
    """A venue time in ms (a JSON integer or digit string) as ns.

    Raises:
        BadInput: ``missing_field``, ``bad_timestamp`` (not a count of ms) or ``out_of_range``.
    """
    value = field(container, key)
    ns = ms_to_ns(value, UNDEF_TS)
    if ns == UNDEF_TS or ns < 0:
        raise BadInput(Reason.BAD_TIMESTAMP, f"{key} was {value!r}, not a time in ms")
    return ns


def iso_ns(value: Any, key: str, *, fallback_ns: int | None = None) -> int:
    """An ISO-8601 UTC time (``2019-08-01T04:00:00.000Z``, up to 9 decimals) as ns.

    Args:
        fallback_ns: returned when the value is absent or null (None: the field is required).

    Raises:
        BadInput: ``missing_field`` or ``bad_timestamp`` (not that shape, not a calendar time, or
            beyond int64 ns: after 2262 no column holds it).
    """
    if value is None and fallback_ns is not None:
        return fallback_ns
    if value is None:
        raise BadInput(Reason.MISSING_FIELD, f"no {key!r} field")
    m = _ISO.match(value) if type(value) is str else None
    try:
        ns = None if m is None else _epoch_s(m.group(1)) * 10**9 + int((m.group(2) or "").ljust(9, "0"))
    except ValueError:  # month 13, day 32, ...
        ns = None
    if ns is None or not -I64_MAX <= ns <= I64_MAX:
        raise BadInput(Reason.BAD_TIMESTAMP, f"{key} was {value!r}")
    return ns


@lru_cache(maxsize=4096)
def _epoch_s(whole: str) -> int:
    return int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())


def optional_time_ms(container: Any, key: str) -> int:
    """:func:`time_ms` of an optional field: -1 when absent, null, '' or 0 (no funding time)."""
    if not present(container, key) or container[key] in (0, "0"):
        return UNDEF_TS
    return time_ms(container, key)


def order_side(value: Any, what: str) -> int:
    """``BID`` for a buy order, ``ASK`` for a sell (``BUY``/``Buy``/``buy``...).

    Raises:
        BadInput: ``missing_field`` or ``bad_side``.
    """
    if value is None or value == "":
        raise BadInput(Reason.MISSING_FIELD, f"{what} is missing")
    side = str(value).lower()
    if side == "buy":
        return BID
    if side == "sell":
        return ASK
    raise BadInput(Reason.BAD_SIDE, f"{what} was {value!r}, neither buy nor sell")


def opposite(side: int) -> int:
    """The other side (a venue that names the liquidated position, not the order that closes it)."""
    return ASK if side == BID else BID
