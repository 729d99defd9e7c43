"""Chunked CSV reading with exact line numbers: each chunk is whole lines parsed by pyarrow.

Every cell is read as a string (prices stay text until the exact decimal parse); rows with the
wrong number of fields, lines that are not UTF-8 and lines longer than :data:`MAX_LINE_BYTES` are
collected with their line number and text instead of failing the file. A file that cannot be read
(a directory, a gzip stream cut short or damaged) is a ``FormatError`` naming it.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from tapeflow.errors import FormatError
from tapeflow.wire.capture import READ_ERRORS, open_maybe_gzip, read_error
from tapeflow.wire.rejects import Reason

CHUNK_BYTES = 8 << 20
# the longest line read: a book_snapshot_25 line is ~1 KiB; longer is damage, not data
MAX_LINE_BYTES = 1 << 20
_BLOCK_BYTES = 4 * MAX_LINE_BYTES  # pyarrow cannot parse a row longer than its block
_RAW_KEPT = 1024  # bytes of an over-long line kept in its reject


@dataclass
class CsvChunk:
    """Rows of one chunk: ``table`` (all strings), the file line of each row, and bad lines."""

    table: pa.Table
    lines: np.ndarray  # int64[n]: 1-based file line of each table row
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, text)
    bytes_read: int = 0
    raw_lines: list[bytes] = field(default_factory=list)  # the chunk's lines, for rejects
    first_line: int = 0

    def raw(self, line: int) -> bytes:
        """The text of file line ``line`` (its head only, when it is over-long)."""
        text = self.raw_lines[line - self.first_line]
        return text if len(text) <= MAX_LINE_BYTES else text[:_RAW_KEPT]


class _Raw:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream: BinaryIO = open_maybe_gzip(path)

    def position(self) -> int:
        """Bytes of the file on disk consumed (compressed bytes of a gzip file)."""
        return self.stream.fileobj.tell() if isinstance(self.stream, gzip.GzipFile) else self.stream.tell()

    def close(self) -> None:
        self.stream.close()


def read_header(path: Path) -> list[str]:
    """The header row of a (possibly gzip) CSV file.

    Raises:
        FormatError: the file is empty, has no header, or cannot be read.
    """
    raw = _Raw(path)
    try:
        line = raw.stream.readline(MAX_LINE_BYTES)
    except READ_ERRORS as exc:
        raise read_error(path, exc, "in its header") from None
    finally:
        raw.close()
    if not line.strip():
        raise FormatError(f"{path} has no CSV header (the file is empty or starts with a blank line)")
    return line.decode("utf-8", "replace").strip().split(",")


def read_chunks(path: Path) -> Iterator[CsvChunk]:
    """Parse a CSV file chunk by chunk (header first, then ~8 MiB of whole lines each).

    Raises:
        FormatError: the file cannot be read to its end (a gzip stream cut short or damaged).
    """
    raw = _Raw(path)
    line_no = 1
    try:
        header_line = raw.stream.readline()
        header = header_line.decode("utf-8", "replace").strip().split(",")
        line_no = 2
        carry = b""
        long_line: _LongLine | None = None
        while True:
            data = raw.stream.read(CHUNK_BYTES)
            if long_line is not None:
                end = data.find(b"\n")
                long_line.nbytes += len(data) if end < 0 else end
                if end < 0 and data:
                    continue
                yield long_line.chunk(header, raw.position())
                line_no += 1
                long_line, data = None, data[end + 1 :] if end >= 0 else b""
                if not data:
                    continue
            buf = carry + data
            if not data:
                if buf:
                    yield _parse(buf, header, line_no, raw.position())
                return
            cut = buf.rfind(b"\n")
            if cut < 0:
                if len(buf) > MAX_LINE_BYTES:  # one line longer than any real one: skip to its end
                    long_line, carry = _LongLine(line_no, buf[:_RAW_KEPT], len(buf)), b""
                    continue
                carry = buf
                continue
            body, carry = buf[: cut + 1], buf[cut + 1 :]
            yield _parse(body, header, line_no, raw.position())
            line_no += body.count(b"\n")
    except READ_ERRORS as exc:
        raise read_error(path, exc, f"near line {line_no:,}") from None
    finally:
        raw.close()


@dataclass
class _LongLine:
    """A line over :data:`MAX_LINE_BYTES` being skipped: its number, its head, its length so far."""

    line: int
    head: bytes
    nbytes: int

    def chunk(self, header: list[str], bytes_read: int) -> CsvChunk:
        detail = f"line of {self.nbytes:,} bytes, longer than {MAX_LINE_BYTES:,}"
        empty = pa.table({name: pa.array([], pa.string()) for name in header})
        return CsvChunk(empty, np.zeros(0, np.int64), [(self.line, Reason.BAD_ROW, detail)], bytes_read,
                        [self.head], self.line)


def _parseable(body: bytes, raw_lines: list[bytes]) -> bool:
    if len(body) > MAX_LINE_BYTES and max(map(len, raw_lines), default=0) > MAX_LINE_BYTES:
        return False
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _screen(raw_lines: list[bytes], first_line: int) -> tuple[list[int], list[tuple[int, str, str]]]:
    """The indexes of the lines pyarrow can parse, and the others as (line, reason, detail)."""
    keep: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for i, line in enumerate(raw_lines):
        if len(line) > MAX_LINE_BYTES:
            bad.append((first_line + i, Reason.BAD_ROW, f"line of {len(line):,} bytes, longer than "
                        f"{MAX_LINE_BYTES:,}"))
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append((first_line + i, Reason.BAD_ROW, f"not UTF-8: byte {line[exc.start]:#04x} at column "
                        f"{exc.start + 1}"))
            continue
        keep.append(i)
    return keep, bad


def _parse(body: bytes, header: list[str], first_line: int, bytes_read: int) -> CsvChunk:
    raw_lines = body.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    line_numbers = np.arange(first_line, first_line + len(raw_lines), dtype=np.int64)
    bad: list[tuple[int, str, str]] = []
    # pyarrow fails the whole chunk on one invalid UTF-8 cell or one row longer than its block:
    # such lines are taken out first (an ASCII body of short lines, nearly every one, is not looked at)
    if not _parseable(body, raw_lines):
        keep, bad = _screen(raw_lines, first_line)
        body = b"".join(raw_lines[i] + b"\n" for i in keep)
        line_numbers = line_numbers[keep]

    def on_invalid(row: pacsv.InvalidRow) -> str:
        reason = "truncated" if row.actual_columns < row.expected_columns else "bad_row"
        bad.append(
            (
                int(line_numbers[row.number - 1]),
                reason,
                f"{row.actual_columns} fields, expected {row.expected_columns}",
            )
        )
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(column_names=header, use_threads=False, block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    lines = line_numbers
    if bad:
        lines = lines[~np.isin(lines, [line for line, _, _ in bad])]
    # Blank lines parse as all-empty rows: they carry nothing, so they are dropped, not rejected.
    if b"\n\n" in b"\n" + body or b"\n\r\n" in b"\n" + body:
        blank = np.array([not raw_lines[int(ln) - first_line].strip() for ln in lines], dtype=bool)
        table = table.filter(pa.array(~blank))
        lines = lines[~blank]
    if len(lines) != table.num_rows:
        raise FormatError(
            f"CSV rows and lines disagree near line {first_line} (quoted newlines are not supported)"
        )
    return CsvChunk(table, lines, bad, bytes_read, raw_lines, first_line)
