"""Raw book-level inputs for the DeepLOB-like model (``ExampleParams.book_levels`` > 0).

Per grid row ``t`` (one ``book_snapshot`` row; nothing else is read, so no row after ``t`` can reach
it), for levels ``i = 1 .. L`` of each side:

* ``book_bid_ticks_<i>`` = ``(mid - bid_i) / tick``, ``book_ask_ticks_<i>`` = ``(ask_i - mid) / tick``:
  the level's distance from the mid in ticks (NaN where the level or the mid is missing);
* ``book_bid_logsize_<i>``, ``book_ask_logsize_<i>``: ``log1p(size)`` in units (0 where the level is
  missing: no depth there);
* ``book_mid_change_ticks``: ``(mid_t - mid_{t-1}) / tick`` against the previous grid row (NaN on the
  first row or where a mid is missing): the only input that reads an earlier row.

``tick`` is the row's own price increment: the greatest common divisor of every level price's
distance from the best bid (or best ask on a book without bids), so it needs no instrument reference
and no other row; it can exceed the true tick when every gap in a sparse book is a multiple of it.
The model's input at ``t`` is the last ``T`` rows of these columns (``tapeflow.ml.dataset.windows``),
standardized with the training rows' statistics (``tapeflow.ml.dataset.Scaler``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kernels.metrics import UNDEF

UNIT = 1e9  # sizes are 1e-9 fixed point


def book_input_names(levels: int) -> list[str]:
    """The raw-book input columns for ``levels`` per side, in matrix order (empty for 0)."""
    if levels <= 0:
        return []
    return [*(f"book_{side}_ticks_{i}" for side in ("bid", "ask") for i in range(1, levels + 1)),
            *(f"book_{side}_logsize_{i}" for side in ("bid", "ask") for i in range(1, levels + 1)),
            "book_mid_change_ticks"]


def _padded(column: pa.ChunkedArray, levels: int, fill: int) -> np.ndarray:
    """int64[n, levels]: the first ``levels`` entries of each list row, ``fill`` past its end."""
    arr = column.combine_chunks()
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy()
    n = len(offsets) - 1
    out = np.full((n, levels), fill, np.int64)
    count = np.minimum(np.diff(offsets), levels)
    for i in range(levels):
        has = count > i
        out[has, i] = values[offsets[:-1][has] + i]
    return out


def book_inputs(snapshots: pa.Table, levels: int) -> dict[str, np.ndarray]:
    """The columns of :func:`book_input_names` (float64[n] each) for one instrument's snapshot rows."""
    bid_px = _padded(snapshots.column("bid_price_nanos"), levels, UNDEF)
    ask_px = _padded(snapshots.column("ask_price_nanos"), levels, UNDEF)
    bid_sz = _padded(snapshots.column("bid_size_nanos"), levels, 0)
    ask_sz = _padded(snapshots.column("ask_size_nanos"), levels, 0)
    bid_ok, ask_ok = bid_px != UNDEF, ask_px != UNDEF
    anchor = np.where(bid_ok[:, 0], bid_px[:, 0], np.where(ask_ok[:, 0], ask_px[:, 0], 0))
    gaps = np.concatenate([np.where(bid_ok, np.abs(bid_px - anchor[:, None]), 0),
                           np.where(ask_ok, np.abs(ask_px - anchor[:, None]), 0)], axis=1)
    tick = np.gcd.reduce(gaps, axis=1).astype(np.float64) if len(gaps) else np.zeros(0)
    tick[tick <= 0] = np.nan  # a single price: no increment to read
    two_sided = bid_ok[:, 0] & ask_ok[:, 0]
    mid = np.where(two_sided, (bid_px[:, 0].astype(np.float64) + ask_px[:, 0]) / 2.0, np.nan)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore"):
        for i in range(levels):
            out[f"book_bid_ticks_{i + 1}"] = np.where(bid_ok[:, i], (mid - bid_px[:, i]) / tick, np.nan)
            out[f"book_ask_ticks_{i + 1}"] = np.where(ask_ok[:, i], (ask_px[:, i] - mid) / tick, np.nan)
        for i in range(levels):
            out[f"book_bid_logsize_{i + 1}"] = np.log1p(np.maximum(bid_sz[:, i], 0) / UNIT)
            out[f"book_ask_logsize_{i + 1}"] = np.log1p(np.maximum(ask_sz[:, i], 0) / UNIT)
        change = np.full(len(mid), np.nan)
        change[1:] = (mid[1:] - mid[:-1]) / tick[1:]
    out["book_mid_change_ticks"] = change
    return out
