"""L3 order events of one ``sim`` instrument -> aggregated L2 ``book_delta`` rows (vectorized)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit

from tapeflow.errors import TapeflowError
from tapeflow.schemas.records import (
    ASK,
    BID,
    BOOK_DELTA,
    F_MAYBE_BAD_BOOK,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    L3_ADD,
    L3_CANCEL,
    L3_CLEAR,
    NO_SIDE,
)


def l3_to_l2(order_events: pa.Table, levels: dict[tuple[int, int], int] | None = None, *,
             instrument: tuple[str, str] | None = None) -> pa.Table:
    """Aggregate the L3 events of ONE instrument into L2 ``book_delta`` rows (vectorized).

    Each ``A`` adds its size to its level and each ``C`` removes its size; the row carries the
    level's new absolute size (``U``, or ``D`` when it reaches 0). ``R`` clears the book. ``T``
    and ``F`` change nothing (the ``C`` that follows does), so they give no row. Flags and
    sequence are copied, so ``F_SNAPSHOT``/``F_LAST`` re-anchor an L2 replay exactly where they
    re-anchor the L3 book.

    Args:
        order_events: an ``order_event`` table in arrival order (one venue/symbol); modify
            (``M``) rows are not supported.
        levels: level sizes ``{(side, price_nanos): size_nanos}`` before the first row, updated
            in place to the state after the last one (carry it between chunks).
        instrument: ``(venue, symbol)`` of every row, when the caller knows it (no per-row copy).

    A cancel that would take a level below zero (an order the stream never added) leaves the
    level at 0 and flags that row ``F_MAYBE_BAD_BOOK``: bad input is flagged, not fatal.

    Raises:
        TapeflowError: a modify row.
    """
    levels = {} if levels is None else levels
    action = order_events.column("action").to_numpy()
    if (action == ord("M")).any():
        raise TapeflowError(
            f"l3_to_l2 does not support modify rows (first at row {int(np.argmax(action == 77))})"
        )
    rows = np.flatnonzero((action == L3_ADD) | (action == L3_CANCEL) | (action == L3_CLEAR))
    cols = {
        n: order_events.column(n).to_numpy()[rows]
        for n in ("ts_event_ns", "ts_recv_ns", "sequence", "side", "price_nanos", "size_nanos", "flags")
    }
    act = action[rows]
    out_size, flags = _level_sizes(levels, act, cols["side"], cols["price_nanos"], cols["size_nanos"],
                                   cols["flags"])
    l2_action = np.where(act == L3_CLEAR, L2_CLEAR, np.where(out_size > 0, L2_SET, L2_DELETE)).astype(
        np.uint8
    )
    side = np.where(act == L3_CLEAR, NO_SIDE, cols["side"]).astype(np.uint8)
    price = np.where(act == L3_CLEAR, 0, cols["price_nanos"])
    if instrument is not None:
        venue, symbol = (pa.repeat(pa.scalar(v, BOOK_DELTA[n].arrow_type), len(rows))
                         for v, n in zip(instrument, ("venue", "symbol"), strict=True))
    else:
        venue, symbol = (order_events.column(n).take(pa.array(rows)) for n in ("venue", "symbol"))
    return BOOK_DELTA.table(
        dict(
            ts_event_ns=cols["ts_event_ns"],
            ts_recv_ns=cols["ts_recv_ns"],
            venue=venue,
            symbol=symbol,
            sequence=cols["sequence"],
            side=side,
            action=l2_action,
            price_nanos=price,
            size_nanos=out_size,
            flags=flags,
        )
    )


def _level_sizes(levels: dict[tuple[int, int], int], act: np.ndarray, side: np.ndarray, price: np.ndarray,
                 size: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's level size after it (a negative one shown as 0 and flagged), ``levels`` updated."""
    key = price.astype(np.int64) * 2 + (side == ASK)
    uniq, inverse = np.unique(key, return_inverse=True)
    init = np.array([levels.get((ASK if k & 1 else BID, k >> 1), 0) for k in uniq.tolist()], np.int64)
    after, final, last_row, last_clear = _running_sizes(act, inverse.reshape(-1), size.astype(np.int64), init)
    if last_clear >= 0:
        levels.clear()
    for k, s, row in zip(uniq.tolist(), final.tolist(), last_row.tolist(), strict=True):
        if row > last_clear:  # touched since the last clear: a level the book holds (0 included)
            levels[(ASK if k & 1 else BID, k >> 1)] = s
    bad = after < 0
    return np.where(bad, 0, after), np.where(bad, flags | F_MAYBE_BAD_BOOK, flags).astype(np.uint8)


@njit(cache=True, nogil=True)
def _running_sizes(act: np.ndarray, inverse: np.ndarray, size: np.ndarray, init: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    # level sizes run on through a negative value (a cancel of an order never added): the row
    # shows 0, flagged, and the level stays below zero for the rows after it, as it always has
    sizes = init.copy()
    last_row = np.full(len(init), -1, np.int64)
    after = np.zeros(len(act), np.int64)
    last_clear = -1
    for i in range(len(act)):
        if act[i] == L3_CLEAR:
            sizes[:] = 0
            last_clear = i
            continue
        k = inverse[i]
        sizes[k] += size[i] if act[i] == L3_ADD else -size[i]
        after[i] = sizes[k]
        last_row[k] = i
    return after, sizes, last_row, last_clear
