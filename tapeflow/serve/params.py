"""Query parameters of the read API: each parser names the parameter in the error it raises.

A bad parameter is a :class:`ParamError` (a :class:`~tapeflow.errors.TapeflowError`), which the app
answers with ``400 {"error": ..., "parameter": NAME}``: never a 5xx.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from tapeflow.errors import TapeflowError

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
FORMATS = ("json", "arrow", "parquet", "csv")
# Days to nanoseconds is exact in int64 up to year 2262; these bounds keep every computed range valid.
MIN_NS, MAX_NS = 0, 9_000_000_000_000_000_000


class ParamError(TapeflowError):
    """A request parameter is missing or malformed.

    Attributes:
        parameter: the parameter's name as the client spelled it in the URL.
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: the first row with ``ts_event_ns >= ts_ns``, after skipping
    ``skip`` rows stamped exactly ``ts_ns`` (rows sharing a timestamp split across pages)."""

    ts_ns: int
    skip: int

    def token(self) -> str:
        return f"{self.ts_ns}_{self.skip}"


def text(query: Mapping[str, str], name: str, *, required: bool = False, max_chars: int = 200) -> str | None:
    value = query.get(name)
    if value is None:
        if required:
            raise ParamError(name, "is required")
        return None
    if value == "":
        raise ParamError(name, "is empty (leave the parameter out instead)")
    if len(value) > max_chars or any(ord(c) < 32 for c in value):
        raise ParamError(name, f"must be at most {max_chars} printable characters")
    return value


def time_ns(query: Mapping[str, str], name: str) -> int | None:
    """A time as integer ns since the epoch or an ISO-8601 date/time (UTC unless it says otherwise)."""
    value = text(query, name, max_chars=64)
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        ns = int(value)
    else:
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ParamError(
                name, f"{value!r} is neither integer ns since the epoch nor an ISO-8601 time"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    if not MIN_NS <= ns <= MAX_NS:
        raise ParamError(name, f"{value} is outside [{MIN_NS}, {MAX_NS}] ns")
    return ns


def time_range(query: Mapping[str, str]) -> tuple[int, int]:
    """``start``/``end`` (half-open ``[start, end)``); either may be left out."""
    start = time_ns(query, "start")
    end = time_ns(query, "end")
    start = MIN_NS if start is None else start
    end = MAX_NS if end is None else end
    if end < start:
        raise ParamError("end", f"{end} is before start {start}")
    return start, end


def limit(query: Mapping[str, str]) -> int:
    value = text(query, "limit", max_chars=12)
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise ParamError("limit", f"{value!r} is not an integer in [1, {MAX_LIMIT}]")
    return int(value)


def cursor(query: Mapping[str, str]) -> Cursor | None:
    value = text(query, "cursor", max_chars=64)
    if value is None:
        return None
    ts, _, skip = value.partition("_")
    if not (ts.isdigit() and skip.isdigit()) or not MIN_NS <= int(ts) <= MAX_NS or int(skip) > 10**12:
        raise ParamError("cursor", f"{value!r} is not a cursor this API returned (next_cursor)")
    return Cursor(int(ts), int(skip))


def choice(query: Mapping[str, str], name: str, options: tuple[str, ...], default: str | None) -> str | None:
    value = text(query, name, max_chars=64)
    if value is None:
        return default
    if value not in options:
        raise ParamError(name, f"{value!r} is not one of {', '.join(options)}")
    return value


def number(query: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    value = text(query, name, max_chars=32)
    if value is None:
        return None
    try:
        x = float(value)
    except ValueError:
        raise ParamError(name, f"{value!r} is not a number") from None
    if not low <= x <= high:  # also refuses NaN
        raise ParamError(name, f"{value} is outside [{low}, {high}]")
    return x


def unknown(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    """Refuse parameters the route does not take (a typo would otherwise be ignored silently)."""
    for name in query:
        if name not in allowed:
            raise ParamError(
                name, f"is not a parameter of this route (it takes {', '.join(allowed) or 'none'})"
            )
