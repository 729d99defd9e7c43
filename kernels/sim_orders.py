"""Order-level primitives of the simulator's engine: emit an event, add, cancel, execute, place.

Shared by the event loop (``kernels.sim_engine``) and the scripted agents that plant episodes
(``kernels.sim_agents``), with the engine's state indices and event/operation codes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.sim_book import B_BEST_ASK, B_BEST_BID, B_GRID, book_add, book_remove
from kernels.sim_rng import uniform

EV_ADD, EV_DELETE, EV_EXEC, EV_HIDDEN = 0, 1, 2, 3
OP_ADD, OP_CANCEL, OP_MKT, OP_FILL, OP_ICE, OP_ICE_END, OP_JUMP, OP_WITHDRAW = 1, 2, 3, 4, 5, 6, 7, 8
OP_REGIME, OP_BUSY = 9, 10

# indices into the int64 engine state ``st``
S_T_NEXT, S_LAST_RECV, S_OP_PTR = 0, 1, 2
S_ICE_ACTIVE, S_ICE_SLOT, S_ICE_LEFT, S_ICE_PX, S_ICE_SIDE, S_ICE_PEAK, S_ICE_NEXT, S_ICE_EP = range(3, 11)
S_WALL_ON, S_WALL_SLOT, S_WALL_PX, S_WALL_SIDE = range(11, 15)
S_SIZE = 16
# indices into the float64 engine state ``fs``
F_FAIR, F_E_FAST, F_E_SLOW, F_VOL, F_RATE, F_DRIFT = 0, 1, 2, 3, 4, 5
F_SIZE = 8
_NEVER = np.int64(2**62)


@njit(cache=True)
def _emit(out, n, t, typ, oid, side, px, sz, st, rng, par):
    ev_t, ev_recv, ev_type, ev_oid, ev_side, ev_px, ev_sz = out
    lat = int(par[30]) + int(-par[31] * math.log(uniform(rng)))
    recv = t + lat
    if recv < st[S_LAST_RECV]:
        recv = st[S_LAST_RECV]
    st[S_LAST_RECV] = recv
    ev_t[n] = t
    ev_recv[n] = recv
    ev_type[n] = typ
    ev_oid[n] = oid
    ev_side[n] = side
    ev_px[n] = px
    ev_sz[n] = sz
    return n + 1


@njit(cache=True)
def _add(bk, slots, out, n, t, side, px, size, cancellable, slot, st, rng, par):
    ist = bk[13]
    grid = ist[B_GRID]
    # post-only: an add never crosses; it joins one tick inside the opposite touch instead
    if side == 0 and px >= ist[B_BEST_ASK]:
        px = ist[B_BEST_ASK] - 1
    elif side == 1 and px <= ist[B_BEST_BID]:
        px = ist[B_BEST_BID] + 1
    if px < 0 or px >= grid or size <= 0:
        return n, -1
    k = book_add(bk, side, px, size, cancellable, slot)
    if k < 0:
        return n, -1
    if slot >= 0:
        slots[slot] = k
    n = _emit(out, n, t, EV_ADD, bk[3][k], side, px, size, st, rng, par)
    return n, k


@njit(cache=True)
def _cancel(bk, slots, out, n, t, k, st, rng, par):
    n = _emit(out, n, t, EV_DELETE, bk[3][k], bk[4][k], bk[5][k], bk[6][k], st, rng, par)
    book_remove(bk, k, slots)
    return n


@njit(cache=True)
def _market(bk, slots, out, n, t, aggr, size, sweep_ticks, wall_stop, st, rng, par):
    """Walk the opposite side FIFO; returns (n, lots executed).

    With ``wall_stop`` the walk stops at a standing wall's level (kernels.sim_agents): only the
    plan eats a wall, so its outcome is the one the episode table states.
    """
    qty, head, o_id, o_sz = bk[0], bk[1], bk[3], bk[6]
    ist = bk[13]
    opp = 1 - aggr
    grid = ist[B_GRID]
    first = ist[B_BEST_ASK] if opp == 1 else ist[B_BEST_BID]
    done = 0
    cap = len(out[0]) - 2
    while done < size and n < cap:
        p = ist[B_BEST_ASK] if opp == 1 else ist[B_BEST_BID]
        if p < 0 or p >= grid or abs(p - first) > sweep_ticks:
            break
        if wall_stop and st[S_WALL_ON] == 1 and opp == st[S_WALL_SIDE] and p == st[S_WALL_PX]:
            if slots[st[S_WALL_SLOT]] >= 0:
                break
        k = head[opp, p]
        q = min(size - done, o_sz[k])
        n = _emit(out, n, t, EV_EXEC, o_id[k], opp, p, q, st, rng, par)
        done += q
        if q == o_sz[k]:
            book_remove(bk, k, slots)
        else:
            o_sz[k] -= q
            qty[opp, p] -= q
    return n, done


@njit(cache=True)
def _place(fs, side, rng, par):
    """Fair-relative limit price (grid index) for a new order on ``side``."""
    fair = fs[F_FAIR]
    if uniform(rng) < par[13]:
        d = 0
    else:
        d = int(par[14] * (uniform(rng) ** (-1.0 / par[15]) - 1.0)) + 1
        if d > par[16]:
            d = int(par[16])
    if side == 0:
        return int(math.floor(fair - par[12])) - d
    return int(math.floor(fair + par[12])) + 1 + d


@njit(cache=True)
def _touch_order(bk, side, rng):
    """The newest cancellable order at the touch of ``side`` (-1 if none)."""
    ist = bk[13]
    p = ist[B_BEST_BID] if side == 0 else ist[B_BEST_ASK]
    if p < 0 or p >= ist[B_GRID]:
        return -1
    k = bk[2][side, p]
    while k >= 0 and bk[9][k] < 0:
        k = bk[8][k]
    return k
