"""DBN framing: detect the encoding, read the metadata, and cut the byte stream into records.

A DBN file is ``DBN<version>`` + u32 metadata length + metadata + records; a fragment
(``.frag``) is records only. Either may be zstd-compressed (one or more frames). Each record
starts with its length in 4-byte words, so the stream is cut by walking those length bytes; runs
of equal-length records (the common case: one schema per file) are cut with one vectorized step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import databento_dbn as dbn
import numpy as np
import zstandard

from tapeflow.errors import FormatError
from tapeflow.venues.databento.messages import (
    DBN_MAGIC,
    DBZ_SKIPPABLE_TAIL,
    HEADER_BYTES,
    ZSTD_MAGIC,
    looks_like_record,
)

READ_BYTES = 4 << 20  # decompressed bytes per chunk: ~75k MBO records, ~11k MBP-10 records


@dataclass
class DbnHeader:
    """What the stream says about itself (``metadata`` is None for a fragment)."""

    version: int
    metadata: dbn.Metadata | None
    compressed: bool


@dataclass
class Block:
    """Whole records cut from the stream: ``buf`` bytes, ``offsets``/``lengths`` int64 per record."""

    buf: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    first_index: int  # index of the first record of this block in the file
    stream_offset: int  # decompressed byte offset of buf[0] in the record section
    bytes_read: int  # compressed bytes consumed from the file so far


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
        self.stream: BinaryIO
        if self.compressed:
            self.stream = zstandard.ZstdDecompressor().stream_reader(self.raw, read_across_frames=True)
        else:
            self.stream = self.raw

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            piece = self.stream.read(n - len(out))
            if not piece:
                break
            out += piece
        return bytes(out)

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
        return DbnHeader(version, metadata, src.compressed), b""
    if prefix[:3] == b"DBZ":
        raise FormatError(f"{src.path} is a legacy DBZ stream: re-encode it to DBN with the dbn CLI")
    if len(prefix) >= 2 and looks_like_record(prefix[0] * 4, prefix[1]):
        # A fragment: records without metadata. The version is told per record by its length.
        return DbnHeader(0, None, src.compressed), prefix
    if not prefix:
        return DbnHeader(0, None, src.compressed), b""
    raise FormatError(f"{src.path} is not DBN: it starts with {prefix[:8].hex()}")


def cut_records(buf: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Record offsets and lengths of the whole records in ``buf[start:]``.

    Returns:
        offsets int64[k], lengths int64[k], the offset where cutting stopped, and whether it
        stopped at a corrupt length byte (a record shorter than its header) rather than at the
        end of the data.
    """
    n = buf.shape[0]
    pos = start
    offs: list[np.ndarray] = []
    lens: list[np.ndarray] = []
    while pos < n:
        word = int(buf[pos])
        length = word * 4
        if length < HEADER_BYTES:
            return _cat(offs, lens) + (pos, True)
        fit = (n - pos) // length
        if fit == 0:
            break
        run = buf[pos : pos + fit * length : length] == word
        count = fit if bool(run.all()) else int(np.argmin(run))
        offs.append(pos + np.arange(count, dtype=np.int64) * length)
        lens.append(np.full(count, length, dtype=np.int64))
        pos += count * length
    return _cat(offs, lens) + (pos, False)


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
    records (a truncated tail or a corrupt length byte); DBN has no sync marker, so nothing after
    that point can be framed.

    Raises:
        FormatError: a legacy DBZ file, or a file that is not DBN at all.
    """
    src = _Source(Path(path))
    try:
        header, pending = _read_header(src)
    except BaseException:
        src.close()
        raise
    return header, _blocks(src, pending)


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


def _blocks(src: _Source, pending: bytes) -> Iterator[Block]:
    carry = pending
    index = 0
    stream_offset = 0
    try:
        while True:
            data = src.read(READ_BYTES)
            buf_bytes = carry + data if carry else data
            if not buf_bytes:
                return
            buf = np.frombuffer(buf_bytes, dtype=np.uint8)
            offsets, lengths, stop, corrupt = cut_records(buf)
            if offsets.size:
                yield Block(buf, offsets, lengths, index, stream_offset, src.bytes_read)
                index += offsets.size
            if corrupt or not data:
                rest = buf_bytes[stop:]
                if rest:
                    reason = "bad_length" if corrupt else "truncated"
                    raise CorruptStream(stream_offset + stop, index, rest, reason)
                return
            carry = buf_bytes[stop:]
            stream_offset += stop
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
