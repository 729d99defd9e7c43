"""Bybit's retired v2 ``instrument_info.100ms.<symbol>`` stream (captures of 2019-2022).

Values come scaled: ``*_e4`` prices (1e-4 units), ``*_e6`` rates, ``*_e8`` open interest, as JSON
integers or digit strings, beside (in later captures) the same value as decimal text; snake_case
until 2022, camelCase after (``markPriceE4``). A snapshot's ``data`` is the instrument; a delta's
``data.update`` lists changed fields only, and the decoder keeps each symbol's values as for v5.
``next_funding_time`` of ``1970-01-01T00:00:00Z`` means none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tapeflow.derivatives.base import computed_price, iso_ns, present, quantity
from tapeflow.errors import BadInput, BadNumber
from tapeflow.schemas.records import UNDEF_PRICE, UNDEF_TS
from tapeflow.venues.fields import array, field, obj
from tapeflow.wire.capture import CaptureLine
from tapeflow.wire.numbers import I64_MAX
from tapeflow.wire.rejects import Reason

if TYPE_CHECKING:
    from tapeflow.derivatives.bybit import BybitDerivatives

# value -> (decimal text keys, scaled keys with their power of ten), snake_case then camelCase
_PRICES = {
    "mark": (("mark_price", "markPrice"), (("mark_price_e4", "markPriceE4"), 4)),
    "index": (("index_price", "indexPrice"), (("index_price_e4", "indexPriceE4"), 4)),
}
_OI = (("open_interest", "openInterest"), (("open_interest_e8", "openInterestE8"), 8))
_RATES = {
    "rate": ("funding_rate_e6", "fundingRateE6"),
    "predicted": ("predicted_funding_rate_e6", "predictedFundingRateE6"),
}
_NEXT = ("next_funding_time", "nextFundingTime")
_KEYS = (
    frozenset(k for spec in (*_PRICES.values(), _OI) for k in (*spec[0], *spec[1][0]))
    | {k for keys in _RATES.values() for k in keys}
    | set(_NEXT)
)


def instrument_info(dec: BybitDerivatives, msg: dict[str, Any], line: CaptureLine) -> None:
    """One v2 ``instrument_info`` frame (snapshot or delta) into rows."""
    micros = msg.get("timestamp_e6", msg.get("timestampE6"))
    digits = type(micros) is str and micros.isascii() and micros.isdigit()
    if not (digits or (type(micros) is int and micros >= 0)):
        raise BadInput(Reason.BAD_TIMESTAMP, f"timestamp_e6 was {micros!r}")
    ts = int(str(micros)[:20]) * 1000
    if ts > I64_MAX:  # after 2262: no int64 column holds it
        raise BadNumber(Reason.OUT_OF_RANGE, micros, "timestamp_e6")
    data = obj(field(msg, "data"), "data")
    if msg.get("type") == "snapshot":
        rows, snapshot = [data], True
    else:
        rows, snapshot = [obj(r, "update") for r in array(data.get("update", []), "update")], False
        if not rows:
            dec.quiet("instrument_info delta without updates")
            return
    for row in rows:
        symbol = dec.frame_symbol = dec.check_symbol(row.get("symbol"))
        given = {k: row[k] for k in _KEYS if k in row}
        state = dec.legacy.get(symbol)
        new = given if snapshot or state is None else {**state, **given}
        dec.legacy[symbol] = new
        _rows(dec, symbol, given, new, ts, line)


def _rows(
    dec: BybitDerivatives,
    symbol: str,
    given: dict[str, Any],
    state: dict[str, Any],
    ts: int,
    line: CaptureLine,
) -> None:
    prices = {name: _scaled(given, *spec) for name, spec in _PRICES.items()}
    oi = _scaled(given, *_OI, price=False)
    funding = None
    if any(k in given for keys in _RATES.values() for k in keys) or any(k in given for k in _NEXT):
        rate, predicted = (_rate(state, keys) for keys in _RATES.values())
        when = _next_funding(state)
        if rate == rate or predicted == predicted or when != UNDEF_TS:
            funding = (rate, when, predicted)
    wrote = False
    if prices["mark"] is not None:
        dec.add_mark(line, symbol, ts, prices["mark"])
        wrote = True
    if prices["index"] is not None:
        dec.add_index(line, symbol, ts, prices["index"])
        wrote = True
    if oi is not None:
        dec.add_open_interest(line, symbol, ts, oi, UNDEF_PRICE)
        wrote = True
    if funding is not None:
        dec.add_funding(line, symbol, ts, funding[0], funding[1], funding[2])
        wrote = True
    if not wrote:
        dec.quiet("instrument_info without derivatives fields")


def _scaled(
    row: dict[str, Any], texts: tuple[str, ...], scaled: tuple[tuple[str, ...], int], *, price: bool = True
) -> int | None:
    """The decimal text where given, else the scaled integer, as nanos; None when neither is."""
    for key in texts:
        if present(row, key):
            return computed_price(row, key) if price else quantity(row, key)
    keys, power = scaled
    for key in keys:
        if present(row, key):
            return _scaled_integer(row[key], key, power)
    return None


def _scaled_integer(value: Any, key: str, power: int) -> int:
    """An integer in units of 10**-power (a JSON integer or digit string) as nanos."""
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if type(value) is not int:
        raise BadNumber(Reason.BAD_NUMBER, value, key)
    if value < 0:
        raise BadNumber(Reason.NEGATIVE, value, key)
    nanos = value * 10 ** (9 - power)
    if nanos > I64_MAX:
        raise BadNumber(Reason.OUT_OF_RANGE, value, key)
    return nanos


def _rate(row: dict[str, Any], keys: tuple[str, ...]) -> float:
    for key in keys:
        value = row.get(key)
        if value is None or value == "":
            continue
        if type(value) is str and value.lstrip("-").isdigit():
            value = int(value)
        if type(value) is not int:
            raise BadNumber(Reason.BAD_NUMBER, value, key)
        return float(f"{value}e-6")  # the double closest to the decimal, as a rate read from text
    return float("nan")


def _next_funding(row: dict[str, Any]) -> int:
    for key in _NEXT:
        value = row.get(key)
        if value is None or value == "":
            continue
        ns = iso_ns(value, key)
        return ns if ns > 0 else UNDEF_TS  # 1970-01-01T00:00:00Z: none
    return UNDEF_TS
