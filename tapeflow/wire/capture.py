"""Readers for raw websocket/REST capture files (and journals), whatever venue they hold.

Two flavours, detected from the content (gzip or not, also detected):

* ``<recv_ns> <json>`` per line (hftbacktest / tapeflow journal style);
* cryptofeed logs: ``<URL> <-> <ts>`` (opened), ``<URL> <- <ts>: <payload>`` (sent),
  ``<ts>: <payload>`` (received), ``<URL> -> <ts>: <body>`` (REST response), with float
  UNIX seconds parsed exactly to ns; a first line ``configuration: {...}`` (newer cryptofeed
  versions write the feed's subscription there) is the file's header and is skipped.

Both hold one compact frame per line (venues send compact JSON; the journal writes each frame as
received). A JSON document spread over several lines (pretty-printed: ``<recv_ns> {`` then its
indented fields) is not rejoined: where it ends is a guess, and a replay of the reformatted bytes
would serve what the venue never sent. It is one ``bad_capture_line`` dead letter for the whole
document (:class:`Document`), not one per line.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import pyarrow as pa
import zstandard

from tapeflow.errors import BadNumber, FormatError
from tapeflow.schemas import ALL_RECORDS, RecordType, concat
from tapeflow.wire.numbers import to_nanos
from tapeflow.wire.rejects import Reason, Rejects

RECV, SENT, OPEN, HTTP = "recv", "sent", "open", "http"
_NS_LINE = re.compile(rb"^(\d{15,20}) (.*)$", re.S)
_CF_RECV = re.compile(rb"^(\d+(?:\.\d+)?): (.*)$", re.S)
_CF_URL = re.compile(rb"^(\S+) (<-|->|<->) (\d+(?:\.\d+)?)(?:: (.*))?$", re.S)
# newer cryptofeed raw logs open with the feed's configuration: the file's header, not a frame
_CF_HEADER = re.compile(rb"^configuration: \{.*\}$", re.S)


@dataclass(frozen=True)
class CaptureLine:
    """One captured frame.

    Attributes:
        recv_ns: capture time, ns UTC.
        kind: ``recv`` (websocket frame), ``sent`` (our subscription), ``open`` (connection
            opened), ``http`` (REST response body).
        url: the connection or request URL ('' for received frames in cryptofeed logs).
        payload: the frame bytes (b'' for ``open``).
        location: ``file:line`` for error messages and dead letters.
    """

    recv_ns: int
    kind: str
    url: str
    payload: bytes
    location: str


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# what a damaged or cut-short compressed stream raises while it is read
READ_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError, OSError)


def open_maybe_gzip(path: Path) -> IO[bytes]:
    """Open a file for binary reading, transparently un-gzipping it.

    Raises:
        FormatError: ``path`` is a directory or cannot be read.
    """
    magic = _magic(path)
    return gzip.open(path, "rb") if magic[:2] == GZIP_MAGIC else open(path, "rb")


def _magic(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(4)
    except IsADirectoryError:
        raise FormatError(f"{path} is a directory, not a file: pass the files inside it") from None
    except PermissionError:
        raise FormatError(f"{path} cannot be read: permission denied") from None


def read_error(path: Path, exc: BaseException, where: str = "") -> FormatError:
    """The clear error for a file whose bytes could not be read (``exc`` from :data:`READ_ERRORS`).

    Args:
        path: the file.
        exc: what reading it raised.
        where: how far it got ("after line 1,204"), or ''.
    """
    at = f" {where}" if where else ""
    if isinstance(exc, EOFError) or "incomplete" in str(exc) or "truncated" in str(exc):
        what = "its compressed stream is cut short (an interrupted download or copy?)"
    elif isinstance(exc, (zlib.error, gzip.BadGzipFile)):
        what = f"its gzip stream is damaged ({exc})"
    elif isinstance(exc, zstandard.ZstdError):
        what = f"its zst stream is damaged ({exc})"
    else:
        what = f"it cannot be read ({type(exc).__name__}: {exc})"
    return FormatError(f"{path}: {what}{at}")


def check_readable(path: Path) -> None:
    """Read the whole of ``path`` (decompressing gzip or zst) to find file-level damage.

    Cheap to skip and costly to run: it is the diagnosis of a decode that failed, naming the file
    and what is wrong with it.

    Raises:
        FormatError: the file is a directory, unreadable, empty, or a damaged or cut-short
            gzip/zst stream.
    """
    magic = _magic(path)
    if not magic:
        raise FormatError(f"{path} is empty (0 bytes)")
    try:
        with open(path, "rb") as raw:
            if magic[:2] == GZIP_MAGIC:
                with gzip.GzipFile(fileobj=raw) as fh:
                    while fh.read(1 << 20):
                        pass
            elif magic == ZSTD_MAGIC:
                zd = zstandard.ZstdDecompressor().decompressobj()
                while chunk := raw.read(1 << 20):
                    zd.decompress(chunk)
                    if zd.eof and (rest := zd.unused_data):
                        zd = zstandard.ZstdDecompressor().decompressobj()
                        zd.decompress(rest)
                if not zd.eof:
                    raise EOFError("zst frame incomplete")
    except READ_ERRORS as exc:
        raise read_error(path, exc) from None


def detect_flavour(path: Path) -> str:
    """``ns`` or ``cryptofeed``, from the first non-empty line.

    Raises:
        FormatError: the file is neither, or cannot be read.
    """
    try:
        with open_maybe_gzip(path) as fh:
            for raw in fh:
                line = raw.strip()
                if not line or _CF_HEADER.match(line):
                    continue
                if _NS_LINE.match(line):
                    return "ns"
                if _CF_URL.match(line) or _CF_RECV.match(line):
                    return "cryptofeed"
                raise FormatError(f"{path}: not a capture file (first line starts {line[:60]!r})")
    except READ_ERRORS as exc:
        raise read_error(path, exc, "in its first line") from None
    raise FormatError(f"{path}: empty capture file")


_OPENERS = frozenset(b"{[,:")  # a compact JSON frame never ends with one of these
_DOC_KEEP = 1 << 16  # bytes of a multi-line document kept in its dead letter


def opens_document(payload: bytes) -> bool:
    """Whether ``payload`` stops inside a JSON document (its last non-blank byte is ``{ [ , :``):
    the first line of a pretty-printed one, or a line cut short."""
    tail = payload.rstrip()
    return bool(tail) and tail[-1] in _OPENERS


class Document:
    """The lines of one JSON document spread over several lines: the capture line that opens it
    (:func:`opens_document`) and the lines after it that are no capture lines."""

    def __init__(self, name: str, lineno: int, head: CaptureLine, raw: bytes) -> None:
        self.name, self.first, self.last = name, lineno, lineno
        self.head, self.raw = head, raw

    def add(self, lineno: int, raw: bytes) -> None:
        """One more of its lines."""
        self.last = lineno
        if len(self.raw) < _DOC_KEEP:
            self.raw = (self.raw + b"\n" + raw)[:_DOC_KEEP]

    @property
    def lines(self) -> int:
        return self.last - self.first + 1

    def reject(self, rejects: Rejects) -> None:
        """Its one dead letter (``bad_capture_line``, located ``file:first-last``)."""
        rejects.add(Reason.BAD_CAPTURE_LINE,
                    f"a JSON document spread over {self.lines} lines (pretty-printed?): a capture line holds "
                    "one compact frame (rejoin it, e.g. with jq -c)", f"{self.name}:{self.first}-{self.last}",
                    self.raw, ts_recv_ns=self.head.recv_ns)


def read_capture(path: Path, rejects: Rejects) -> Iterator[CaptureLine]:
    """Yield every frame of a capture file; malformed lines become ``bad_capture_line`` rejects, a
    JSON document spread over several lines one reject (:class:`Document`)."""
    flavour = detect_flavour(path)
    name = path.name
    lineno = 0
    header = flavour == "cryptofeed"  # until the first non-empty line: cryptofeed's configuration
    doc: Document | None = None  # an opened document: its head waits for the next line
    try:
        with open_maybe_gzip(path) as fh:
            for lineno, raw in enumerate(fh, 1):
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                if header:
                    header = False
                    if _CF_HEADER.match(line):
                        continue
                loc = f"{name}:{lineno}"
                parsed = parse_ns_line(line) if flavour == "ns" else _parse_cryptofeed(line)
                if doc is not None:
                    if parsed is None:  # the document goes on
                        doc.add(lineno, line)
                        continue
                    if doc.lines > 1:
                        doc.reject(rejects)
                    else:  # a line that only looked like an opening (cut short): a frame as before
                        yield doc.head
                    doc = None
                if parsed is None:
                    rejects.add(Reason.BAD_CAPTURE_LINE, f"not a {flavour} capture line", loc, line)
                    continue
                recv_ns, kind, url, payload = parsed
                if opens_document(payload):
                    doc = Document(name, lineno, CaptureLine(recv_ns, kind, url, payload, loc), line)
                    continue
                yield CaptureLine(recv_ns, kind, url, payload, loc)
            if doc is not None:
                if doc.lines > 1:
                    doc.reject(rejects)
                else:
                    yield doc.head
    except READ_ERRORS as exc:
        # file-level damage: the lines read so far were fine, the rest of the file is lost
        raise read_error(path, exc, f"after line {lineno:,}") from None


def parse_ns_line(line: bytes) -> tuple[int, str, str, bytes] | None:
    """``(recv_ns, kind, url, payload)`` of one ``<recv_ns> <payload>`` line, None when it is none."""
    m = _NS_LINE.match(line)
    if m is None:
        return None
    return int(m.group(1)), RECV, "", m.group(2)


def _parse_cryptofeed(line: bytes) -> tuple[int, str, str, bytes] | None:
    m = _CF_URL.match(line)
    if m is not None:
        arrow = m.group(2)
        kind = {b"<-": SENT, b"->": HTTP, b"<->": OPEN}[arrow]
        ts = _seconds_to_ns(m.group(3))
        if ts is None or (kind != OPEN and m.group(4) is None):
            return None
        return ts, kind, m.group(1).decode("utf-8", "replace"), m.group(4) or b""
    m = _CF_RECV.match(line)
    if m is None:
        return None
    ts = _seconds_to_ns(m.group(1))
    return None if ts is None else (ts, RECV, "", m.group(2))


def _seconds_to_ns(text: bytes) -> int | None:
    try:
        # to_nanos is exact up to 9 decimals; cryptofeed prints up to 7.
        return to_nanos(text)
    except BadNumber:
        return None


@dataclass
class Decoded:
    """One chunk of decoder output: tables keyed by record name, plus progress.

    ``bytes_read`` is the input consumed since the previous chunk (compressed bytes where the
    file is compressed), so a decode's chunks add up to the size of its input on disk.
    """

    tables: dict[str, pa.Table]
    bytes_read: int = 0
    source: str = ""

    def get(self, record: RecordType) -> pa.Table:
        return self.tables.get(record.name, record.empty_table())

    def counts(self) -> dict[str, int]:
        return {k: t.num_rows for k, t in self.tables.items() if t.num_rows}


def merge(chunks: Sequence[Decoded]) -> dict[str, pa.Table]:
    """Concatenate a decode's chunks per record type."""
    names = sorted({n for c in chunks for n in c.tables})
    return {n: concat(ALL_RECORDS[n], [c.tables[n] for c in chunks if n in c.tables]) for n in names}


class FrameDecoder(Protocol):
    """A stateful per-venue decoder: frames in arrival order in, chunks of records out.

    The live connectors (:mod:`tapeflow.live`) feed it what they receive, one frame at a time or
    a micro-batch at once, and flush one chunk per micro-batch.
    """

    venue: str

    @property
    def rows(self) -> int: ...

    def feed(self, line: CaptureLine) -> None: ...

    def feed_many(self, lines: list[CaptureLine]) -> None: ...

    def flush(self, bytes_read: int, source: str) -> Decoded: ...
