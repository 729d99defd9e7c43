"""Exact decimals: text as the venues send it -> int64 units of 1e-9 (``*_nanos``), never via float.

:func:`to_nanos` is the one exact parser (signs, exponents, any number of trailing zeros);
:func:`nanos` is what decoders call per value: a cached fast path for the plain
``digits[.digits]`` texts that make up nearly every price and size, falling back to
:func:`to_nanos` for everything else. Both raise :class:`~tapeflow.errors.BadNumber` with a
reason of :class:`~tapeflow.wire.rejects.Reason`.
"""

from __future__ import annotations

import re
from typing import Any

from tapeflow.errors import BadNumber
from tapeflow.wire.rejects import Reason

SCALE = 1_000_000_000  # units per 1.0: nanos
I64_MAX = 2**63 - 1
_DECIMAL = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$")
_MAX_WHOLE_DIGITS = 9  # 999_999_999.999999999 still fits int64 nanos; longer goes the slow way
# int64 nanos have at most 19 digits: a text needing more is out of range, and is told so before
# int() sees it (CPython refuses over 4,300 digits with a ValueError, and 10**exponent of a huge
# exponent never returns). An exponent of more than 18 digits is beyond any digits' reach.
_MAX_DIGITS = 19
_MAX_EXPONENT_DIGITS = 18
# decimal text -> nanos of every plain decimal seen (only valid, non-negative values get in)
NANOS_CACHE: dict[str, int] = {}  # read directly by per-level fast paths (tapeflow.venues.fields)
_CACHE_MAX = 1 << 20


def to_nanos(text: str | bytes | int, *, allow_negative: bool = False) -> int:
    """Parse a decimal string exactly into int64 units of 1e-9 (no float on the way).

    Accepts ``"123"``, ``"0.00100000"``, ``"1.5e-3"``; digits beyond the 9th decimal must be
    zeros.

    Raises:
        BadNumber: reason ``bad_number`` (NaN, Infinity, not a number, sub-nano precision),
            ``negative`` (below zero when not allowed) or ``out_of_range`` (beyond int64).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text * SCALE
    else:
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        if not isinstance(text, str):
            raise BadNumber(Reason.BAD_NUMBER, text)
        m = _DECIMAL.match(text.strip())
        if m is None or not (m.group(2) or m.group(3)):
            raise BadNumber(Reason.BAD_NUMBER, text)
        sign, whole, frac, exp_text = m.group(1), m.group(2) or "0", m.group(3) or "", m.group(4) or "0"
        digits = (whole + frac).lstrip("0") or "0"
        if digits == "0":
            return 0
        if len(exp_text.lstrip("+-").lstrip("0")) > _MAX_EXPONENT_DIGITS:  # sub-nano if negative
            raise BadNumber(Reason.BAD_NUMBER if exp_text.startswith("-") else Reason.OUT_OF_RANGE, text)
        shift = 9 - len(frac) + int(exp_text)  # value = int(digits) * 10**shift nanos
        if len(digits) + shift > _MAX_DIGITS:
            raise BadNumber(Reason.OUT_OF_RANGE, text)
        if shift >= 0:
            if shift > 19 and digits.strip("0"):
                # at least 10**20 nanos: out of range, said before 10**shift (an exponent like
                # "e0174059617" would take minutes) is computed
                raise BadNumber(Reason.OUT_OF_RANGE, text)
            value = int(digits) * 10**min(shift, 19)
        else:
            head, tail = digits[:shift], digits[shift:]
            if tail.strip("0"):
                raise BadNumber(Reason.BAD_NUMBER, text)
            value = int(head or "0")
        if sign == "-":
            value = -value
    if value > I64_MAX or value < -I64_MAX:
        raise BadNumber(Reason.OUT_OF_RANGE, text)
    if value < 0 and not allow_negative:
        raise BadNumber(Reason.NEGATIVE, text)
    return value


def nanos(text: Any, what: str = "value") -> int:
    """Exact 1e-9 units of a decimal string (or a JSON integer), non-negative.

    Args:
        text: the value as decoded from the frame.
        what: the field, named in the error ("bid price b").

    Raises:
        BadNumber: ``bad_number`` (not a decimal string or integer, NaN, sub-nano digits),
            ``negative`` or ``out_of_range``, its detail naming ``what``.
    """
    if type(text) is str:
        hit = NANOS_CACHE.get(text)
        if hit is not None:
            return hit
        whole, _, frac = text.partition(".")
        if (whole.isascii() and whole.isdigit() and len(whole) <= _MAX_WHOLE_DIGITS and len(frac) <= 9
                and (not frac or (frac.isascii() and frac.isdigit()))):
            value = int(whole) * SCALE + (int(frac.ljust(9, "0")) if frac else 0)
            if len(NANOS_CACHE) >= _CACHE_MAX:
                NANOS_CACHE.clear()
            NANOS_CACHE[text] = value
            return value
    elif type(text) is not int:
        raise BadNumber(Reason.BAD_NUMBER, text, what)
    try:
        return to_nanos(text)
    except BadNumber as exc:
        raise BadNumber(exc.reason, text, what) from None


def ms_to_ns(value: Any, fallback_ns: int) -> int:
    """Milliseconds (int or digit string) to ns; ``fallback_ns`` when absent or malformed.

    Raises:
        BadNumber: ``out_of_range``: a time whose ns do not fit int64 (after the year 2262): no
            table can hold it, and building the chunk's columns would fail for every row of it.
    """
    if type(value) is int:
        ms = value
    elif type(value) is str and value.isascii() and value.isdigit():
        if len(value) > _MAX_DIGITS:  # before int(), which refuses over 4,300 digits
            raise BadNumber(Reason.OUT_OF_RANGE, value, "time (ms)")
        ms = int(value)
    else:
        return fallback_ns
    ns = ms * 1_000_000
    if not -I64_MAX <= ns <= I64_MAX:
        raise BadNumber(Reason.OUT_OF_RANGE, value, "time (ms)")
    return ns
