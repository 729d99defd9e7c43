"""DBN framing: detect the encoding, read the metadata, and cut the byte stream into records.

A DBN file is ``DBN<version>`` + u32 metadata length + metadata + records; a fragment
(``.frag``) is records only. Either may be zstd-compressed (one or more frames). Each record
starts with its length in 4-byte words, so the stream is cut by walking those length bytes; runs
of equal-length records (the common case: one schema per file) are cut with one vectorized step.

DBN has no sync marker, but a file of a fixed-size schema (``mbo``, ``trades``, ``mbp-1``, ...:
every record the same rtype and length) has one in effect: a record header whose length byte
disagrees with the schema, and whose stated length does not land on the next record, is damage.
Its bytes become one :attr:`Block.damaged` span and the cut resumes at the next offset where
three headers in a row are the schema's (:func:`cut_records`), so one flipped byte costs one
record. A zstd stream that ends inside a frame, or whose frame is damaged, is a ``FormatError``
naming the file: a compressed stream cut short is file-level damage, never a short file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import databento_dbn as dbn
import numpy as np
import zstandard

from tapeflow.errors import FormatError
from tapeflow.venues.databento.messages import (
    _FIXED,
    DBN_MAGIC,
    DBZ_SKIPPABLE_TAIL,
    HEADER_BYTES,
    TS_OUT_BYTES,
    ZSTD_MAGIC,
    looks_like_record,
    record_dtype,
)
from tapeflow.wire.capture import read_error

READ_BYTES = 4 << 20  # decompressed bytes per chunk: ~75k MBO records, ~11k MBP-10 records
ZST_READ_BYTES = 64 << 10  # compressed bytes fed to the decompressor at a time: a block overshoots
#                            READ_BYTES by what 64 KiB decompress to
SYNC_HEADERS = 3  # headers in a row that must be the schema's before framing resumes there


@dataclass(frozen=True)
class Frame:
    """The header every record of a fixed-size schema file starts with."""

    word: int  # the length byte: record length in 4-byte words
    rtype: int

    @property
    def length(self) -> int:
        return self.word * 4


@dataclass
class DbnHeader:
    """What the stream says about itself (``metadata`` is None for a fragment)."""

    version: int
    metadata: dbn.Metadata | None
    compressed: bool
    records_at: int = 0  # decompressed byte offset of the first record (8 + metadata length)

    @property
    def frame(self) -> Frame | None:
        """The fixed record header of this file's schema, or None (fragments, mixed or versioned
        schemas, whose record lengths legitimately vary)."""
        meta = self.metadata
        if meta is None or meta.schema is None:
            return None
        rtype = dbn.RType.from_schema(meta.schema).value
        if rtype not in _FIXED:
            return None
        dtype = record_dtype(rtype, 1 << 10)
        if dtype is None:
            return None
        length = dtype.itemsize + (TS_OUT_BYTES if meta.ts_out else 0)
        return Frame(length // 4, rtype)


@dataclass
class Block:
    """Whole records cut from the stream: ``buf`` bytes, ``offsets``/``lengths`` int64 per record."""

    buf: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    first_index: int  # index of the first record of this block in the file
    stream_offset: int  # decompressed byte offset of buf[0] in the record section
    bytes_read: int  # compressed bytes consumed from the file so far
    damaged: list[tuple[int, int]] = field(default_factory=list)  # [start, end) of bytes in buf
    #                                      that are no record (a damaged header), in stream order


class _ZstReader:
    """A zstd stream (one or more frames) decompressed as it is read.

    zstandard's ``stream_reader`` ends quietly when the input stops inside a frame, so a file cut
    short would read as a short file: here the end of the input inside a frame, and any
    ``ZstdError``, is a ``FormatError`` naming the file.
    """

    def __init__(self, raw: BinaryIO, path: Path) -> None:
        self.raw = raw
        self.path = path
        self.pieces: list[bytes] = []  # decompressed, not yet read
        self.buffered = 0
        self.decompressed = 0
        self.zd = zstandard.ZstdDecompressor().decompressobj()
        self.in_frame = False  # input was fed to ``zd`` and its frame has not ended

    def read_some(self, n: int) -> bytes:
        """At least ``n`` bytes (fewer only at the end of the stream), in one piece."""
        while self.buffered < n:
            chunk = self.raw.read(ZST_READ_BYTES)
            if not chunk:
                if self.in_frame:
                    where = f"after {self.decompressed + self.buffered:,} decompressed bytes"
                    raise read_error(self.path, EOFError("zst frame incomplete"), where)
                break
            try:
                self._feed(chunk)
            except zstandard.ZstdError as exc:
                raise read_error(self.path, exc) from None
        data = self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)
        self.pieces, self.buffered = [], 0
        self.decompressed += len(data)
        return data

    def read(self, n: int) -> bytes:
        data = self.read_some(n)
        if len(data) > n:
            self.pieces, self.buffered = [data[n:]], len(data) - n
            self.decompressed -= len(data) - n
            data = data[:n]
        return data

    def _feed(self, data: bytes) -> None:
        while data:
            out = self.zd.decompress(data)
            if out:
                self.pieces.append(out)
                self.buffered += len(out)
            if not self.zd.eof:
                self.in_frame = True
                return
            # a frame ended: what follows it is the next frame (zstd files may hold several)
            data = self.zd.unused_data
            self.zd = zstandard.ZstdDecompressor().decompressobj()
            self.in_frame = False

    def close(self) -> None:
        self.pieces = []


class _Source:
    """A file opened for reading DBN records, decompressing zstd when the magic says so."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        head = self.raw.read(4)
        self.raw.seek(0)
        if len(head) == 4 and head[1:] == DBZ_SKIPPABLE_TAIL and 0x50 <= head[0] <= 0x5F:
            self.raw.close()
            raise FormatError(
                f"{path} is a legacy DBZ file (zstd skippable-frame magic {head.hex()}), which tapeflow "
                "does not read: re-encode it to DBN first, e.g. `dbn --dbn -o out.dbn.zst in.dbz` with "
                "the dbn CLI (cargo install dbn-cli) or re-download it from Databento as DBN"
            )
        self.compressed = head == ZSTD_MAGIC
        self.stream: BinaryIO | _ZstReader = _ZstReader(self.raw, path) if self.compressed else self.raw

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            piece = self.stream.read(n - len(out))
            if not piece:
                break
            out += piece
        return bytes(out)

    def read_some(self, n: int) -> bytes:
        """About ``n`` bytes (at least ``n`` unless the file ends), without re-slicing them."""
        return self.stream.read_some(n) if isinstance(self.stream, _ZstReader) else self.read(n)

    @property
    def bytes_read(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        self.stream.close()
        if not self.raw.closed:
            self.raw.close()


def _read_header(src: _Source) -> tuple[DbnHeader, bytes]:
    prefix = src.read(8)
    if prefix[:3] == DBN_MAGIC:
        version = prefix[3]
        meta_len = int.from_bytes(prefix[4:8], "little")
        body = src.read(meta_len)
        if len(body) < meta_len:
            raise FormatError(f"{src.path}: DBN metadata truncated ({len(body)} of {meta_len} bytes)")
        try:
            metadata = dbn.Metadata.decode(prefix + body)
        except Exception as exc:  # the binding raises plain ValueError/DBNError variants
            raise FormatError(f"{src.path}: unreadable DBN v{version} metadata: {exc}") from exc
        return DbnHeader(version, metadata, src.compressed, 8 + meta_len), b""
    if prefix[:3] == b"DBZ":
        raise FormatError(f"{src.path} is a legacy DBZ stream: re-encode it to DBN with the dbn CLI")
    if len(prefix) >= 2 and looks_like_record(prefix[0] * 4, prefix[1]):
        # A fragment: records without metadata. The version is told per record by its length.
        return DbnHeader(0, None, src.compressed), prefix
    if not prefix:
        return DbnHeader(0, None, src.compressed), b""
    raise FormatError(f"{src.path} is not DBN: it starts with {prefix[:8].hex()}")


@dataclass
class Cut:
    """What :func:`cut_records` found in a buffer."""

    offsets: np.ndarray  # int64[k] start of each whole record
    lengths: np.ndarray  # int64[k]
    stop: int  # where cutting stopped: the end of the data, or a partial record
    corrupt: bool  # stopped at a length byte shorter than a header (no frame to resync on)
    damaged: list[tuple[int, int]]  # [start, end) of the bytes skipped to resync (fixed frames)


def cut_records(buf: np.ndarray, start: int = 0, frame: Frame | None = None, final: bool = True) -> Cut:
    """Cut ``buf[start:]`` into whole records by their length bytes.

    Args:
        buf: decompressed record bytes.
        start: where the first record starts.
        frame: the header every record of the file's schema has (None: lengths are trusted).
            A header whose length byte differs from it is trusted only when it is no record of
            the schema and its length lands on the next record; otherwise its bytes are damage,
            skipped up to the next offset that starts :data:`SYNC_HEADERS` schema headers in a row.
        final: ``buf`` ends where the file ends (else a resync may wait for more data).
    """
    n = buf.shape[0]
    pos = start
    offs: list[np.ndarray] = []
    lens: list[np.ndarray] = []
    damaged: list[tuple[int, int]] = []
    while pos < n:
        word = int(buf[pos])
        length = word * 4
        if frame is not None and word != frame.word and not _foreign(buf, pos, frame, final):
            resume = _resync(buf, pos + 1, frame, final)
            if resume is None:
                # no schema header chain in the rest of buf: a final tail is damage to its end;
                # otherwise skip what was ruled out and look again with more data
                resume = n if final else n - SYNC_HEADERS * frame.length
                if resume <= pos:
                    break
            damaged.append((pos, resume))
            pos = resume
            continue
        if length < HEADER_BYTES:
            return Cut(*_cat(offs, lens), pos, True, damaged)
        fit = (n - pos) // length
        if fit == 0:
            break
        run = buf[pos : pos + fit * length : length] == word
        count = fit if bool(run.all()) else int(np.argmin(run))
        offs.append(pos + np.arange(count, dtype=np.int64) * length)
        lens.append(np.full(count, length, dtype=np.int64))
        pos += count * length
    return Cut(*_cat(offs, lens), pos, False, damaged)


def _schema_header(buf: np.ndarray, at: int, frame: Frame) -> bool:
    return at + 1 < buf.shape[0] and int(buf[at]) == frame.word and int(buf[at + 1]) == frame.rtype


def _chain(buf: np.ndarray, at: int, frame: Frame, final: bool) -> bool:
    """Whether :data:`SYNC_HEADERS` schema headers follow one another from ``at`` (the end of
    the file counts as one when ``final``)."""
    for k in range(SYNC_HEADERS):
        here = at + k * frame.length
        if here >= buf.shape[0]:
            return final and (k > 0 or here == buf.shape[0])
        if not _schema_header(buf, here, frame):
            return False
    return True


def _foreign(buf: np.ndarray, pos: int, frame: Frame, final: bool) -> bool:
    """A record of another rtype inside a fixed-schema file (a live stream's system record):
    trusted when its length is a header's at least and lands on a schema header."""
    length = int(buf[pos]) * 4
    if length < HEADER_BYTES or pos + 1 >= buf.shape[0] or int(buf[pos + 1]) == frame.rtype:
        return False
    return _chain(buf, pos + length, frame, final)


def _resync(buf: np.ndarray, start: int, frame: Frame, final: bool) -> int | None:
    """The first offset from ``start`` where a chain of schema headers starts, or None."""
    n = buf.shape[0]
    if start + 1 >= n:
        return None
    hits = np.flatnonzero((buf[start : n - 1] == frame.word) & (buf[start + 1 : n] == frame.rtype))
    for at in (hits + start).tolist():
        if _chain(buf, at, frame, final):
            return at
    return None


def _cat(offs: list[np.ndarray], lens: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if not offs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(offs), np.concatenate(lens)


class CorruptStream(Exception):
    """Raised inside ``blocks`` to hand the undecodable rest of a stream to the caller."""

    def __init__(self, stream_offset: int, first_index: int, rest: bytes, reason: str) -> None:
        super().__init__(reason)
        self.stream_offset = stream_offset
        self.first_index = first_index
        self.rest = rest
        self.reason = reason


def open_dbn(path: Path) -> tuple[DbnHeader, Iterator[Block]]:
    """Open a DBN file or fragment (zstd or not) and iterate its records in blocks.

    The iterator ends by raising :class:`CorruptStream` when bytes remain that are not whole
    records (a truncated tail, or a corrupt length byte in a file whose records are not of one
    fixed size: nothing after that point can be framed).

    Raises:
        FormatError: a legacy DBZ file, a file that is not DBN at all, or (while iterating) a
            zstd stream that is damaged or ends inside a frame.
    """
    src = _Source(Path(path))
    try:
        header, pending = _read_header(src)
    except BaseException:
        src.close()
        raise
    return header, _blocks(src, pending, header.frame)


def read_dbn_header(path: Path) -> DbnHeader:
    """The header (version, metadata) of a DBN file or fragment, without reading its records.

    Raises:
        FormatError: a legacy DBZ file, or a file that is not DBN at all.
    """
    src = _Source(Path(path))
    try:
        return _read_header(src)[0]
    finally:
        src.close()


def _blocks(src: _Source, pending: bytes, frame: Frame | None) -> Iterator[Block]:
    carry = pending
    index = 0
    stream_offset = 0
    try:
        while True:
            data = src.read_some(READ_BYTES)
            buf_bytes = carry + data if carry else data
            if not buf_bytes:
                return
            buf = np.frombuffer(buf_bytes, dtype=np.uint8)
            cut = cut_records(buf, frame=frame, final=not data)
            if cut.offsets.size or cut.damaged:
                yield Block(buf, cut.offsets, cut.lengths, index, stream_offset, src.bytes_read, cut.damaged)
                index += cut.offsets.size
            if cut.corrupt or not data:
                rest = buf_bytes[cut.stop :]
                if rest:
                    reason = "bad_length" if cut.corrupt else "truncated"
                    raise CorruptStream(stream_offset + cut.stop, index, rest, reason)
                return
            carry = buf_bytes[cut.stop :]
            stream_offset += cut.stop
    finally:
        src.close()


def read_all(path: Path) -> bytes:
    """The decompressed bytes of a (possibly zstd) file; for tests and small tools."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        if head == ZSTD_MAGIC:
            return zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
        return fh.read()
