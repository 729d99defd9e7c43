"""Chunked CSV reading with exact line numbers: each chunk is whole lines parsed by pyarrow.

Every cell is read as a string (prices stay text until the exact decimal parse); rows with the
wrong number of fields are collected with their line number and text instead of failing the file.
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

CHUNK_BYTES = 8 << 20


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
        return self.raw_lines[line - self.first_line]


class _Raw:
    def __init__(self, path: Path) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 - closed by close()
        magic = self.file.read(2)
        self.file.seek(0)
        self.stream: BinaryIO = gzip.GzipFile(fileobj=self.file) if magic == b"\x1f\x8b" else self.file

    def close(self) -> None:
        self.stream.close()
        self.file.close()


def read_header(path: Path) -> list[str]:
    """The header row of a (possibly gzip) CSV file."""
    raw = _Raw(path)
    try:
        line = raw.stream.readline()
    finally:
        raw.close()
    if not line.strip():
        raise FormatError(f"{path} has no CSV header")
    return line.decode("utf-8", "replace").strip().split(",")


def read_chunks(path: Path) -> Iterator[CsvChunk]:
    """Parse a CSV file chunk by chunk (header first, then ~8 MiB of whole lines each)."""
    raw = _Raw(path)
    try:
        header_line = raw.stream.readline()
        header = header_line.decode("utf-8", "replace").strip().split(",")
        line_no = 2
        carry = b""
        while True:
            data = raw.stream.read(CHUNK_BYTES)
            buf = carry + data
            if not data:
                if buf:
                    yield _parse(buf, header, line_no, raw.file.tell())
                return
            cut = buf.rfind(b"\n")
            if cut < 0:
                carry = buf
                continue
            body, carry = buf[: cut + 1], buf[cut + 1 :]
            yield _parse(body, header, line_no, raw.file.tell())
            line_no += body.count(b"\n")
    finally:
        raw.close()


def _parse(body: bytes, header: list[str], first_line: int, bytes_read: int) -> CsvChunk:
    raw_lines = body.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    bad: list[tuple[int, str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        reason = "truncated" if row.actual_columns < row.expected_columns else "bad_row"
        bad.append(
            (
                first_line + row.number - 1,
                reason,
                f"{row.actual_columns} fields, expected {row.expected_columns}",
            )
        )
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(column_names=header, use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    lines = np.arange(first_line, first_line + len(raw_lines), dtype=np.int64)
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
