"""The simulator's event loop: Hawkes arrivals, a latent fair price, an L3 book and scripted agents.

One call advances one instrument until ``t_stop_ns`` or until the output buffer is nearly full;
all state lives in arrays the caller keeps, so stopping and resuming yields the same stream
(output is identical whatever the buffer size or day boundaries).

Model, per event (times from a two-kernel exponential Hawkes process, exact Dassios-Zhao draws):

* the fair price (float, grid ticks) diffuses, jumps now and then, and moves with each
  marketable order (permanent impact);
* an event is an add, a cancel or a marketable order, chosen by weight; the cancel weight is a
  hazard times the number of resting orders, which keeps the book size stationary;
* adds are placed ``D`` ticks behind a fair-price reference (``D`` = 0 with some probability,
  else Pareto-distributed), never crossing the book;
* cancels prefer stale touches (bid above fair, ask below fair), then the touch, else any order;
* marketable order signs come from a few long-lived metaorders with Pareto lengths (long memory
  of trade signs, Lillo-Mike-Farmer) or from the fair/mid mispricing; some execute against
  hidden liquidity (no book change).

Scripted agent operations (``ops`` int64[k, 8] rows sorted by time: time_ns, op, side, offset
ticks, size lots, slot, episode, aux) plant the ground-truth episodes. ``aux`` is the total for
an iceberg, the sweep limit in ticks for a marketable order, the share in permille for a
withdrawal, and for an add 1 (its price is the episode's price), 2 (add at the episode's price),
3 (join the front of its level's queue: the next opposite aggressor at that price fills it first,
how a passive child that holds queue priority is filled; an iceberg's peak and refills do too)
or 4 (a wall: while it rests, the fair price stays a tick off it, so the price leans on it
instead of trading through it). A fill (``OP_FILL``) with a size executes that many lots of the
queue up to and including the slot's order, else all of it. ``OP_REGIME`` sets the regime
multipliers (volatility ``aux`` and event rate ``size`` in permille, fair-price drift ``off`` in
milli-ticks per second, signed); ``OP_BUSY`` raises the slow Hawkes excitation to ``aux``
permille of its mean (a busy period). ``ep_mark`` records each episode's first engine-timed
decisive event (an iceberg's first refill).
Outputs are event rows: type (``EV_*``), order id, side (0 bid / 1 ask: for executions the
resting side, as LOBSTER), grid price, size in lots, venue time and receive time.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.sim_book import B_BEST_ASK, B_BEST_BID, B_GRID, B_NLIVE, book_add, book_remove, book_to_front
from kernels.sim_rng import lognormal_int, normal, pareto_int, randint, uniform

PARAM_NAMES = (
    "rate_hz",
    "fast_branch",
    "fast_decay_hz",
    "slow_branch",
    "slow_decay_hz",
    "w_add",
    "w_mkt",
    "cancel_hazard",
    "fair_sigma_ticks",
    "impact_ticks",
    "jump_p",
    "jump_ticks",
    "half_spread_ticks",
    "place_p0",
    "place_scale",
    "place_alpha",
    "place_max_ticks",
    "lsize_median",
    "lsize_sigma",
    "round_p",
    "round_lot",
    "msize_median",
    "msize_sigma",
    "meta_p",
    "meta_alpha",
    "meta_k",
    "hidden_p",
    "misprice_gain",
    "cancel_touch_p",
    "stale_cancel_p",
    "lat_min_ns",
    "lat_mean_ns",
    "max_sweep_ticks",
    "stale_ticks",
    "vol_cluster",
    "anchor",
    "improve_p",
)
P = {name: i for i, name in enumerate(PARAM_NAMES)}

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


def new_state(t0_ns: int, fair_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Fresh ``(st int64[16], fs float64[8])`` at ``t0_ns``, the fair price at grid index ``fair_px``."""
    st = np.zeros(S_SIZE, np.int64)
    st[S_T_NEXT] = t0_ns
    st[S_LAST_RECV] = t0_ns
    st[S_ICE_NEXT] = -1
    fs = np.zeros(F_SIZE, np.float64)
    fs[F_FAIR] = fair_px
    # neutral regime: multiplying by exactly 1.0 and adding 0.0 keeps unplanted runs unchanged
    fs[F_VOL] = 1.0
    fs[F_RATE] = 1.0
    return st, fs


def stationary_excitation(fs: np.ndarray, par: np.ndarray) -> None:
    """Start both Hawkes kernels at their long-run mean so the rate needs no ramp-up."""
    fs[F_E_FAST] = par[P["rate_hz"]] * par[P["fast_branch"]]
    fs[F_E_SLOW] = par[P["rate_hz"]] * par[P["slow_branch"]]


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
def _market(bk, slots, out, n, t, aggr, size, sweep_ticks, st, rng, par):
    """Walk the opposite side FIFO; returns (n, lots executed)."""
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


@njit(cache=True)
def _run_op(bk, slots, out, n, op, fs, st, ep_px, ep_end, ep_count, rng, par):
    ist = bk[13]
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
                return n
            st[S_ICE_ACTIVE] = 0
            st[S_ICE_NEXT] = -1
        if slots[slot] >= 0:
            n = _cancel(bk, slots, out, n, t, slots[slot], st, rng, par)
    elif code == OP_MKT:
        if ep_px[ep] < 0:
            ep_px[ep] = ist[B_BEST_ASK] if side == 0 else ist[B_BEST_BID]
        n, _ = _market(bk, slots, out, n, t, side, size, aux, st, rng, par)
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
            n, _ = _market(bk, slots, out, n, t, 1 - oside, need, grid, st, rng, par)
    elif code == OP_JUMP:
        if ep_px[ep] < 0:
            ep_px[ep] = ist[B_BEST_BID] if side == 0 else ist[B_BEST_ASK]
        fs[F_FAIR] += off
    elif code == OP_WITHDRAW:
        touch = ist[B_BEST_BID] if side == 0 else ist[B_BEST_ASK]
        if ep_px[ep] < 0:
            ep_px[ep] = touch
        for step in range(off + 1):
            p = touch - step if side == 0 else touch + step
            if p < 0 or p >= grid:
                break
            k = bk[1][side, p]
            while k >= 0:
                nxt = bk[7][k]
                if bk[9][k] >= 0 and randint(rng, 1000) < aux:
                    n = _cancel(bk, slots, out, n, t, k, st, rng, par)
                k = nxt
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
def _run_due(bk, slots, out, n, lim, ops, fs, st, ep_px, ep_end, ep_count, ep_mark, rng, par):
    while True:
        t_op = ops[st[S_OP_PTR], 0] if st[S_OP_PTR] < len(ops) else _NEVER
        t_ice = st[S_ICE_NEXT] if st[S_ICE_NEXT] >= 0 else _NEVER
        if min(t_op, t_ice) >= lim:
            return n
        if t_ice <= t_op:
            n = _iceberg(bk, slots, out, n, t_ice, st, ep_end, ep_count, ep_mark, rng, par)
        else:
            n = _run_op(bk, slots, out, n, ops[st[S_OP_PTR]], fs, st, ep_px, ep_end, ep_count, rng, par)
            st[S_OP_PTR] += 1
        _ice_check(slots, st, rng, min(t_op, t_ice))


@njit(cache=True)
def _ice_check(slots, st, rng, t):
    # the peak is gone (filled): schedule the refill 0-50 ms later, as the plant specifies
    if st[S_ICE_ACTIVE] == 1 and st[S_ICE_NEXT] < 0 and slots[st[S_ICE_SLOT]] < 0:
        st[S_ICE_NEXT] = t + randint(rng, 50_000_001)


@njit(cache=True)
def _lean_on_wall(fs, st, slots):
    # a standing wall holds the price: trading happens at the level in front of it, not through it
    if slots[st[S_WALL_SLOT]] < 0:
        st[S_WALL_ON] = 0
    elif st[S_WALL_SIDE] == 0 and fs[F_FAIR] < st[S_WALL_PX] + 2.0:
        fs[F_FAIR] = st[S_WALL_PX] + 2.0
    elif st[S_WALL_SIDE] == 1 and fs[F_FAIR] > st[S_WALL_PX] - 1.0:
        fs[F_FAIR] = st[S_WALL_PX] - 1.0


@njit(cache=True)
def _hawkes_dt(fs, rng, par):
    """Seconds to the next event of a baseline + two exponential kernels (exact superposition)."""
    mu = par[0] * (1.0 - par[1] - par[3])
    best = -math.log(uniform(rng)) / mu
    for j in range(2):
        e, beta = fs[F_E_FAST + j], par[2 + 2 * j]
        if e > 0.0:
            d = 1.0 + beta * math.log(uniform(rng)) / e
            if d > 0.0:
                s = -math.log(d) / beta
                if s < best:
                    best = s
    fs[F_E_FAST] = fs[F_E_FAST] * math.exp(-par[2] * best) + par[1] * par[2]
    fs[F_E_SLOW] = fs[F_E_SLOW] * math.exp(-par[4] * best) + par[3] * par[4]
    # a planted regime's rate scale stretches the clock: every intensity, excited or not, scales
    return best / fs[F_RATE]


@njit(cache=True)
def run(
    bk,
    slots,
    out,
    ops,
    fs,
    st,
    meta_sign,
    meta_left,
    ep_px,
    ep_end,
    ep_count,
    ep_mark,
    rng,
    par,
    t_stop_ns,
    reserve,
):
    """Advance one instrument until ``t_stop_ns`` or until fewer than ``reserve`` output rows are free.

    Returns the number of rows written into ``out`` (which restarts at row 0 on every call).
    """
    ist = bk[13]
    grid = ist[B_GRID]
    cap = len(out[0])
    n = 0
    while True:
        t = st[S_T_NEXT]
        n = _run_due(
            bk, slots, out, n, min(t, t_stop_ns), ops, fs, st, ep_px, ep_end, ep_count, ep_mark, rng, par
        )
        if t >= t_stop_ns or n > cap - reserve:
            return n
        # volatility follows the slow (minutes) excitation: busy periods are also volatile ones
        busy = fs[F_E_SLOW] / (par[0] * par[3]) if par[3] > 0.0 else 1.0
        bb, ba = ist[B_BEST_BID], ist[B_BEST_ASK]
        fair = fs[F_FAIR] + par[8] * fs[F_VOL] * (busy ** par[34]) * normal(rng)
        if uniform(rng) < par[10] * fs[F_VOL]:
            fair += par[11] * (1.0 if uniform(rng) < 0.5 else -1.0) * (-math.log(uniform(rng)))
        if bb >= 0 and ba < grid:
            # the fair value is pulled toward the book's mid: prices move through the queues
            # a calm regime (volatility scale < 1) loosens the pull and a drift removes it: the
            # book follows the fair price instead
            pull = min(fs[F_VOL], 1.0) if fs[F_DRIFT] == 0.0 else 0.0
            fair += par[35] * pull * (0.5 * (bb + ba + 1) - fair)
        margin = par[16] + 10.0
        fs[F_FAIR] = min(max(fair, margin), grid - margin)
        if st[S_WALL_ON] == 1:
            _lean_on_wall(fs, st, slots)
        w_cancel = par[7] * ist[B_NLIVE]
        u = uniform(rng) * (par[5] + par[6] + w_cancel)
        if u < par[5]:
            side = randint(rng, 2)
            size = lognormal_int(rng, par[17], par[18], 1)
            if uniform(rng) < par[19]:
                size = int(par[20]) * (1 + (randint(rng, 4) == 0))
            px = _place(fs, side, rng, par)
            if uniform(rng) < par[36] and bb >= 0 and ba < grid and ba - bb > 2:
                # pennying: step one tick inside a wide spread (small-tick books live on this)
                px = bb + 1 if side == 0 else ba - 1
            n, _ = _add(bk, slots, out, n, t, side, px, size, True, -1, st, rng, par)
        elif u < par[5] + par[6]:
            if uniform(rng) < par[23]:
                j = randint(rng, int(par[25]))
                if meta_left[j] <= 0:
                    meta_sign[j] = randint(rng, 2)
                    meta_left[j] = pareto_int(rng, par[24])
                aggr = meta_sign[j]
                meta_left[j] -= 1
            else:
                mid = 0.5 * (bb + ba) if (bb >= 0 and ba < grid) else fs[F_FAIR]
                p_buy = 1.0 / (1.0 + math.exp(-par[27] * (fs[F_FAIR] - mid)))
                aggr = 0 if uniform(rng) < p_buy else 1
            size = lognormal_int(rng, par[21], par[22], 1)
            if uniform(rng) < par[26] and bb >= 0 and ba < grid:
                # hidden liquidity inside the spread: reported with the resting (opposite) side
                px = (bb + ba + 1) // 2 if aggr == 0 else (bb + ba) // 2
                n = _emit(out, n, t, EV_HIDDEN, 0, 1 - aggr, px, size, st, rng, par)
            else:
                n, size = _market(bk, slots, out, n, t, aggr, size, int(par[32]), st, rng, par)
            fs[F_FAIR] += par[9] * fs[F_VOL] * (1.0 if aggr == 0 else -1.0) * math.sqrt(size / par[21])
        elif ist[B_NLIVE] > 0:
            k = -1
            r = uniform(rng)
            if r < par[29] and bb >= 0 and bb > fs[F_FAIR] - par[12] + par[33]:
                k = _touch_order(bk, 0, rng)
            elif r < par[29] and ba < grid and ba < fs[F_FAIR] + par[12] - par[33]:
                k = _touch_order(bk, 1, rng)
            elif r < par[29] + par[28]:
                k = _touch_order(bk, randint(rng, 2), rng)
            if k < 0:
                k = bk[12][randint(rng, ist[B_NLIVE])]
            n = _cancel(bk, slots, out, n, t, k, st, rng, par)
        _ice_check(slots, st, rng, t)
        dt_s = _hawkes_dt(fs, rng, par)
        # a planted drift (price creep) moves the fair price with time, not with events
        fs[F_FAIR] += fs[F_DRIFT] * dt_s
        dt_ns = int(dt_s * 1e9)
        st[S_T_NEXT] = t + (dt_ns if dt_ns > 0 else 1)
