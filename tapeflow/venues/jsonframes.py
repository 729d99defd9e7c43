"""Helpers for decoders of JSON websocket/REST frames: parse, exact numbers, typed field access.

Every helper raises :class:`BadFrame` (a reason code plus a detail naming the offending value);
decoders turn it into one ``rejected`` row, so a bad frame never crashes a decode.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from tapeflow.venues.base import BadNumber, Rejects, to_nanos
from tapeflow.venues.capture import CaptureLine, read_capture

_SCALE = 1_000_000_000
_MAX_WHOLE_DIGITS = 9  # 999_999_999.999999999 still fits int64 nanos; longer goes the slow way


class BadFrame(ValueError):
    """A frame that cannot be normalized: ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def load_json(payload: bytes) -> Any:
    """Parse one frame with orjson.

    Raises:
        BadFrame: ``truncated`` (an object or array that never closes) or ``bad_json``.
    """
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _json_error(payload, exc) from None


def _reject_constant(name: str) -> Any:
    raise BadFrame("bad_number", f"non-finite number {name}")


def load_json_exact(payload: bytes) -> Any:
    """Parse a frame whose numbers are JSON numbers (not strings), keeping decimals exact.

    Fractional numbers come back as their decimal text (for :func:`nanos`), never as floats;
    NaN and Infinity are refused.

    Raises:
        BadFrame: ``truncated``, ``bad_json`` or ``bad_number``.
    """
    try:
        return json.loads(payload, parse_float=str, parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _json_error(payload, exc) from None


def _json_error(payload: bytes, exc: Exception) -> BadFrame:
    body = payload.strip()
    opened = body[:1] in (b"{", b"[")
    closed = body[-1:] == {b"{": b"}", b"[": b"]"}.get(body[:1], b"")
    if opened and not closed:
        return BadFrame("truncated", f"frame of {len(payload)} bytes ends before its closing bracket")
    return BadFrame("bad_json", f"{exc}")


def nanos(text: Any, what: str = "value") -> int:
    """Exact 1e-9 units of a decimal string (or JSON integer); a fast path for plain decimals.

    Raises:
        BadFrame: reason ``bad_number``, ``negative`` or ``out_of_range`` naming ``what``.
    """
    if type(text) is str:
        whole, _, frac = text.partition(".")
        if (whole.isascii() and whole.isdigit() and len(whole) <= _MAX_WHOLE_DIGITS and len(frac) <= 9
                and (not frac or (frac.isascii() and frac.isdigit()))):
            return int(whole) * _SCALE + (int(frac.ljust(9, "0")) if frac else 0)
    elif type(text) is not int:
        raise BadFrame("bad_number", f"{what} was {text!r}, not a decimal string")
    try:
        return to_nanos(text)
    except BadNumber as exc:
        raise BadFrame(exc.reason, f"{what} was {text!r}") from None


def integer(obj: Mapping[str, Any], key: str) -> int:
    """``obj[key]`` as an int (JSON integer or a string of digits).

    Raises:
        BadFrame: ``missing_field`` or ``bad_number``.
    """
    try:
        value = obj[key]
    except KeyError:
        raise BadFrame("missing_field", f"no {key!r} field") from None
    if type(value) is int:
        return value
    if type(value) is str and value.isascii() and value.isdigit():
        return int(value)
    raise BadFrame("bad_number", f"{key} was {value!r}, not an integer")


def field(obj: Any, key: str) -> Any:
    """``obj[key]``, or ``missing_field`` when obj is not an object or lacks the key."""
    try:
        return obj[key]
    except (KeyError, TypeError, IndexError):
        raise BadFrame("missing_field", f"no {key!r} field") from None


def levels(rows: Any, what: str) -> tuple[list[int], list[int]]:
    """``[[price, size, ...], ...]`` -> (prices, sizes) in 1e-9 units.

    Raises:
        BadFrame: ``bad_level`` for a row that is not a list of at least two entries, or the
            number reason naming the side and the row.
    """
    if not isinstance(rows, list):
        raise BadFrame("bad_level", f"{what} was {rows!r}, not a list of levels")
    prices: list[int] = []
    sizes: list[int] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < 2:
            raise BadFrame("bad_level", f"{what}[{i}] was {row!r}, not [price, size]")
        prices.append(nanos(row[0], f"{what}[{i}] price"))
        sizes.append(nanos(row[1], f"{what}[{i}] size"))
    return prices, sizes


def ms_to_ns(value: Any, fallback_ns: int) -> int:
    """Milliseconds (int or digit string) to ns; ``fallback_ns`` when absent or malformed."""
    if type(value) is int:
        return value * 1_000_000
    if type(value) is str and value.isdigit():
        return int(value) * 1_000_000
    return fallback_ns


class DrainableRejects(Rejects):
    """``Rejects`` that hands its rows over per chunk and starts again (streaming decoders)."""

    def drain(self) -> pa.Table:
        """The rows so far; the builder is empty afterwards."""
        t = self.table()
        self.__init__(self.venue)  # type: ignore[misc]
        return t



def merged_captures(paths: Sequence[Path], rejects: Rejects) -> Iterator[tuple[int, CaptureLine]]:
    """Frames of several capture files merged by capture time: ``(file index, line)``.

    A websocket capture and the REST capture taken beside it interleave as they were received;
    each file keeps its own order, and ties go to the earlier path.
    """
    streams = [((i, line) for line in read_capture(Path(p), rejects)) for i, p in enumerate(paths)]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda item: item[1].recv_ns)
