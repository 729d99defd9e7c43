"""The scripted agents of the simulator: the operations that plant episodes, run at their times.

``run_due`` executes every operation (and iceberg refill) due before a limit; ``ice_check`` and
``lean_on_wall`` keep the iceberg and wall states current after each background event. See
``kernels.sim_engine`` for the operation rows and what each ``aux`` means.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.sim_book import B_BEST_ASK, B_BEST_BID, B_GRID, book_to_front
from kernels.sim_orders import (
    _NEVER,
    F_DRIFT,
    F_E_SLOW,
    F_FAIR,
    F_RATE,
    F_VOL,
    OP_ADD,
    OP_BUSY,
    OP_CANCEL,
    OP_FILL,
    OP_ICE,
    OP_ICE_END,
    OP_JUMP,
    OP_MKT,
    OP_REGIME,
    OP_WITHDRAW,
    S_ICE_ACTIVE,
    S_ICE_EP,
    S_ICE_LEFT,
    S_ICE_NEXT,
    S_ICE_PEAK,
    S_ICE_PX,
    S_ICE_SIDE,
    S_ICE_SLOT,
    S_OP_PTR,
    S_WALL_ON,
    S_WALL_PX,
    S_WALL_SIDE,
    S_WALL_SLOT,
    _add,
    _cancel,
    _market,
    _place,
)
from kernels.sim_rng import randint

# a withdrawal due while its side of the book is empty is retried this much later
_RETRY_NS = 10_000_000
# a worked child's unfilled remainder is re-sent this much later
_RESEND_NS = 500_000_000
_WORKED = 1
# an OP_MKT offset: the order takes at least every lot within its sweep limit (a spike's sweep
# must cross the levels its jump crosses, even when one holds more than the planned size)
_CLEAR = 2
# an OP_MKT offset: a block sweep waits for a touch to hit (retried every 10 ms while the
# opposite side is empty, as a withdrawal waits) and marks when it ran in ``ep_mark``
_WAITS = 3


@njit(cache=True)
def _depth_within(bk, opp, ticks):
    """Lots resting on side ``opp`` from its touch to ``ticks`` levels beyond it."""
    ist = bk[13]
    first = ist[B_BEST_ASK] if opp == 1 else ist[B_BEST_BID]
    total = 0
    for step in range(ticks + 1):
        p = first + step if opp == 1 else first - step
        if p < 0 or p >= ist[B_GRID]:
            break
        total += bk[0][opp, p]
    return total


@njit(cache=True)
def _run_op(bk, slots, out, n, op, fs, st, ep_px, ep_end, ep_count, rng, par):
    """Run one operation; returns (rows written so far, lots a marketable order executed)."""
    ist = bk[13]
    done = 0
    t, code, side, off, size, slot, ep, aux = op[0], op[1], op[2], op[3], op[4], op[5], op[6], op[7]
    grid = ist[B_GRID]
    if code == OP_ADD or code == OP_ICE:
        touch = ist[B_BEST_BID] if side == 0 else ist[B_BEST_ASK]
        if touch < 0 or touch >= grid:
            touch = _place(fs, side, rng, par)
        px = touch - off if side == 0 else touch + off
        if code == OP_ADD and aux == 2 and ep_px[ep] >= 0:
            px = ep_px[ep]
        n, k = _add(bk, slots, out, n, t, side, px, size, False, slot, st, rng, par)
        if k >= 0 and code == OP_ADD and aux == 3:
            book_to_front(bk, k)
        if k >= 0 and code == OP_ADD and aux == 4:
            st[S_WALL_ON] = 1
            st[S_WALL_SLOT] = slot
            st[S_WALL_PX] = bk[5][k]
            st[S_WALL_SIDE] = side
        if k >= 0 and ep_px[ep] < 0 and (code == OP_ICE or aux == 1 or aux == 2 or aux == 4):
            ep_px[ep] = bk[5][k]
        if code == OP_ICE and k >= 0:
            book_to_front(bk, k)
            st[S_ICE_ACTIVE] = 1
            st[S_ICE_SLOT] = slot
            st[S_ICE_LEFT] = aux - size
            st[S_ICE_PX] = bk[5][k]
            st[S_ICE_SIDE] = side
            st[S_ICE_PEAK] = size
            st[S_ICE_NEXT] = -1
            st[S_ICE_EP] = ep
    elif code == OP_CANCEL or code == OP_ICE_END:
        if code == OP_ICE_END:
            if st[S_ICE_ACTIVE] == 0:
                return n, 0
            st[S_ICE_ACTIVE] = 0
            st[S_ICE_NEXT] = -1
        if slots[slot] >= 0:
            n = _cancel(bk, slots, out, n, t, slots[slot], st, rng, par)
    elif code == OP_MKT:
        if ep_px[ep] < 0:
            ep_px[ep] = ist[B_BEST_ASK] if side == 0 else ist[B_BEST_BID]
        if off == _CLEAR:
            size = max(size, _depth_within(bk, 1 - side, aux))
        n, done = _market(bk, slots, out, n, t, side, size, aux, True, st, rng, par)
    elif code == OP_FILL:
        k = slots[slot]
        if k >= 0:
            oside, opx = bk[4][k], bk[5][k]
            need = 0
            p = ist[B_BEST_BID] if oside == 0 else ist[B_BEST_ASK]
            while p != opx:
                need += bk[0][oside, p]
                p = p - 1 if oside == 0 else p + 1
            j = bk[1][oside, opx]
            while j != k:
                need += bk[6][j]
                j = bk[7][j]
            need += bk[6][k]
            if size > 0 and size < need:
                need = size
            n, _ = _market(bk, slots, out, n, t, 1 - oside, need, grid, False, st, rng, par)
    elif code == OP_JUMP:
        if ep_px[ep] < 0:
            ep_px[ep] = ist[B_BEST_BID] if side == 0 else ist[B_BEST_ASK]
        fs[F_FAIR] += off
    elif code == OP_WITHDRAW:
        touch = ist[B_BEST_BID] if side == 0 else ist[B_BEST_ASK]
        if ep_px[ep] < 0:
            ep_px[ep] = touch
        n = _withdraw(bk, slots, out, n, t, side, touch, off, aux, st, rng, par)
    elif code == OP_REGIME:
        fs[F_VOL] = aux / 1000.0
        fs[F_RATE] = size / 1000.0
        fs[F_DRIFT] = off / 1000.0
    elif code == OP_BUSY:
        level = aux / 1000.0 * par[0] * par[3]
        if fs[F_E_SLOW] < level:
            fs[F_E_SLOW] = level
    if ep >= 0 and t > ep_end[ep]:
        ep_end[ep] = t
    return n, done


@njit(cache=True)
def _withdraw(bk, slots, out, n, t, side, touch, ticks, share, st, rng, par):
    """Pull ``share`` permille of the depth within ``ticks`` of ``touch`` at once (SIMULATOR.md: "depth
    within N ticks pulled by more than half"): the band's cancellable orders, in random order, until
    that much of the band's whole depth is gone (the plan's own orders stay: a band they hold most of
    loses what it can). A coin per order pulled 60-90 % of the orders but, their sizes differing,
    sometimes less than half the depth (3 of 24 plants on development seed 101)."""
    grid = bk[13][B_GRID]
    total = 0
    count = 0
    for step in range(ticks + 1):
        p = touch - step if side == 0 else touch + step
        if p < 0 or p >= grid:
            break
        total += bk[0][side, p]
        k = bk[1][side, p]
        while k >= 0:
            if bk[9][k] >= 0:
                count += 1
            k = bk[7][k]
    pool = np.empty(count, np.int64)
    i = 0
    for step in range(ticks + 1):
        p = touch - step if side == 0 else touch + step
        if p < 0 or p >= grid:
            break
        k = bk[1][side, p]
        while k >= 0:
            if bk[9][k] >= 0:
                pool[i] = k
                i += 1
            k = bk[7][k]
    target = (total * share + 999) // 1000
    pulled = 0
    for i in range(count):
        if pulled >= target:
            break
        j = i + randint(rng, count - i)
        k = pool[j]
        pool[j] = pool[i]
        pulled += bk[6][k]
        n = _cancel(bk, slots, out, n, t, k, st, rng, par)
    return n


@njit(cache=True)
def _iceberg(bk, slots, out, n, t, st, ep_end, ep_count, ep_mark, rng, par):
    """Refill the iceberg's peak at its price, or end it when nothing is left to show."""
    st[S_ICE_NEXT] = -1
    side, px = st[S_ICE_SIDE], st[S_ICE_PX]
    opp_touch = bk[13][B_BEST_ASK] if side == 0 else bk[13][B_BEST_BID]
    crossed = px >= opp_touch if side == 0 else px <= opp_touch
    if st[S_ICE_LEFT] <= 0 or crossed:
        st[S_ICE_ACTIVE] = 0
        return n
    size = min(st[S_ICE_PEAK], st[S_ICE_LEFT])
    n, k = _add(bk, slots, out, n, t, side, px, size, False, st[S_ICE_SLOT], st, rng, par)
    if k >= 0:
        # the peak keeps its place at the front: behind a deep queue the plan's aggressors
        # would otherwise never reach it within the episode
        book_to_front(bk, k)
        st[S_ICE_LEFT] -= size
        ep = st[S_ICE_EP]
        ep_count[ep] += 1
        if ep_mark[ep] < 0:
            ep_mark[ep] = t
        if t > ep_end[ep]:
            ep_end[ep] = t
    return n


@njit(cache=True)
def _side_empty(bk, side):
    ist = bk[13]
    return ist[B_BEST_BID] < 0 if side == 0 else ist[B_BEST_ASK] >= ist[B_GRID]


@njit(cache=True)
def _postpone(ops, i, t):
    """Move operation ``i`` to time ``t``, behind every operation due at or before ``t``."""
    ops[i, 0] = t
    while i + 1 < len(ops) and ops[i + 1, 0] <= t:
        for c in range(ops.shape[1]):
            ops[i, c], ops[i + 1, c] = ops[i + 1, c], ops[i, c]
        i += 1


@njit(cache=True)
def run_due(bk, slots, out, n, lim, ops, fs, st, ep_px, ep_end, ep_count, ep_mark, rng, par):
    while True:
        t_op = ops[st[S_OP_PTR], 0] if st[S_OP_PTR] < len(ops) else _NEVER
        t_ice = st[S_ICE_NEXT] if st[S_ICE_NEXT] >= 0 else _NEVER
        if min(t_op, t_ice) >= lim:
            return n
        if t_ice <= t_op:
            n = _iceberg(bk, slots, out, n, t_ice, st, ep_end, ep_count, ep_mark, rng, par)
        elif ops[st[S_OP_PTR], 1] == OP_WITHDRAW and _side_empty(bk, ops[st[S_OP_PTR], 2]):
            # no touch to pull depth from (a thin book swept bare): the pull waits for the side to
            # refill, so every withdrawal happens at a touch; retried every 10 ms, ops stay sorted
            _postpone(ops, st[S_OP_PTR], t_op + _RETRY_NS)
        elif ops[st[S_OP_PTR], 1] == OP_MKT and ops[st[S_OP_PTR], 3] == _WAITS and _side_empty(
            bk, 1 - ops[st[S_OP_PTR], 2]
        ):
            # a sweep into a bare side would trade nothing and have no price (seed 339848)
            _postpone(ops, st[S_OP_PTR], t_op + _RETRY_NS)
        else:
            op = ops[st[S_OP_PTR]]
            n, done = _run_op(bk, slots, out, n, op, fs, st, ep_px, ep_end, ep_count, rng, par)
            if (op[1] == OP_WITHDRAW or (op[1] == OP_MKT and op[3] == _WAITS)) and ep_mark[op[6]] < 0:
                ep_mark[op[6]] = op[0]
            if op[1] == OP_MKT and op[3] == _WORKED and done < op[4]:
                # a worked child (off=1) the book could not fill within its sweep limit (a thin or
                # bare opposite side): its remainder is re-sent, so the parent trades in full
                op[4] -= done
                _postpone(ops, st[S_OP_PTR], op[0] + _RESEND_NS)
            else:
                st[S_OP_PTR] += 1
        ice_check(slots, st, rng, min(t_op, t_ice))


@njit(cache=True)
def ice_check(slots, st, rng, t):
    # the peak is gone (filled): schedule the refill 0-50 ms later, as the plant specifies
    if st[S_ICE_ACTIVE] == 1 and st[S_ICE_NEXT] < 0 and slots[st[S_ICE_SLOT]] < 0:
        st[S_ICE_NEXT] = t + randint(rng, 50_000_001)


@njit(cache=True)
def lean_on_wall(fs, st, slots):
    # a standing wall holds the price: trading happens at the level in front of it, not through it
    if slots[st[S_WALL_SLOT]] < 0:
        st[S_WALL_ON] = 0
    elif st[S_WALL_SIDE] == 0 and fs[F_FAIR] < st[S_WALL_PX] + 2.0:
        fs[F_FAIR] = st[S_WALL_PX] + 2.0
    elif st[S_WALL_SIDE] == 1 and fs[F_FAIR] > st[S_WALL_PX] - 1.0:
        fs[F_FAIR] = st[S_WALL_PX] - 1.0
