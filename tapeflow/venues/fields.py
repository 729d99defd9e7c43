"""Reading one JSON frame: parse with exact decimals, then fields, integers, decimals and levels.

Every helper raises :class:`~tapeflow.errors.BadInput` (or its :class:`~tapeflow.errors.BadNumber`)
with a :class:`~tapeflow.wire.rejects.Reason`, so the same damage gets the same reason on every
venue: a frame cut short is ``truncated``, one that is not JSON ``bad_json``, NaN or Infinity
``bad_number``; a value of the wrong JSON type where structure belongs is ``bad_shape``, where a
number belongs ``bad_number``; an absent (or null) field is ``missing_field``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from tapeflow.errors import BadInput, BadNumber
from tapeflow.wire.numbers import NANOS_CACHE, nanos
from tapeflow.wire.rejects import Reason

# JSON numbers with a fraction or an exponent come back as their text, exactly as sent (nanos()
# parses it); integers as Python ints of any size.
_DECODER = msgspec.json.Decoder(float_hook=str)
_ERROR_AT = re.compile(r"\(byte (\d+)\)")
_NON_FINITE = (b"NaN", b"Infinity", b"-Infinity", b"-NaN")


def load_json(payload: bytes | str) -> Any:
    """Parse one frame, keeping every decimal exact.

    Raises:
        BadInput: ``truncated`` (an object or array that never closes), ``bad_number`` (NaN,
            Infinity) or ``bad_json``.
    """
    try:
        return _DECODER.decode(payload)
    except msgspec.DecodeError as exc:
        raise json_error(payload if isinstance(payload, bytes) else payload.encode(), exc) from None


def json_error(payload: bytes, exc: Exception) -> BadInput:
    """The reject of a frame the JSON parser refused (see :func:`load_json`)."""
    body = payload.strip()
    opened = body[:1] in (b"{", b"[")
    closed = body[-1:] == {b"{": b"}", b"[": b"]"}.get(body[:1], b"")
    if opened and not closed:
        return BadInput(Reason.TRUNCATED, f"frame of {len(payload)} bytes ends before its closing bracket")
    at = _ERROR_AT.search(str(exc))
    if at is not None:
        pos = int(at.group(1))
        window = payload[max(0, pos - 1):pos + 9].lstrip(b"-:, ")
        if window.startswith(_NON_FINITE) or payload[pos:pos + 9].startswith(_NON_FINITE):
            return BadNumber(Reason.BAD_NUMBER, payload[pos:pos + 9].decode("ascii", "replace"),
                             f"a non-finite number at byte {pos}")
    return BadInput(Reason.BAD_JSON, f"{exc}")


def field(obj: Any, key: str | int) -> Any:
    """``obj[key]``.

    Raises:
        BadInput: ``bad_shape`` when ``obj`` is no object (or list, for an int key),
            ``missing_field`` when the key is absent or its value null.
    """
    try:
        value = obj[key]
    except KeyError:
        raise BadInput(Reason.MISSING_FIELD, f"no {key!r} field") from None
    except IndexError:
        raise BadInput(Reason.MISSING_FIELD, f"no entry {key} in {obj!r}") from None
    except TypeError:
        raise BadInput(Reason.BAD_SHAPE, f"{obj!r} is no object with a {key!r} field") from None
    if value is None:
        raise BadInput(Reason.MISSING_FIELD, f"{key!r} is null")
    return value


def obj(value: Any, what: str) -> dict[str, Any]:
    """``value`` when it is a JSON object.

    Raises:
        BadInput: ``missing_field`` (null) or ``bad_shape`` (another JSON type).
    """
    if type(value) is dict:
        return value
    if value is None:
        raise BadInput(Reason.MISSING_FIELD, f"{what} is null")
    raise BadInput(Reason.BAD_SHAPE, f"{what} was {value!r}, not an object")


def array(value: Any, what: str) -> list[Any]:
    """``value`` when it is a JSON array.

    Raises:
        BadInput: ``missing_field`` (null) or ``bad_shape`` (another JSON type).
    """
    if type(value) is list:
        return value
    if value is None:
        raise BadInput(Reason.MISSING_FIELD, f"{what} is null")
    raise BadInput(Reason.BAD_SHAPE, f"{what} was {value!r}, not a list")


def integer(container: Any, key: str | int) -> int:
    """``container[key]`` as an int (a JSON integer or a string of ASCII digits).

    Raises:
        BadInput: ``missing_field``, ``bad_shape`` (no container), ``bad_number`` or
            ``out_of_range`` (beyond int64: ids and sequences are stored as int64).
    """
    value = field(container, key)
    if type(value) is str and value.isascii() and value.isdigit():
        if len(value.lstrip("0")) > 19:  # before int(): it refuses more than 4,300 digits
            raise BadNumber(Reason.OUT_OF_RANGE, value[:40], f"{key} has {len(value):,} digits, beyond int64")
        value = int(value)
    elif type(value) is not int:
        raise BadNumber(Reason.BAD_NUMBER, value, f"{key} (not an integer)")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise BadNumber(Reason.OUT_OF_RANGE, value, f"{key} beyond int64")
    return value


def sequence_or_none(value: Any, what: str) -> int:
    """An optional id or sequence (a JSON integer or a string of ASCII digits) as int64; -1 when it
    is absent or not an integer (the row keeps its text elsewhere).

    Raises:
        BadInput: ``out_of_range`` when it is an integer beyond int64 (stored as int64, it would
            abort the whole chunk).
    """
    if type(value) is str and value.isascii() and value.isdigit():
        if len(value.lstrip("0")) > 19:
            raise BadNumber(Reason.OUT_OF_RANGE, value[:40],
                            f"{what} has {len(value):,} digits, beyond int64")
        value = int(value)
    if type(value) is not int:
        return -1
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise BadNumber(Reason.OUT_OF_RANGE, value, f"{what} beyond int64")
    return value


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def decimal(container: Any, key: str, what: str | None = None) -> int:
    """``container[key]`` as exact non-negative nanos (see :func:`tapeflow.wire.numbers.nanos`).

    Raises:
        BadInput: ``missing_field``, ``bad_shape``, ``bad_number``, ``negative`` or ``out_of_range``.
    """
    return nanos(field(container, key), what or key)


def text(container: Any, key: str) -> str:
    """``container[key]`` as a non-empty string.

    Raises:
        BadInput: ``missing_field`` (absent, null or empty) or ``bad_field`` (not a string).
    """
    value = field(container, key)
    if type(value) is not str:
        raise BadInput(Reason.BAD_FIELD, f"{key} was {value!r}, not a string")
    if not value:
        raise BadInput(Reason.MISSING_FIELD, f"{key} is empty")
    return value


def levels(rows: Any, what: str) -> tuple[list[int], list[int]]:
    """``[[price, size, ...], ...]`` -> (prices, sizes) in exact nanos.

    Raises:
        BadInput: ``bad_shape`` for rows that are not a list of lists of at least two entries,
            the number reasons naming the side and the row.
    """
    rows = array(rows, what)
    if all(type(r) is list for r in rows):
        # Prices and sizes repeat across a capture: most levels are two dictionary hits.
        try:
            return [NANOS_CACHE[r[0]] for r in rows], [NANOS_CACHE[r[1]] for r in rows]
        except (KeyError, IndexError, TypeError):
            pass
    prices: list[int] = []
    sizes: list[int] = []
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) < 2:
            raise BadInput(Reason.BAD_SHAPE, f"{what}[{i}] was {row!r}, not [price, size]")
        prices.append(nanos(row[0], f"{what}[{i}] price"))
        sizes.append(nanos(row[1], f"{what}[{i}] size"))
    return prices, sizes
