"""Readers for raw websocket/REST capture files, whatever venue they hold.

Two flavours, detected from the content (gzip or not, also detected):

* ``<recv_ns> <json>`` per line (hftbacktest / tapeflow journal style);
* cryptofeed logs: ``<URL> <-> <ts>`` (opened), ``<URL> <- <ts>: <payload>`` (sent),
  ``<ts>: <payload>`` (received), ``<URL> -> <ts>: <body>`` (REST response), with float
  UNIX seconds parsed exactly to ns.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from tapeflow.errors import FormatError
from tapeflow.schemas import concat
from tapeflow.schemas.records import REJECTED
from tapeflow.venues.base import BadNumber, Decoded, Rejects, to_nanos

RECV, SENT, OPEN, HTTP = "recv", "sent", "open", "http"
_NS_LINE = re.compile(rb"^(\d{15,20}) (.*)$", re.S)
_CF_RECV = re.compile(rb"^(\d+(?:\.\d+)?): (.*)$", re.S)
_CF_URL = re.compile(rb"^(\S+) (<-|->|<->) (\d+(?:\.\d+)?)(?:: (.*))?$", re.S)


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


def open_maybe_gzip(path: Path) -> IO[bytes]:
    """Open a file for binary reading, transparently un-gzipping it."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def detect_flavour(path: Path) -> str:
    """``ns`` or ``cryptofeed``, from the first non-empty line.

    Raises:
        FormatError: the file is neither.
    """
    with open_maybe_gzip(path) as fh:
        for raw in fh:
            line = raw.strip()
            if not line:
                continue
            if _NS_LINE.match(line):
                return "ns"
            if _CF_URL.match(line) or _CF_RECV.match(line):
                return "cryptofeed"
            raise FormatError(f"{path}: not a capture file (first line starts {line[:60]!r})")
    raise FormatError(f"{path}: empty capture file")


def read_capture(path: Path, rejects: Rejects) -> Iterator[CaptureLine]:
    """Yield every frame of a capture file; malformed lines become ``bad_capture_line`` rejects."""
    flavour = detect_flavour(path)
    name = path.name
    with open_maybe_gzip(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            loc = f"{name}:{lineno}"
            parsed = _parse_ns(line) if flavour == "ns" else _parse_cryptofeed(line)
            if parsed is None:
                rejects.add("bad_capture_line", f"not a {flavour} capture line", loc, line)
                continue
            recv_ns, kind, url, payload = parsed
            yield CaptureLine(recv_ns, kind, url, payload, loc)


def _parse_ns(line: bytes) -> tuple[int, str, str, bytes] | None:
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


class FrameDecoder(Protocol):
    """A stateful per-venue decoder: frames in arrival order in, chunks of records out."""

    venue: str

    @property
    def rows(self) -> int: ...

    def feed(self, line: CaptureLine) -> None: ...

    def flush(self, bytes_read: int, source: str) -> Decoded: ...


def decode_captures(decoder: FrameDecoder, paths: Sequence[Path], *, chunk_rows: int = 100_000
                    ) -> Iterator[Decoded]:
    """Run ``decoder`` over capture files, yielding a chunk every ~``chunk_rows`` rows and at each file end.

    ``bytes_read`` of a chunk is the increment since the previous one, so a file's chunks add up to
    its size on disk. Lines the capture reader cannot split become ``bad_capture_line`` rejects.
    """
    for path in map(Path, paths):
        size, reported, seen = path.stat().st_size, 0, 0
        capture_rejects = Rejects(decoder.venue)  # the reader keeps this one while flush() swaps buffers
        for line in read_capture(path, capture_rejects):
            seen += len(line.payload) + 1
            decoder.feed(line)
            if decoder.rows >= chunk_rows:
                step = max(0, min(seen, size) - reported)
                reported += step
                yield decoder.flush(step, str(path))
        last = decoder.flush(size - reported, str(path))
        if len(capture_rejects):
            last.tables["rejected"] = concat(REJECTED, [last.get(REJECTED), capture_rejects.table()])
        yield last
