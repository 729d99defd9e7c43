"""Checks over the raw buffers of an Arrow string column (offsets and bytes; no pyarrow here)."""

from __future__ import annotations

import numba
import numpy as np

_BLOCK = 4096


@numba.njit(cache=True)
def repeats_first(offsets: np.ndarray, data: np.ndarray) -> bool:
    """True when every string equals the first: the same length, then the same bytes.

    Args:
        offsets: int32[n + 1] string offsets into ``data`` (an Arrow string array's), n >= 1.
        data: uint8[...] the array's character bytes.
    """
    n = offsets.shape[0] - 1
    width = offsets[1] - offsets[0]
    for i in range(1, n):
        if offsets[i + 1] - offsets[i] != width:
            return False
    # equal lengths: the strings tile [start, end), so all equal the first iff the bytes repeat
    # with period ``width``; OR-ing the differences a block at a time lets the loop vectorize
    start = offsets[0]
    end = start + n * width
    for lo in range(start + width, end, _BLOCK):
        diff = 0
        for i in range(lo, min(end, lo + _BLOCK)):
            diff |= data[i] ^ data[i - width]
        if diff:
            return False
    return True
