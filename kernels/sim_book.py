"""Order-book primitives of the market simulator: a price-time FIFO L3 book on a tick grid.

Pure numba over preallocated arrays (no objects), so the event loop in ``sim_engine`` runs at
compiled speed. Sides are 0 bid, 1 ask; prices are grid indices (int, tick units offset from
the instrument's grid base); sizes are lots (int64).

The book state is a tuple of arrays, built by :func:`new_book`:

* ``qty``   int64[2, G]  resting lots per level
* ``head``, ``tail`` int32[2, G]  FIFO ends per level (-1 empty)
* ``o_id``  int64[C]   external order id (0 for a free slot)
* ``o_side`` int8[C], ``o_px`` int32[C], ``o_sz`` int64[C]
* ``o_next``, ``o_prev`` int32[C]  FIFO links
* ``o_pos`` int32[C]   position in the cancellable list (-1 for agent orders, never random-cancelled)
* ``o_slot`` int32[C]  agent slot holding the order (-1 none)
* ``free``  int32[C]   stack of free pool entries; ``live`` int32[C] cancellable pool entries
* ``ist``   int64[8]   counters: see the ``B_*`` indices
"""

from __future__ import annotations

import numpy as np
from numba import njit

# indices into ``ist``
B_NFREE, B_NLIVE, B_BEST_BID, B_BEST_ASK, B_NEXT_ID, B_GRID = 0, 1, 2, 3, 4, 5


def new_book(grid_levels: int, capacity: int) -> tuple:
    """Empty book arrays for ``grid_levels`` price levels and ``capacity`` resting orders."""
    qty = np.zeros((2, grid_levels), np.int64)
    head = np.full((2, grid_levels), -1, np.int32)
    tail = np.full((2, grid_levels), -1, np.int32)
    o_id = np.zeros(capacity, np.int64)
    o_side = np.zeros(capacity, np.int8)
    o_px = np.zeros(capacity, np.int32)
    o_sz = np.zeros(capacity, np.int64)
    o_next = np.full(capacity, -1, np.int32)
    o_prev = np.full(capacity, -1, np.int32)
    o_pos = np.full(capacity, -1, np.int32)
    o_slot = np.full(capacity, -1, np.int32)
    free = np.arange(capacity - 1, -1, -1, dtype=np.int32)
    live = np.zeros(capacity, np.int32)
    ist = np.zeros(8, np.int64)
    ist[B_NFREE] = capacity
    ist[B_BEST_BID] = -1
    ist[B_BEST_ASK] = grid_levels
    ist[B_NEXT_ID] = 1
    ist[B_GRID] = grid_levels
    return (qty, head, tail, o_id, o_side, o_px, o_sz, o_next, o_prev, o_pos, o_slot, free, live, ist)


@njit(cache=True)
def book_add(bk, side, px, size, cancellable, slot):
    """Append an order at the back of level ``px``; returns its pool index (-1 when full)."""
    qty, head, tail, o_id, o_side, o_px, o_sz, o_next, o_prev, o_pos, o_slot, free, live, ist = bk
    if ist[B_NFREE] == 0:
        return -1
    ist[B_NFREE] -= 1
    k = free[ist[B_NFREE]]
    o_id[k] = ist[B_NEXT_ID]
    ist[B_NEXT_ID] += 1
    o_side[k] = side
    o_px[k] = px
    o_sz[k] = size
    o_next[k] = -1
    o_prev[k] = tail[side, px]
    if tail[side, px] >= 0:
        o_next[tail[side, px]] = k
    else:
        head[side, px] = k
    tail[side, px] = k
    qty[side, px] += size
    o_slot[k] = slot
    if cancellable:
        o_pos[k] = ist[B_NLIVE]
        live[ist[B_NLIVE]] = k
        ist[B_NLIVE] += 1
    else:
        o_pos[k] = -1
    if side == 0:
        if px > ist[B_BEST_BID]:
            ist[B_BEST_BID] = px
    elif px < ist[B_BEST_ASK]:
        ist[B_BEST_ASK] = px
    return k


@njit(cache=True)
def book_remove(bk, k, slots):
    """Unlink pool entry ``k`` (fully cancelled or filled) and repair the best prices."""
    qty, head, tail, o_id, o_side, o_px, o_sz, o_next, o_prev, o_pos, o_slot, free, live, ist = bk
    side = o_side[k]
    px = o_px[k]
    qty[side, px] -= o_sz[k]
    if o_prev[k] >= 0:
        o_next[o_prev[k]] = o_next[k]
    else:
        head[side, px] = o_next[k]
    if o_next[k] >= 0:
        o_prev[o_next[k]] = o_prev[k]
    else:
        tail[side, px] = o_prev[k]
    if o_pos[k] >= 0:
        # swap-remove keeps the cancellable list dense so a random pick is O(1)
        last = live[ist[B_NLIVE] - 1]
        live[o_pos[k]] = last
        o_pos[last] = o_pos[k]
        ist[B_NLIVE] -= 1
    if o_slot[k] >= 0:
        slots[o_slot[k]] = -1
    o_pos[k] = -1
    o_slot[k] = -1
    o_id[k] = 0
    o_sz[k] = 0
    free[ist[B_NFREE]] = k
    ist[B_NFREE] += 1
    if head[side, px] < 0:
        grid = ist[B_GRID]
        if side == 0 and px == ist[B_BEST_BID]:
            p = px - 1
            while p >= 0 and head[0, p] < 0:
                p -= 1
            ist[B_BEST_BID] = p
        elif side == 1 and px == ist[B_BEST_ASK]:
            p = px + 1
            while p < grid and head[1, p] < 0:
                p += 1
            ist[B_BEST_ASK] = p


@njit(cache=True)
def book_to_front(bk, k):
    """Move pool entry ``k`` to the head of its level's FIFO (an order holding queue priority)."""
    head, tail, o_side, o_px, o_next, o_prev = bk[1], bk[2], bk[4], bk[5], bk[7], bk[8]
    side, px = o_side[k], o_px[k]
    if head[side, px] == k:
        return
    o_next[o_prev[k]] = o_next[k]
    if o_next[k] >= 0:
        o_prev[o_next[k]] = o_prev[k]
    else:
        tail[side, px] = o_prev[k]
    o_prev[k] = -1
    o_next[k] = head[side, px]
    o_prev[head[side, px]] = k
    head[side, px] = k


@njit(cache=True)
def book_dump(bk):
    """Resting orders in book order (bids best first, then asks best first, FIFO within a level).

    Returns ``(order_id, side, px, size)`` arrays, for a start-of-day snapshot.
    """
    qty, head, tail, o_id, o_side, o_px, o_sz, o_next, o_prev, o_pos, o_slot, free, live, ist = bk
    n = len(o_id) - ist[B_NFREE]
    ids = np.zeros(n, np.int64)
    sides = np.zeros(n, np.int8)
    pxs = np.zeros(n, np.int32)
    szs = np.zeros(n, np.int64)
    j = 0
    grid = ist[B_GRID]
    for side in range(2):
        for i in range(grid):
            p = grid - 1 - i if side == 0 else i
            k = head[side, p]
            while k >= 0:
                ids[j] = o_id[k]
                sides[j] = side
                pxs[j] = p
                szs[j] = o_sz[k]
                j += 1
                k = o_next[k]
    return ids[:j], sides[:j], pxs[:j], szs[:j]


@njit(cache=True)
def l2_touch(side, px, level_size, grid_levels):
    """Best bid/ask on a tick grid BEFORE each L2 level change (for statistics).

    Args:
        side: int8[n] 0 bid / 1 ask; px: int64[n] grid index in [0, grid_levels);
        level_size: int64[n] the level's absolute size after the change (0 empties it).
        grid_levels: number of grid levels.

    Returns:
        ``(bid, ask, bid_size, ask_size)`` int64[n + 1]: entry i is the state before change i,
        entry n the final state; an empty side reports -1 (bid) or ``grid_levels`` (ask), size 0.
    """
    n = len(side)
    lvl = np.zeros((2, grid_levels), np.int64)
    bb = -1
    ba = grid_levels
    out_b = np.empty(n + 1, np.int64)
    out_a = np.empty(n + 1, np.int64)
    out_bs = np.empty(n + 1, np.int64)
    out_as = np.empty(n + 1, np.int64)
    for i in range(n + 1):
        out_b[i] = bb
        out_a[i] = ba
        out_bs[i] = lvl[0, bb] if bb >= 0 else 0
        out_as[i] = lvl[1, ba] if ba < grid_levels else 0
        if i == n:
            break
        s = side[i]
        p = px[i]
        lvl[s, p] = level_size[i]
        if s == 0:
            if level_size[i] > 0 and p > bb:
                bb = p
            elif level_size[i] == 0 and p == bb:
                while bb >= 0 and lvl[0, bb] == 0:
                    bb -= 1
        else:
            if level_size[i] > 0 and p < ba:
                ba = p
            elif level_size[i] == 0 and p == ba:
                while ba < grid_levels and lvl[1, ba] == 0:
                    ba += 1
    return out_b, out_a, out_bs, out_as
