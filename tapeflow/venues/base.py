"""What every venue folder provides, and the helpers decoders share.

A venue folder ``tapeflow/venues/<venue>/`` exposes ``FORMAT``, a :class:`VenueFormat`. The
registry finds formats by scanning the folders, so adding a venue is adding a folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from tapeflow.schemas import ALL_RECORDS, RecordType, concat
from tapeflow.schemas.records import BOOK_DELTA, QUOTE, REJECTED, TRADE

_DECIMAL = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$")
_I64_MAX = 2**63 - 1


class BadNumber(ValueError):
    """A decimal string that is not an exact finite number in range (carries a reason code)."""

    def __init__(self, reason: str, text: object) -> None:
        super().__init__(f"{reason}: {text!r}")
        self.reason = reason
        self.text = text


def to_nanos(text: str | bytes | int, *, allow_negative: bool = False) -> int:
    """Parse a decimal string exactly into int64 units of 1e-9 (no float on the way).

    Accepts ``"123"``, ``"0.00100000"``, ``"1.5e-3"``; digits beyond the 9th decimal must be
    zeros.

    Raises:
        BadNumber: reason ``bad_number`` (NaN, Infinity, not a number, sub-nano precision),
            ``negative`` (below zero when not allowed) or ``out_of_range`` (beyond int64).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text * 1_000_000_000
    else:
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        if not isinstance(text, str):
            raise BadNumber("bad_number", text)
        m = _DECIMAL.match(text.strip())
        if m is None or not (m.group(2) or m.group(3)):
            raise BadNumber("bad_number", text)
        sign, whole, frac, exp = m.group(1), m.group(2) or "0", m.group(3) or "", int(m.group(4) or 0)
        digits = whole + frac
        shift = 9 - len(frac) + exp  # value = int(digits) * 10**shift nanos
        if shift >= 0:
            value = int(digits) * 10**shift
        else:
            head, tail = digits[:shift], digits[shift:]
            if tail.strip("0"):
                raise BadNumber("bad_number", text)
            value = int(head or "0")
        if sign == "-":
            value = -value
    if value > _I64_MAX or value < -_I64_MAX:
        raise BadNumber("out_of_range", text)
    if value < 0 and not allow_negative:
        raise BadNumber("negative", text)
    return value


class RecordReject(Exception):
    """Raised inside a decoder for one bad record; caught at the frame loop and turned into a
    ``rejected`` row (``reason`` is the dead-letter code, ``detail`` names the offending value)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Rejects:
    """Accumulates dead-letter rows for one decode pass."""

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self._cols: dict[str, list[Any]] = {n: [] for n in REJECTED.column_names}

    def add(self, reason: str, detail: str, location: str, raw: bytes | str, *,
            ts_recv_ns: int = -1, ts_event_ns: int = -1, symbol: str = "") -> None:
        c = self._cols
        c["ts_event_ns"].append(ts_event_ns)
        c["ts_recv_ns"].append(ts_recv_ns)
        c["venue"].append(self.venue)
        c["symbol"].append(symbol)
        c["reason"].append(reason)
        c["detail"].append(detail)
        c["location"].append(location)
        c["raw"].append(raw.encode() if isinstance(raw, str) else bytes(raw))

    def __len__(self) -> int:
        return len(self._cols["reason"])

    def table(self) -> pa.Table:
        return REJECTED.table(self._cols)


class Columns:
    """Row-at-a-time builder of one record type's columns (for JSON decoders)."""

    def __init__(self, record: RecordType) -> None:
        self.record = record
        self._cols: dict[str, list[Any]] = {n: [] for n in record.column_names}

    def append(self, **row: Any) -> None:
        for name, values in self._cols.items():
            values.append(row[name])

    def __len__(self) -> int:
        return len(next(iter(self._cols.values())))

    def table(self) -> pa.Table:
        return self.record.table(self._cols)


@dataclass
class Decoded:
    """One chunk of decoder output: tables keyed by record name, plus progress.

    ``bytes_read`` is the input consumed since the previous chunk (compressed bytes where the
    file is compressed, when known), so a decode's chunks add up to the size of its input.
    """

    tables: dict[str, pa.Table]
    bytes_read: int = 0
    source: str = ""

    def get(self, record: RecordType) -> pa.Table:
        return self.tables.get(record.name, record.empty_table())

    def counts(self) -> dict[str, int]:
        return {k: t.num_rows for k, t in self.tables.items() if t.num_rows}


class FrameBuffers:
    """The row buffers of a stateful frame decoder, handed out as one :class:`Decoded` per flush.

    Subclasses set ``venue`` and ``records`` (which of ``book_delta``, ``trade``, ``quote`` they
    emit, as the ``deltas``, ``trades``, ``quotes`` buffers) and call :meth:`_new_buffers` in
    ``__init__``; dead letters go to ``rejects``.
    """

    venue = ""
    records: tuple[RecordType, ...] = (BOOK_DELTA, TRADE)
    deltas: Columns
    trades: Columns
    quotes: Columns
    rejects: Rejects
    _BUFFER = {BOOK_DELTA.name: "deltas", TRADE.name: "trades", QUOTE.name: "quotes"}

    def _new_buffers(self) -> None:
        for record in self.records:
            setattr(self, self._BUFFER[record.name], Columns(record))
        self.rejects = Rejects(self.venue)

    @property
    def rows(self) -> int:
        """Rows buffered since the last flush."""
        return sum(len(getattr(self, self._BUFFER[r.name])) for r in self.records) + len(self.rejects)

    def flush(self, bytes_read: int, source: str) -> Decoded:
        """The buffered rows as one chunk (empty tables left out); the buffers start again."""
        tables = {r.name: getattr(self, self._BUFFER[r.name]).table() for r in self.records}
        tables["rejected"] = self.rejects.table()
        self._new_buffers()
        return Decoded({k: t for k, t in tables.items() if t.num_rows}, bytes_read, source)


class SyncedFrameBuffers(FrameBuffers):
    """:class:`FrameBuffers` for venues whose books go unsynced until the next snapshot."""

    def __init__(self) -> None:
        self.gap_pending: set[str] = set()
        self.unsynced: set[str] = set()  # until the next snapshot
        self._new_buffers()

    def _lose_sync(self, instrument: str) -> None:
        # flag the next message once; later failures on an unsynced book add nothing new
        if instrument not in self.unsynced:
            self.unsynced.add(instrument)
            self.gap_pending.add(instrument)


def merge(chunks: Sequence[Decoded]) -> dict[str, pa.Table]:
    """Concatenate chunks per record type."""
    names = sorted({n for c in chunks for n in c.tables})
    return {n: concat(ALL_RECORDS[n], [c.tables[n] for c in chunks if n in c.tables]) for n in names}


@dataclass
class VerifyReport:
    """Outcome of checking a file against its own oracle."""

    ok: int
    total: int
    what: str
    failures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.total > 0 and self.ok == self.total and not self.failures

    def line(self) -> str:
        return f"verified: {self.ok} of {self.total} {self.what}"


@dataclass(frozen=True)
class VenueFormat:
    """A decodable input format.

    Attributes:
        name: the CLI FORMAT name (lobster, dbn, binance, ...).
        decode: paths -> iterator of chunks; bad input becomes ``rejected`` rows, never raises
            for bad records (only for unreadable or wrong-format files: ``FormatError``).
        verify: paths -> reports against the file's own oracle (None when the format has none).
        description: one line for ``--help``.
    """

    name: str
    decode: Callable[[Sequence[Path]], Iterator[Decoded]]
    verify: Callable[[Sequence[Path]], list[VerifyReport]] | None = None
    description: str = ""
