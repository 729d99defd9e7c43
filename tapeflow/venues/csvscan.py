"""Compiled scanning of line-per-record CSV files (LOBSTER, the simulator's wire): every field of
every line read as int64 in one pass, with no Python object per line or per field.

A format declares its columns as kinds (:data:`INT`, :data:`UINT`, :data:`DEC9`, :data:`CHAR`);
:func:`scan_lines` checks each line against that strict grammar and reads its fields as it goes.
The grammar is a subset of what the format's per-line parser accepts, and a line it matches has
exactly the values that parser gives it: no whitespace, no sign other than ``-`` (and only in an
:data:`INT` column), only ASCII digits, no value beyond int64. Any other line is marked not ``ok``
and left to the format's per-line parser, which accepts it or writes its reject. A format then
checks the values of the ``ok`` lines (ranges, codes) vectorized and sends the lines that fail
there to the per-line parser too, so every reject is the per-line one.

Lines end at ``\\n`` exactly as Python's binary line iteration cuts them; a ``\\r`` before the
``\\n`` is part of the terminator (both per-line parsers strip it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from numba import njit

INT = 0  # -?digits, leading zeros allowed ("-0" is 0), within int64
UINT = 1  # digits without a leading zero (the text is str(value)), within int64
DEC9 = 2  # digits{1,9}[.digits{0,9}]: an exact decimal as int64 units of 1e-9
CHAR = 3  # one byte other than ',' and '\r': its code
BLOCK_BYTES = 1 << 23
_I64_TENTH = (2**63 - 1) // 10  # 10 * this + 7 is the largest int64
_POW10 = np.array([10**k for k in range(10)], np.int64)


@njit(cache=True, nogil=True)
def scan_lines(buf: np.ndarray, kinds: np.ndarray, max_lines: int, final: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read up to ``max_lines`` whole lines of ``buf``.

    Args:
        buf: uint8 bytes of lines.
        kinds: int64[k], the kind of each of the k columns.
        max_lines: at most this many lines.
        final: the bytes after the last ``\\n`` are a line too (end of the file).

    Returns:
        ``values`` int64[n, k] (meaningless on lines not ok), ``ok`` bool[n] (the line matched),
        ``starts`` int64[n + 1] (byte offset of each line; the last entry is where the next
        line starts: the bytes consumed).
    """
    # one pass, fields parsed inline: a helper taking the arrays per line cost 40 % in refcounts
    size = len(buf)
    k = len(kinds)
    values = np.empty((max_lines, k), np.int64)
    ok = np.zeros(max_lines, np.bool_)
    starts = np.zeros(max_lines + 1, np.int64)
    i = 0
    n = 0
    while n < max_lines and i < size:
        starts[n] = i
        p = i
        good = True
        for c in range(k):
            if c > 0:
                if p >= size or buf[p] != 44:
                    good = False
                    break
                p += 1
            kind = kinds[c]
            if kind == CHAR:
                if p >= size or buf[p] == 44 or buf[p] == 13 or buf[p] == 10:
                    good = False
                    break
                values[n, c] = buf[p]
                p += 1
                continue
            negative = False
            if kind == INT and p < size and buf[p] == 45:
                negative = True
                p += 1
            s = p
            v = 0
            while p < size:
                d = np.int64(buf[p]) - 48  # int64: a uint64 would make the sum a float
                if d < 0 or d > 9:
                    break
                v = v * 10 + d
                p += 1
            digits = p - s
            if digits == 0 or digits > 19 or (kind == UINT and digits > 1 and buf[s] == 48):
                good = False
                break
            if digits == 19 and not _fits(buf, s):
                good = False
                break
            if kind == DEC9:
                if digits > 9:
                    good = False
                    break
                if p < size and buf[p] == 46:
                    p += 1
                    f = p
                    frac = 0
                    while p < size:
                        d = np.int64(buf[p]) - 48
                        if d < 0 or d > 9:
                            break
                        frac = frac * 10 + d
                        p += 1
                    if p - f > 9:
                        good = False
                        break
                    v = v * 1_000_000_000 + frac * _POW10[9 - (p - f)]
                else:
                    v = v * 1_000_000_000
            values[n, c] = -v if negative else v
        if good:  # the line ends here: at a newline (after an optional CR) or the end of the buffer
            if p < size and buf[p] == 13:
                p += 1
            if p < size and buf[p] != 10:
                good = False
        j = p
        while j < size and buf[j] != 10:
            j += 1
        if j == size and not final:
            break
        ok[n] = good
        n += 1
        i = j + 1
    starts[n] = min(i, size)
    return values[:n], ok[:n], starts[:n + 1]


@njit(cache=True, nogil=True)
def _fits(buf: np.ndarray, s: int) -> bool:
    # 19 digits from s: within int64 (the running value wrapped, so read the leading 18 again)
    head = 0
    for p in range(s, s + 18):
        head = head * 10 + (np.int64(buf[p]) - 48)
    return head < _I64_TENTH or (head == _I64_TENTH and np.int64(buf[s + 18]) - 48 <= 7)


@dataclass
class Scanned:
    """Lines read by :func:`scan_lines`: their bytes, where each starts, their values, which matched."""

    data: np.ndarray  # uint8: the lines' bytes
    starts: np.ndarray  # int64[n + 1], offsets into ``data``
    values: np.ndarray  # int64[n, k]
    ok: np.ndarray  # bool[n]

    def __len__(self) -> int:
        return len(self.ok)

    def raw(self, i: int) -> bytes:
        """Line ``i`` as Python's line iteration gives it (its ``\\n`` included)."""
        return self.data[self.starts[i]:self.starts[i + 1]].tobytes()

    @property
    def bytes_read(self) -> int:
        return int(self.starts[-1])


class LineReader:
    """Whole lines of a binary stream, scanned a block at a time.

    The bytes of the lines :meth:`take` returns live in the reader's buffer: they are valid
    until the next :meth:`take` or :meth:`give_back`.

    Args:
        stream: the file (already un-gzipped), positioned at the first line to read; None: no lines.
        kinds: the kind of each column (see :func:`scan_lines`).
        block_bytes: bytes read from the stream at a time (the buffer grows for longer chunks).
    """

    def __init__(self, stream: BinaryIO | None, kinds: Sequence[int], *,
                 block_bytes: int = BLOCK_BYTES) -> None:
        self._stream = stream
        self._kinds = np.asarray(kinds, np.int64)
        self._buf = np.empty(block_bytes, np.uint8)
        self._start = 0  # unread bytes are _buf[_start:_end]
        self._end = 0
        self._eof = stream is None

    def take(self, max_lines: int) -> Scanned:
        """The next ``max_lines`` lines (fewer at the end of the stream; none after it)."""
        self._compact()
        if not self._eof:
            self._fill()  # one scan of a full buffer, not one per read of the stream
        parts = []
        need = max_lines
        while True:
            part = self._scan(need)
            if len(part):
                parts.append(part)
                need -= len(part)
            if need <= 0 or self._eof:
                break
            self._fill()
        return parts[0] if len(parts) == 1 else _join(parts, len(self._kinds))

    def give_back(self, lines: Scanned, first: int) -> None:
        """Put lines ``first``... of the last :meth:`take` back in front of the next one."""
        back = lines.data[lines.starts[first]:lines.starts[-1]]
        rest = self._buf[self._start:self._end].copy()
        room = np.empty(max(0, len(self._buf) - len(back) - len(rest)), np.uint8)
        self._buf = np.concatenate([back, rest, room])
        self._start, self._end = 0, len(back) + len(rest)

    def _compact(self) -> None:
        if self._start:
            left = self._end - self._start
            self._buf[:left] = self._buf[self._start:self._end]
            self._start, self._end = 0, left

    def _fill(self) -> None:
        if self._end == len(self._buf):
            # the lines taken so far still point into the old buffer: a new one, never an overwrite
            grown = np.empty(2 * len(self._buf), np.uint8)
            left = self._end - self._start
            grown[:left] = self._buf[self._start:self._end]
            self._buf, self._start, self._end = grown, 0, left
        while self._end < len(self._buf) and not self._eof:
            got = self._stream.readinto(memoryview(self._buf)[self._end:]) if self._stream is not None else 0
            self._eof = not got
            self._end += got

    def _scan(self, max_lines: int) -> Scanned:
        view = self._buf[self._start:self._end]
        cap = max(0, min(max_lines, len(view) + 1))
        values, ok, starts = scan_lines(view, self._kinds, cap, self._eof)
        used = int(starts[-1])
        self._start += used
        return Scanned(view[:used], starts, values, ok)


def _join(parts: list[Scanned], k: int) -> Scanned:
    if not parts:
        return Scanned(np.empty(0, np.uint8), np.zeros(1, np.int64), np.empty((0, k), np.int64),
                       np.zeros(0, np.bool_))
    offsets = np.cumsum([0] + [p.bytes_read for p in parts])
    starts = np.concatenate([p.starts[:-1] + o for p, o in zip(parts, offsets, strict=False)]
                            + [offsets[-1:]])
    return Scanned(np.concatenate([p.data for p in parts]), starts, np.concatenate([p.values for p in parts]),
                   np.concatenate([p.ok for p in parts]))


__all__ = ["CHAR", "DEC9", "INT", "UINT", "LineReader", "Scanned", "scan_lines"]
