"""Exact, vectorized decimal text -> int64 nanos (1e-9 units) for CSV columns.

The common shape (``-?digits[.digits]`` with at most 9 decimals and at most 10 integer digits)
is split with one regex over the whole Arrow column and combined with integer arithmetic, so no
value ever passes through a float. Anything else (exponents, sub-nano digits, huge values,
garbage) falls back to :func:`tapeflow.venues.base.to_nanos`, which either parses it exactly or
names the reason it cannot.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import BadNumber
from tapeflow.wire.numbers import to_nanos

_SIMPLE = r"^(?P<sign>-?)(?P<whole>\d{1,10})(?:\.(?P<frac>\d{0,9}))?$"
_WHOLE_MAX = (2**63 - 1) // 1_000_000_000  # 9_223_372_036: larger whole parts take the exact slow path


def decimals_to_nanos(
    texts: pa.Array | pa.ChunkedArray, *, allow_negative: bool = False, empty_value: int | None = None
) -> tuple[np.ndarray, dict[int, BadNumber]]:
    """Parse a string column of decimals exactly into int64 nanos.

    Args:
        texts: Arrow strings, e.g. ``"9682"``, ``"0.132"``, ``"-1.5"``, ``"1e-3"``.
        allow_negative: whether values below zero are valid.
        empty_value: the value of an empty or null cell; None makes it a ``missing_field`` error.

    Returns:
        int64[n] values (0 where the row failed) and ``{row: BadNumber}`` for the rows that
        failed, each with its reason (``bad_number``, ``negative``, ``out_of_range``,
        ``missing_field``).
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = texts.cast(pa.string())
    n = len(texts)
    values = np.zeros(n, dtype=np.int64)
    errors: dict[int, BadNumber] = {}
    if n == 0:
        return values, errors
    parts = pc.extract_regex(texts, _SIMPLE)
    matched = parts.is_valid().to_numpy(zero_copy_only=False)
    if matched.any():
        whole = pc.fill_null(parts.field("whole"), "0")
        frac = pc.fill_null(parts.field("frac"), "")
        frac9 = pc.utf8_rpad(frac, width=9, padding="0")
        whole_i = pc.cast(pc.if_else(parts.is_valid(), whole, "0"), pa.int64()).to_numpy(zero_copy_only=False)
        frac_i = pc.cast(pc.if_else(parts.is_valid(), frac9, "0"), pa.int64()).to_numpy(zero_copy_only=False)
        negative = pc.equal(pc.fill_null(parts.field("sign"), ""), "-").to_numpy(zero_copy_only=False)
        matched &= whole_i <= _WHOLE_MAX
        magnitude = np.where(matched, whole_i, 0) * 1_000_000_000 + np.where(matched, frac_i, 0)
        matched &= magnitude >= 0  # the largest whole part can still overflow with its fraction
        values = np.where(negative, -magnitude, magnitude).astype(np.int64)
        values[~matched] = 0
        if not allow_negative:
            for row in np.nonzero(matched & negative & (magnitude != 0))[0].tolist():
                errors[row] = BadNumber("negative", texts[row].as_py())
                values[row] = 0
    for row in np.nonzero(~matched)[0].tolist():
        text = texts[row].as_py()
        if text is None or not text.strip():
            if empty_value is None:
                errors[row] = BadNumber("missing_field", text)
            else:
                values[row] = empty_value
            continue
        try:
            values[row] = to_nanos(text, allow_negative=allow_negative)
        except BadNumber as exc:
            errors[row] = exc
    return values, errors
