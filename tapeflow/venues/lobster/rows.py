"""Compiled checks and row builders of the LOBSTER block path (one pass each, no Python per row).

The checks are those of :mod:`tapeflow.venues.lobster.lines` on the scanned values; a line that
fails one is not ``good`` and goes to the per-line parser, which writes its reject. The builders
map the ``good`` lines to rows as ``parse.py``'s module docstring says (the per-line path's
``_Chunk`` is the reference they are tested against).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tapeflow.schemas.records import (
    ASK,
    BID,
    F_HIDDEN,
    F_LAST,
    F_MAYBE_BAD_BOOK,
    L3_ADD,
    L3_CANCEL,
    L3_FILL,
    L3_NONE,
    NO_SIDE,
    SCALE,
    UNDEF_PRICE,
    UNDEF_TS,
)
from tapeflow.venues.lobster.lines import DAY_NS, HOUR_NS
from tapeflow.venues.lobster.messages import EMPTY_ASK_PRICE, EMPTY_BID_PRICE, PRICE_UNIT_NANOS
from tapeflow.wire.numbers import I64_MAX

_MAX_PRICE = I64_MAX // PRICE_UNIT_NANOS
_MAX_SIZE = I64_MAX // SCALE


@njit(cache=True, nogil=True)
def check_messages(values: np.ndarray, ok: np.ndarray, epoch_ns: int, offsets_ns: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Which scanned message lines pass the per-line checks, and their UTC times.

    Args:
        values: int64[n, 6] Time (ns after local midnight), Type, OrderID, Size, Price, Direction;
            a halt's Size and Direction are set to 0 in place (they mean nothing).
        ok: bool[n], the lines the scanner matched.
        epoch_ns, offsets_ns: the day's wall clock (``lines.wall_clock``).

    Returns:
        ``good`` bool[n] and ``ts_ns`` int64[n] (UNDEF_TS where not good).
    """
    n = len(ok)
    good = np.zeros(n, np.bool_)
    ts_ns = np.full(n, UNDEF_TS, np.int64)
    for i in range(n):
        if not ok[i]:
            continue
        seconds, kind, oid, size, price, direction = (values[i, 0], values[i, 1], values[i, 2], values[i, 3],
                                                      values[i, 4], values[i, 5])
        if seconds >= DAY_NS or kind < 1 or kind > 7 or oid < 0:
            continue
        if kind == 7:
            if price < -1 or price > 1:
                continue
            values[i, 3] = 0
            values[i, 5] = 0
        elif (size <= 0 or size > _MAX_SIZE or price <= 0 or price > _MAX_PRICE
              or (direction != 1 and direction != -1)):
            continue
        good[i] = True
        ts_ns[i] = epoch_ns + seconds - offsets_ns[seconds // HOUR_NS]
    return good, ts_ns


@njit(cache=True, nogil=True)
def check_books(grid: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Which scanned orderbook lines (int64[n, 4 * levels]) pass the per-line checks."""
    n, width = grid.shape
    good = ok.copy()
    for i in range(n):
        if not good[i]:
            continue
        for j in range(0, width, 2):
            price, size = grid[i, j], grid[i, j + 1]
            if size < 0 or size > _MAX_SIZE:
                good[i] = False
            elif price == EMPTY_ASK_PRICE or price == EMPTY_BID_PRICE:
                if size != 0:
                    good[i] = False
            elif price <= 0 or price > _MAX_PRICE:
                good[i] = False
    return good


@njit(cache=True, nogil=True)
def message_rows(values: np.ndarray, good: np.ndarray, ts_ns: np.ndarray, first: int) -> tuple:
    """``order_event`` and ``trade`` columns of the good message lines (sequence = ``first`` + line).

    Returns:
        order events (ts_ns, sequence, order_id, action, side, price_nanos, size_nanos, flags) then
        trades (ts_ns, sequence, price_nanos, size_nanos, aggressor_side, flags).
    """
    n = len(good)
    n_ev = 0
    n_tr = 0
    for i in range(n):
        if good[i]:
            kind = values[i, 1]
            n_ev += 2 if kind == 4 else (0 if kind == 5 or kind == 6 else 1)
            n_tr += 1 if 4 <= kind <= 6 else 0
    e_ts, e_seq, e_oid = np.empty(n_ev, np.int64), np.empty(n_ev, np.int64), np.empty(n_ev, np.int64)
    e_act, e_side, e_flags = np.empty(n_ev, np.uint8), np.empty(n_ev, np.uint8), np.empty(n_ev, np.uint8)
    e_px, e_sz = np.empty(n_ev, np.int64), np.empty(n_ev, np.int64)
    t_ts, t_seq, t_px, t_sz = (np.empty(n_tr, np.int64), np.empty(n_tr, np.int64), np.empty(n_tr, np.int64),
                               np.empty(n_tr, np.int64))
    t_aggr, t_flags = np.empty(n_tr, np.uint8), np.empty(n_tr, np.uint8)
    e = 0
    t = 0
    for i in range(n):
        if not good[i]:
            continue
        kind, oid, size = values[i, 1], values[i, 2], values[i, 3]
        price, direction = values[i, 4], values[i, 5]
        px = price * PRICE_UNIT_NANOS
        sz = size * SCALE
        side = BID if direction == 1 else ASK
        if kind != 5 and kind != 6:
            count = 2 if kind == 4 else 1
            for r in range(count):
                e_ts[e], e_seq[e], e_oid[e], e_px[e], e_sz[e] = ts_ns[i], first + i, oid, px, sz
                e_side[e] = side
                e_flags[e] = F_LAST
                if kind == 1:
                    e_act[e] = L3_ADD
                elif kind == 7:
                    e_act[e] = L3_NONE
                    e_side[e] = NO_SIDE
                    e_sz[e] = 0
                    e_flags[e] = F_LAST if price == 1 else F_LAST | F_MAYBE_BAD_BOOK
                elif kind == 4 and r == 0:  # the fill, then the cancel that changes the book
                    e_act[e] = L3_FILL
                    e_flags[e] = 0
                else:
                    e_act[e] = L3_CANCEL
                e += 1
        if 4 <= kind <= 6:
            t_ts[t], t_seq[t], t_px[t], t_sz[t] = ts_ns[i], first + i, px, sz
            # Direction names the resting order: the aggressor is the other side
            t_aggr[t] = NO_SIDE if kind == 6 else (ASK if direction == 1 else BID)
            t_flags[t] = F_HIDDEN if kind == 5 else 0
            t += 1
    return (e_ts, e_seq, e_oid, e_act, e_side, e_px, e_sz, e_flags, t_ts, t_seq, t_px, t_sz, t_aggr, t_flags)


@njit(cache=True, nogil=True)
def book_rows(grid: np.ndarray, good: np.ndarray, msg_ts_ns: np.ndarray, first: int) -> tuple:
    """``book_snapshot`` columns of the good orderbook lines: (ts_ns, sequence, then flat
    int64[rows * levels] ask prices, ask sizes, bid prices, bid sizes); an empty level is
    UNDEF_PRICE / 0, a row's time is its message's (the caller keeps rows without one out of
    ``good``: no snapshot at UNDEF_TS)."""
    n, width = grid.shape
    levels = width // 4
    rows = 0
    for i in range(n):
        rows += good[i]
    ts, seq = np.empty(rows, np.int64), np.empty(rows, np.int64)
    ask_px, ask_sz = np.empty(rows * levels, np.int64), np.empty(rows * levels, np.int64)
    bid_px, bid_sz = np.empty(rows * levels, np.int64), np.empty(rows * levels, np.int64)
    r = 0
    for i in range(n):
        if not good[i]:
            continue
        ts[r] = msg_ts_ns[i] if i < len(msg_ts_ns) else UNDEF_TS
        seq[r] = first + i
        for lv in range(levels):
            at = r * levels + lv
            px, sz = grid[i, 4 * lv], grid[i, 4 * lv + 1]
            absent = px == EMPTY_ASK_PRICE and sz == 0
            ask_px[at] = UNDEF_PRICE if absent else px * PRICE_UNIT_NANOS
            ask_sz[at] = 0 if absent else sz * SCALE
            px, sz = grid[i, 4 * lv + 2], grid[i, 4 * lv + 3]
            absent = px == EMPTY_BID_PRICE and sz == 0
            bid_px[at] = UNDEF_PRICE if absent else px * PRICE_UNIT_NANOS
            bid_sz[at] = 0 if absent else sz * SCALE
        r += 1
    return ts, seq, ask_px, ask_sz, bid_px, bid_sz
