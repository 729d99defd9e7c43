"""Helpers for decoders of JSON websocket/REST frames: parse, exact numbers, fields, the frame loop.

Every helper raises :class:`BadFrame` (a reason code plus a detail naming the offending value);
decoders turn it into one ``rejected`` row, so a bad frame never crashes a decode.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from tapeflow.schemas.records import QUOTE, TRADE
from tapeflow.venues.base import BadNumber, Columns, Decoded, Rejects, to_nanos
from tapeflow.venues.capture import CaptureLine, read_capture
from tapeflow.venues.l2sync import ChainStats, DeltaColumns, SeqChain

CHUNK_ROWS = 100_000

_SCALE = 1_000_000_000
_MAX_WHOLE_DIGITS = 9  # 999_999_999.999999999 still fits int64 nanos; longer goes the slow way
# decimal text -> nanos of every plain decimal seen (only valid, non-negative values get in)
_NANOS_CACHE: dict[str, int] = {}
_CACHE_MAX = 1 << 20


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
        hit = _NANOS_CACHE.get(text)
        if hit is not None:
            return hit
        whole, _, frac = text.partition(".")
        if (whole.isascii() and whole.isdigit() and len(whole) <= _MAX_WHOLE_DIGITS and len(frac) <= 9
                and (not frac or (frac.isascii() and frac.isdigit()))):
            value = int(whole) * _SCALE + (int(frac.ljust(9, "0")) if frac else 0)
            if len(_NANOS_CACHE) >= _CACHE_MAX:
                _NANOS_CACHE.clear()
            _NANOS_CACHE[text] = value
            return value
    elif type(text) is not int:
        raise BadFrame("bad_number", f"{what} was {text!r}, not a decimal string")
    try:
        return to_nanos(text)
    except BadNumber as exc:
        raise BadFrame(exc.reason, f"{what} was {text!r}") from None


def integer(obj: Any, key: str | int) -> int:
    """``obj[key]`` as an int (JSON integer or a string of digits).

    Raises:
        BadFrame: ``missing_field`` or ``bad_number``.
    """
    try:
        value = obj[key]
    except (KeyError, TypeError, IndexError):
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
    if type(rows) is not list:
        raise BadFrame("bad_level", f"{what} was {rows!r}, not a list of levels")
    if all(type(r) is list for r in rows):
        # Prices and sizes repeat across a capture: most levels are two dictionary hits.
        cache = _NANOS_CACHE
        try:
            return [cache[r[0]] for r in rows], [cache[r[1]] for r in rows]
        except (KeyError, IndexError, TypeError):
            pass
    prices: list[int] = []
    sizes: list[int] = []
    get = _NANOS_CACHE.get
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) < 2:
            raise BadFrame("bad_level", f"{what}[{i}] was {row!r}, not [price, size]")
        p, q = row[0], row[1]
        px = get(p) if type(p) is str else None
        sz = get(q) if type(q) is str else None
        prices.append(nanos(p, f"{what}[{i}] price") if px is None else px)
        sizes.append(nanos(q, f"{what}[{i}] size") if sz is None else sz)
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


class CaptureDecoder:
    """Skeleton of a streaming capture decoder: frames in, chunks of tables out.

    Subclasses implement :meth:`frame` (raise :class:`BadFrame` for bad input) and write to
    ``self.deltas`` / ``self.trades`` / ``self.quotes``; depth chains live in ``self.chains``
    and share ``self.stats``.

    Args:
        venue: venue code for rejects.
        symbols: keep only these symbols (any case); others become ``unknown_symbol``.
        chunk_rows: yield a chunk once about this many rows are buffered.
    """

    def __init__(self, venue: str, *, symbols: Collection[str] | None = None,
                 chunk_rows: int = CHUNK_ROWS) -> None:
        self.symbols = None if symbols is None else {s.upper() for s in symbols}
        self.chunk_rows = chunk_rows
        self.stats = ChainStats()
        self.chains: dict[tuple[str, str], SeqChain] = {}
        self.deltas = DeltaColumns()
        self.trades = Columns(TRADE)
        self.quotes = Columns(QUOTE)
        self.rejects = DrainableRejects(venue)
        self.frames = 0

    def run(self, paths: Sequence[Path]) -> Iterator[Decoded]:
        """Decode ``paths`` merged by capture time, yielding chunks of about ``chunk_rows`` rows."""
        paths = [Path(p) for p in paths]
        self.start(paths)
        bytes_read = 0
        self._reported = 0
        for i, line in self.lines(paths):
            bytes_read += len(line.payload) + 1
            self.feed_frame(i, line)
            if self.frames % 1024 == 0 and self._rows() >= self.chunk_rows:
                yield self._chunk(bytes_read, line.location)
        self.finish()
        yield self._chunk(bytes_read, "end")

    def feed_frame(self, index: int, line: CaptureLine) -> None:
        """Decode one frame of file ``paths[index]``; bad input becomes a ``rejected`` row.

        The frame-level entry point: :meth:`run` calls it for every capture line, and the live
        connectors (:mod:`tapeflow.live`) call it for every received frame, so both decode alike.
        """
        self.frames += 1
        try:
            self.frame(index, line)
        except BadFrame as bad:
            self.rejects.add(bad.reason, bad.detail, line.location, line.payload, ts_recv_ns=line.recv_ns)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            # A shape no check anticipated (e.g. a number where an object belongs): still a
            # dead letter, never a crash of the whole decode.
            self.rejects.add("bad_field", f"{type(exc).__name__}: {exc}", line.location, line.payload,
                             ts_recv_ns=line.recv_ns)

    def feed(self, line: CaptureLine) -> None:
        """:class:`~tapeflow.venues.capture.FrameDecoder` protocol: one frame of the first input."""
        self.feed_frame(0, line)

    @property
    def rows(self) -> int:
        """Rows buffered since the last chunk."""
        return self._rows()

    def flush(self, bytes_read: int, source: str) -> Decoded:
        """:class:`~tapeflow.venues.capture.FrameDecoder` protocol: the rows decoded so far as a chunk.

        Diffs still waiting for a snapshot stay buffered (see :meth:`finish`).
        """
        self._reported = getattr(self, "_reported", 0)
        return self._chunk(self._reported + bytes_read, source)

    def finish(self) -> None:
        """End of input: write the diffs that still wait for a snapshot (they stay unsynced)."""
        for chain in self.chains.values():
            chain.flush(self.deltas)

    def lines(self, paths: list[Path]) -> Iterator[tuple[int, CaptureLine]]:
        """The frames to decode as ``(file index, line)``; capture files merged by capture time."""
        return merged_captures(paths, self.rejects)

    def start(self, paths: list[Path]) -> None:
        """Called once before the first frame (e.g. to sniff each file's market)."""

    def frame(self, index: int, line: CaptureLine) -> None:
        """Decode one frame of file ``paths[index]``."""
        raise NotImplementedError

    def chain(self, venue: str, symbol: str) -> SeqChain:
        """The depth chain of one instrument (created on first use)."""
        key = (venue, symbol)
        chain = self.chains.get(key)
        if chain is None:
            chain = self.chains[key] = SeqChain(self.stats)
        return chain

    def check_symbol(self, symbol: Any) -> str:
        """``symbol`` when it is a non-empty string inside the filter.

        Raises:
            BadFrame: ``missing_field`` or ``unknown_symbol``.
        """
        if not isinstance(symbol, str) or not symbol:
            raise BadFrame("missing_field", f"symbol was {symbol!r}")
        if self.symbols is not None and symbol.upper() not in self.symbols:
            raise BadFrame("unknown_symbol", f"symbol {symbol!r} is not among {sorted(self.symbols)}")
        return symbol

    def _rows(self) -> int:
        return len(self.deltas) + len(self.trades) + len(self.quotes) + len(self.rejects)

    def _chunk(self, bytes_read: int, where: str) -> Decoded:
        tables = {
            "book_delta": self.deltas.drain(),
            "trade": self.trades.table(),
            "quote": self.quotes.table(),
            "rejected": self.rejects.drain(),
        }
        self.trades = Columns(TRADE)
        self.quotes = Columns(QUOTE)
        increment, self._reported = bytes_read - self._reported, bytes_read
        return Decoded(tables={k: t for k, t in tables.items() if t.num_rows}, bytes_read=increment,
                       source=where)
