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

Scripted agent operations (run by ``kernels.sim_agents``; ``ops`` int64[k, 8] rows sorted by time:
time_ns, op, side, offset ticks, size lots, slot, episode, aux) plant the ground-truth episodes.
``aux`` is the total for an iceberg, the sweep limit in ticks for a marketable order (with
``offset`` 1, a worked child: what it could not fill is re-sent 500 ms later until filled), the
share in permille for a withdrawal (due while its side of the book is empty, it waits for the side
to refill: retried every 10 ms, its time recorded in ``ep_mark``), and for an add: 1 (its price is
the episode's price), 2 (add at the episode's price), 3 (join the front of its level's queue: the
next opposite aggressor at that price fills it first, how a passive child that holds queue
priority is filled; an iceberg's peak and refills do too) or 4 (a wall: while it rests, the fair
price stays a tick off it, so the price leans on it instead of trading through it). A fill
(``OP_FILL``) with a size executes that many lots of the queue up to and including the slot's
order, else all of it. ``OP_REGIME`` sets the regime multipliers (volatility ``aux`` and event
rate ``size`` in permille, fair-price drift ``off`` in milli-ticks per second, signed);
``OP_BUSY`` raises the slow Hawkes excitation to ``aux`` permille of its mean (a busy period).
``ep_mark`` records each episode's first engine-timed decisive event (an iceberg's first refill, a
withdrawal's pull). ``ops`` is reordered in place when a withdrawal waits or a worked child is
re-sent.
Outputs are event rows: type (``EV_*``), order id, side (0 bid / 1 ask: for executions the
resting side, as LOBSTER), grid price, size in lots, venue time and receive time.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.sim_agents import ice_check, lean_on_wall, run_due
from kernels.sim_book import B_BEST_ASK, B_BEST_BID, B_GRID, B_NLIVE
from kernels.sim_orders import (
    EV_HIDDEN,
    F_DRIFT,
    F_E_FAST,
    F_E_SLOW,
    F_FAIR,
    F_RATE,
    F_SIZE,
    F_VOL,
    S_ICE_NEXT,
    S_LAST_RECV,
    S_SIZE,
    S_T_NEXT,
    S_WALL_ON,
    _add,
    _cancel,
    _emit,
    _market,
    _place,
    _touch_order,
)
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
    "edge_pull",
)
P = {name: i for i, name in enumerate(PARAM_NAMES)}



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
        n = run_due(
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
            # book follows the fair price instead.
            # Orders are placed so that fair values in [k, k + 1) make the mid k + 0.5: the target
            # is a cell edge half a tick off the mid, where small moves of the fair price move the
            # book (the realism bands were fitted with it: the mid itself as target moves the crypto
            # L2 update mix out of its band). ``edge_pull`` 1: the nearer edge, so a step up is as
            # likely as a step down. 0 (the equity preset): always the upper edge, the engine before
            # 2026-12-07, which made buyers the mispricing's favourite and walked the crypto book up
            # 0.44 tick/s (docs/simulator.md "Background drift"). A calm regime pulls to the mid
            # itself (an edge target walked a contraction's book through the ticks: seed 582422).
            pull = min(fs[F_VOL], 1.0) if fs[F_DRIFT] == 0.0 else 0.0
            mid = 0.5 * (bb + ba)
            if fs[F_VOL] < 1.0:
                target = mid
            elif par[37] > 0.0 and fair < mid:
                target = mid - 0.5
            else:
                target = mid + 0.5
            fair += par[35] * pull * (target - fair)
        margin = par[16] + 10.0
        fs[F_FAIR] = min(max(fair, margin), grid - margin)
        if st[S_WALL_ON] == 1:
            lean_on_wall(fs, st, slots)
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
                # a calm regime shortens sweeps too: a heavy-tailed aggressor would break its range
                sweep = int(par[32] * min(fs[F_VOL], 1.0))
                n, size = _market(bk, slots, out, n, t, aggr, size, sweep, True, st, rng, par)
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
        ice_check(slots, st, rng, t)
        dt_s = _hawkes_dt(fs, rng, par)
        # a planted drift (price creep) moves the fair price with time, not with events
        fs[F_FAIR] += fs[F_DRIFT] * dt_s
        dt_ns = int(dt_s * 1e9)
        st[S_T_NEXT] = t + (dt_ns if dt_ns > 0 else 1)
