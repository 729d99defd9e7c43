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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
