"""Compiled checks and row builders of the ``sim`` block path (one pass each, no Python per row).

:func:`check_lines` makes the stateless checks of :func:`tapeflow.venues.sim.lines.parse_line` on
the scanned values (a line failing one goes to that parser, which writes its reject);
:func:`event_rows` walks the good lines with the snapshot state of the per-line decoder
(``parse._State``, the reference it is tested against) and builds the ``order_event`` and
``trade`` columns.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tapeflow.schemas.records import (
    ASK,
    BID,
    F_HIDDEN,
    F_LAST,
    F_SNAPSHOT,
    L3_ADD,
    L3_CANCEL,
    L3_CLEAR,
    L3_FILL,
    L3_TRADE,
    NO_SIDE,
)

# column of each field in the scanned values; type and side are byte codes
TS_EVENT, TS_RECV, SEQ, TYPE, ORDER_ID, SIDE, PRICE, SIZE = range(8)
R, S, A, D, E, H = (ord(c) for c in "RSADEH")


@njit(cache=True, nogil=True)
def check_lines(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Which scanned lines (int64[n, 8]) pass ``parse_line``'s checks (the side's byte is its code)."""
    n = len(ok)
    good = ok.copy()
    for i in range(n):
        if not good[i]:
            continue
        typ, side = values[i, TYPE], values[i, SIDE]
        if typ != R and typ != S and typ != A and typ != D and typ != E and typ != H:
            good[i] = False
        elif side != BID and side != ASK:
            good[i] = False
        elif (typ == A or typ == D or typ == E or typ == S) and (values[i, SIZE] == 0
                                                                   or values[i, ORDER_ID] == 0):
            good[i] = False
    return good


@njit(cache=True, nogil=True)
def event_rows(values: np.ndarray, good: np.ndarray) -> tuple:
    """``order_event`` and ``trade`` columns of the good lines, with the snapshot state.

    A file's state starts outside a snapshot: ``R`` opens one (a clear), ``S`` adds a resting
    order to it, any other type closes it and its last row gets ``F_LAST``; the chunk's end
    closes one still open (the caller cuts chunks outside snapshots, so that is the file's end).

    Returns:
        ``outside`` bool[n] (the ``S`` lines outside a snapshot: rejected), order events
        (ts_event_ns, ts_recv_ns, sequence, order_id, action, side, price_nanos, size_nanos,
        flags), trades (ts_event_ns, ts_recv_ns, sequence, price_nanos, size_nanos,
        aggressor_side, flags, line).
    """
    n = len(good)
    outside = np.zeros(n, np.bool_)
    n_ev = 0
    n_tr = 0
    in_snap = False
    for i in range(n):
        if not good[i]:
            continue
        typ = values[i, TYPE]
        if typ == S and not in_snap:
            outside[i] = True
            continue
        in_snap = typ == R or (typ == S and in_snap)
        n_ev += 3 if typ == E else 1
        n_tr += 1 if typ == E or typ == H else 0
    ev = np.empty((6, n_ev), np.int64)  # ts_event, ts_recv, seq, order_id, price, size
    e_act, e_side, e_flags = np.empty(n_ev, np.uint8), np.empty(n_ev, np.uint8), np.empty(n_ev, np.uint8)
    tr = np.empty((6, n_tr), np.int64)  # ts_event, ts_recv, seq, price, size, line
    t_aggr, t_flags = np.empty(n_tr, np.uint8), np.empty(n_tr, np.uint8)
    e = 0
    t = 0
    in_snap = False
    snap_last = -1
    for i in range(n):
        if not good[i] or outside[i]:
            continue
        typ, side = values[i, TYPE], values[i, SIDE]
        if typ != S and in_snap:
            e_flags[snap_last] |= F_LAST  # the snapshot's last row re-anchors the book
            in_snap = False
        other = ASK if side == BID else BID
        count = 3 if typ == E else 1
        for r in range(count):
            ev[0, e], ev[1, e], ev[2, e] = values[i, TS_EVENT], values[i, TS_RECV], values[i, SEQ]
            ev[3, e], ev[4, e], ev[5, e] = values[i, ORDER_ID], values[i, PRICE], values[i, SIZE]
            e_side[e] = side
            e_flags[e] = F_LAST
            if typ == R:
                ev[3, e], ev[4, e], ev[5, e] = 0, 0, 0
                e_act[e], e_side[e], e_flags[e] = L3_CLEAR, NO_SIDE, F_SNAPSHOT
                in_snap = True
                snap_last = e
            elif typ == S:
                e_act[e], e_flags[e] = L3_ADD, F_SNAPSHOT
                snap_last = e
            elif typ == A:
                e_act[e] = L3_ADD
            elif typ == D:
                e_act[e] = L3_CANCEL
            elif r == 0:  # E and H: the aggressor's trade, which changes no order
                ev[3, e] = 0
                e_act[e], e_side[e] = L3_TRADE, other
                e_flags[e] = F_LAST if typ == H else 0
            elif r == 1:  # E: the resting order's fill, then the cancel that changes the book
                e_act[e], e_flags[e] = L3_FILL, 0
            else:
                e_act[e] = L3_CANCEL
            e += 1
        if typ == E or typ == H:
            tr[0, t], tr[1, t], tr[2, t] = values[i, TS_EVENT], values[i, TS_RECV], values[i, SEQ]
            tr[3, t], tr[4, t], tr[5, t] = values[i, PRICE], values[i, SIZE], i
            t_aggr[t] = other
            t_flags[t] = F_HIDDEN if typ == H else 0
            t += 1
    if in_snap:
        e_flags[snap_last] |= F_LAST
    return outside, ev, e_act, e_side, e_flags, tr, t_aggr, t_flags
