"""IQFeed files -> tapeflow records: lookup responses and IQConnect streaming lines, one decoder.

A file is read line by line: plain text (as IQConnect sends it, ``\\r\\n`` or ``\\n``), gzip, a
zip of such files (DTN's downloads), or a capture (``<recv_ns> <line>``, the tapeflow journal and
the replay server's sessions). A line is a lookup row (``[RequestID,]LH,`` prefix or none; the
file's first row fixes its kind: ticks, intervals or dailies, see :mod:`~.history`) or a
streaming message (:mod:`~.stream`). Every line ends as rows, one ``rejected`` row, or a quiet
frame (``!ENDMSG!``, system and timestamp messages).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from tapeflow.errors import BadInput, FormatError
from tapeflow.schemas.records import BAR, INSTRUMENT, ORDER_EVENT
from tapeflow.venues.base import Decoded, merge
from tapeflow.venues.columns import Columns
from tapeflow.venues.decoder import CHUNK_ROWS, VenueDecoder
from tapeflow.venues.iqfeed import history
from tapeflow.venues.iqfeed.messages import END_OF_RESPONSE, ERROR, HISTORY_PREFIX, VENUE
from tapeflow.venues.iqfeed.stream import STREAM_TYPES, StreamState, decode_line
from tapeflow.wire.capture import READ_ERRORS, RECV, CaptureLine, open_maybe_gzip, read_error
from tapeflow.wire.rejects import Reason

_CAPTURE = re.compile(rb"^(\d{15,20}) (.*)$", re.S)
ZIP_MAGIC = b"PK\x03\x04"


def decode(paths: Sequence[Path], *, symbols: Sequence[str] | None = None,
           chunk_rows: int = CHUNK_ROWS) -> Iterator[Decoded]:
    """Decode IQFeed files (see the module docstring), one :class:`Decoded` per ~``chunk_rows`` rows.

    Raises:
        FormatError: a file that cannot be read (a damaged zip or gzip).
    """
    return IQFeedDecoder(symbols=symbols, chunk_rows=chunk_rows).run(paths)


def decode_all(paths: Sequence[Path]) -> dict[str, pa.Table]:
    """Decode whole files into one table per record type (small files and tests)."""
    return merge(list(decode(paths)))


class IQFeedDecoder(VenueDecoder):
    """Lookup rows and streaming lines in, ``trade`` / ``quote`` / ``book_delta`` / ``order_event`` /
    ``bar`` / ``instrument`` / ``rejected`` chunks out (batch :meth:`run`, live :meth:`feed`)."""

    venue = VENUE
    every_frame_accounted = True

    def __init__(self, *, symbols: Sequence[str] | None = None, chunk_rows: int = CHUNK_ROWS,
                 state: StreamState | None = None) -> None:
        super().__init__(symbols=symbols, chunk_rows=chunk_rows)
        self.orders = Columns(ORDER_EVENT)
        self.bars = Columns(BAR)
        self.instruments = Columns(INSTRUMENT)
        self.state = state or StreamState()
        self._names: dict[int, tuple[str, ...]] = {}  # file index -> names its symbol and interval come from
        self._kinds: dict[tuple[int, str], str] = {}  # (file index, member) -> lookup row kind

    @property
    def rows(self) -> int:
        return super().rows + len(self.orders) + len(self.bars) + len(self.instruments)

    def chunk(self, bytes_read: int, source: str) -> Decoded:
        out = super().chunk(bytes_read, source)
        extra = {"order_event": self.orders.drain(), "bar": self.bars.drain(),
                 "instrument": self.instruments.drain()}
        out.tables.update({k: t for k, t in extra.items() if t.num_rows})
        return out

    def lines(self, paths: list[Path]) -> Iterator[tuple[int, CaptureLine]]:
        for index, path in enumerate(paths):
            for member, line in read_lines(path, self.rejects):
                self._names[index] = (str(path), member) if member else (str(path),)
                yield index, line

    def frame(self, index: int, line: CaptureLine) -> None:
        if line.kind != RECV:
            self.quiet(line.kind)
            return
        try:
            text = line.payload.decode("ascii").rstrip("\r\n")
        except UnicodeDecodeError:
            raise BadInput(Reason.BAD_LINE, "not ASCII text") from None
        fields = text.split(",")
        if len(fields) > 1 and fields[-1] == "":
            fields.pop()  # IQConnect ends every message with a comma
        if not text:
            raise BadInput(Reason.BAD_LINE, "an empty line")
        if len(fields) > 1 and fields[1] == HISTORY_PREFIX and fields[0] not in STREAM_TYPES:
            fields = fields[2:]  # a request id before LH
        elif fields[0] == HISTORY_PREFIX:
            fields = fields[1:]
        if not fields or fields[0] == END_OF_RESPONSE:
            self.quiet("end of response")
            return
        if fields[0] in STREAM_TYPES:
            decode_line(self, fields[0], fields[1:], line)
            return
        if fields[0] == ERROR:
            raise BadInput(Reason.VENUE_ERROR, f"lookup error: {','.join(fields[1:])}")
        self._history(index, fields, line)

    def _history(self, index: int, fields: list[str], line: CaptureLine) -> None:
        kind = history.row_kind(fields)
        if kind is None:
            raise BadInput(Reason.BAD_LINE, f"{len(fields)} fields starting {fields[0][:20]!r}: neither a "
                                            "lookup row (12 tick, 8 interval, 7 daily fields) nor a message")
        names = self._names.get(index, ())
        where = (index, names[-1] if names else "")
        fixed = self._kinds.setdefault(where, kind)
        if fixed != kind:
            raise BadInput(Reason.BAD_LINE, f"a {kind} row ({len(fields)} fields) in a file of {fixed}")
        symbol = self.frame_symbol = history.file_symbol(*reversed(names))
        if self.symbols is not None and symbol:
            self.check_symbol(symbol)
        if kind == history.TICKS:
            history.tick(fields, symbol, line.recv_ns, self.trades, self.quotes)
        else:
            interval = history.bar_interval(kind, *reversed(names))
            history.bar(fields, kind, interval, symbol, line.recv_ns, self.bars)


def read_lines(path: Path, rejects: object = None) -> Iterator[tuple[str, CaptureLine]]:
    """``(zip member or '', line)`` of an IQFeed file: text, gzip, zip or ``<recv_ns> <line>`` capture.

    Raises:
        FormatError: naming the file, when it cannot be read.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except IsADirectoryError:
        raise FormatError(f"{path} is a directory, not a file: pass the files inside it") from None
    try:
        if magic == ZIP_MAGIC:
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith("/"):
                        continue
                    with archive.open(member) as fh:
                        lines = _lines(io.BufferedReader(fh), f"{path}!{member}")
                        yield from ((member, line) for line in lines)
            return
        with open_maybe_gzip(path) as fh:
            yield from (("", line) for line in _lines(fh, str(path)))
    except zipfile.BadZipFile as exc:
        raise FormatError(f"{path} cannot be read: {type(exc).__name__}: {exc}") from None
    except READ_ERRORS as exc:  # a gzip stream cut short or damaged: said as for every format
        raise read_error(path, exc) from None


def _lines(fh: io.BufferedIOBase, where: str) -> Iterator[CaptureLine]:
    capture: bool | None = None
    for number, raw in enumerate(fh, 1):
        body = raw.rstrip(b"\r\n")
        if capture is None and body:
            capture = _CAPTURE.match(body) is not None
        m = _CAPTURE.match(body) if capture else None
        if m is not None:
            yield CaptureLine(int(m.group(1)), RECV, "", m.group(2), f"{where}:{number}")
        else:
            yield CaptureLine(-1, RECV, "", body, f"{where}:{number}")
