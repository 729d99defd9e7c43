"""Column-wise helpers for decoding micro-batches of JSON frames (the fast path of JSON decoders).

A JSON decoder that parses frame by frame spends most of its time in Python per frame (a dict per
object, a chain of calls, a row append). For the few message shapes a venue sends by the million,
the fast path instead matches a whole batch of frames against a *strict grammar* of that shape in
one Arrow call (:func:`match_frames`, RE2 in C++) and converts the captured columns at once:
integers with a cast, decimal strings with :func:`plain_decimals_to_nanos` (exact integer
arithmetic, no float ever).

Why a grammar match is exact: the grammar fixes every key and its order, allows no whitespace,
no escapes and no control characters inside strings, JSON integers without sign or leading
zeros, and ``true``/``false`` literals. A frame that matches therefore has exactly one meaning,
the one ``orjson.loads`` gives it; a frame that does not match goes to the decoder's per-frame
path, which accepts it or writes its reject as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.venues.capture import open_maybe_gzip

STR = r'[^"\\\x00-\x1f]*'  # a JSON string body without escapes or control characters
INT = r"(?:0|[1-9][0-9]{0,17})"  # a JSON integer without sign, at most 18 digits (fits int64)
BOOL = r"(?:true|false)"
_PLAIN = r"^[0-9]{1,9}(?:\.[0-9]{0,9})?$"


def text_array(payloads: list[bytes]) -> pa.Array | None:
    """Frame bodies as one Arrow ``large_string`` array, or None when one is not valid UTF-8.

    Built from one joined buffer and the offsets (``pa.array`` on a list of bytes objects costs
    ten times more).
    """
    offsets = np.zeros(len(payloads) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, payloads), np.int64, len(payloads)), out=offsets[1:])
    arr = pa.Array.from_buffers(pa.large_string(), len(payloads),
                                [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(payloads))])
    try:
        arr.validate(full=True)  # checks the UTF-8 that orjson would refuse
    except pa.ArrowInvalid:
        return None
    return arr


def match_frames(payloads: pa.Array, usable: np.ndarray, literal: str, grammar: str, *,
                 capture: str | None = None) -> tuple[np.ndarray, dict[str, pa.Array], pa.Array]:
    """The frames that match ``grammar`` exactly, found all at once.

    Args:
        payloads: frame bodies as Arrow ``string`` (valid UTF-8).
        usable: bool[n], False for frames never to match (e.g. not received frames).
        literal: a text every matching frame contains (a cheap first filter, e.g. the event type).
        grammar: anchored RE2 pattern of the whole frame.
        capture: a pattern whose named groups are captured; None captures ``grammar``'s own
            groups. Capturing is the slow part of RE2: for long frames, match the whole grammar
            (fast) and capture from a short prefix pattern only.

    Returns:
        ``(at, groups, lines)``: positions of the matching frames, per named group the captured
        text of each (empty for an optional group that did not take part), and their payloads.
    """
    candidate = pc.match_substring(payloads, literal).to_numpy(zero_copy_only=False) & usable
    at = np.flatnonzero(candidate)
    lines = payloads.take(pa.array(at))
    if capture is not None:
        valid = pc.match_substring_regex(lines, grammar)
        at, lines = at[valid.to_numpy(zero_copy_only=False)], lines.filter(valid)
    parts = pc.extract_regex(lines, capture or grammar)
    valid = parts.is_valid()
    if capture is None:
        at, lines = at[valid.to_numpy(zero_copy_only=False)], lines.filter(valid)
    groups = {f.name: pc.fill_null(parts.field(f.name).filter(valid), "") for f in parts.type}
    return at, groups, lines


def plain_decimals_to_nanos(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Parse decimal strings exactly into int64 1e-9 units, all at once.

    Args:
        texts: Arrow strings.

    Returns:
        ``(values, ok)``: int64[n] nanos (0 where not ok) and bool[n], True where the text is
        ``digits[.digits]`` with 1-9 integer digits and at most 9 fractional digits: the shape
        :func:`tapeflow.venues.jsonframes.nanos` parses the same way. Other texts (signs,
        exponents, ``.5``, longer numbers, garbage) need that exact scalar parser, which accepts
        or rejects them.
    """
    if len(texts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    plain = pc.match_substring_regex(texts, _PLAIN)
    # Arrow's string -> decimal cast is exact, and a decimal128(18, 9) holds the value as its
    # unscaled integer: the nanos, in the low 64 bits (plain values stay below 10**18).
    dec = pc.cast(pc.if_else(plain, texts, "0"), pa.decimal128(18, 9))
    words = np.frombuffer(dec.buffers()[1], dtype=np.int64)
    values = words[2 * dec.offset: 2 * (dec.offset + len(dec)): 2]
    ok = plain.to_numpy(zero_copy_only=False)
    return np.where(ok, values, 0), ok


def integers(texts: pa.Array, *, absent: int = -1) -> np.ndarray:
    """Captured :data:`INT` texts as int64 (``absent`` where the text is empty)."""
    empty = pc.equal(texts, "")
    values = pc.cast(pc.if_else(empty, "0", texts), pa.int64()).to_numpy(zero_copy_only=False)
    return np.where(empty.to_numpy(zero_copy_only=False), absent, values)


def read_blocks(path: Path, *, block_bytes: int = 1 << 21) -> Iterator[tuple[int, bytes]]:
    """A capture file (un-gzipped) in blocks of whole lines: ``(number of its first line, bytes)``.

    Every block but the last ends with a newline; the last holds whatever follows the final one.
    """
    lineno = 1
    tail = b""
    with open_maybe_gzip(path) as fh:
        while True:
            block = fh.read(block_bytes)
            data = tail + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            if cut:
                yield lineno, data[:cut]
                lineno += data.count(b"\n", 0, cut)
            tail = data[cut:]
            if not block:
                return


def split_ns_lines(data: bytes) -> tuple[np.ndarray, pa.Array] | None:
    """``<recv_ns> <json>`` lines -> (recv_ns int64[n], payloads as Arrow ``large_string``), at once.

    Returns None unless every line is plainly shaped, so the caller reads the block line by line
    with :func:`tapeflow.venues.capture.read_capture`'s rules: lines are ``\\n``-terminated (the
    last one may not be), none blank or ending in ``\\r``, each a capture time of 15-19 digits, one
    space and a valid UTF-8 payload.
    """
    if not data:
        return None
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 10)
    if len(ends) == 0 or ends[-1] != len(buf) - 1:
        ends = np.append(ends, len(buf))  # an unterminated last line
    starts = np.concatenate(([0], ends[:-1] + 1))
    if (ends - starts < 17).any() or (buf[ends - 1] == 13).any():
        return None  # blank, too short to be a line, or a \r to strip
    # The first space of each line ends its capture time.
    spaces = np.flatnonzero(buf == 32)
    first = np.searchsorted(spaces, starts)
    if (first >= len(spaces)).any():
        return None
    space = spaces[first]
    head = space - starts
    if ((head < 15) | (head > 19) | (space >= ends)).any():
        return None
    value = np.zeros(len(starts), np.uint64)  # 19 digits fit uint64; int64 is checked below
    for j in range(19):  # digits left to right, as int() reads them
        inside = j < head
        digit = buf[np.minimum(starts + j, len(buf) - 1)].astype(np.int64) - 48
        if ((digit[inside] < 0) | (digit[inside] > 9)).any():
            return None
        value = np.where(inside, value * np.uint64(10) + digit.astype(np.uint64), value)
    if (value > np.uint64(2**63 - 1)).any():
        return None
    recv = value.astype(np.int64)
    # Drop every head, its space and the newline: the payloads then lie back to back.
    cut = np.zeros(len(buf) + 1, np.int64)
    cut[starts] = 1  # a line starts after the previous one's newline: never where a head ends
    cut[space + 1] -= 1
    keep = np.cumsum(cut[:-1]) == 0
    keep[ends[ends < len(buf)]] = False
    lengths = ends - space - 1
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    payloads = pa.Array.from_buffers(pa.large_string(), len(starts),
                                     [None, pa.py_buffer(offsets), pa.py_buffer(buf[keep])])
    try:
        payloads.validate(full=True)  # the UTF-8 that orjson would refuse
    except pa.ArrowInvalid:
        return None
    return recv, payloads
