"""Planted episodes of the flow and regime kinds: institutional meta-orders, price creep,
volatility contraction, walls and spikes, each with its look-alike (SIMULATOR.md's table).

Every planter writes engine operations into the plan and returns the episode's parameters:
``side`` (``B``/``A``/``N``), ``decisive_ns`` (the moment latency is measured from; see
docs/simulator.md for the moment of each kind) and whatever a person needs to judge the plant.
Regime plants (creep, contraction, the spike look-alike and the quiet look-alike) switch the
engine's one regime state on and off, so they never overlap each other (the ``regime`` lane).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.sim_orders import OP_ADD, OP_CANCEL, OP_FILL, OP_JUMP, OP_MKT, OP_REGIME
from tapeflow.simulator.presets import Preset
from tapeflow.simulator.script import MS, EpisodePlan, S

# aux of an add that joins the front of its level's queue, and of a wall (kernels.sim_engine)
_PRIORITY = 3
_WALL = 4
_NEUTRAL = dict(aux=1000, size=1000, off=0)


def _regime(plan: EpisodePlan, t: int, ep: int, *, vol: float, rate: float, drift_ticks_s: float) -> None:
    plan._op(
        t,
        OP_REGIME,
        ep,
        aux=int(round(vol * 1000)),
        size=int(round(rate * 1000)),
        off=int(round(drift_ticks_s * 1000)),
    )


def _passive_child(plan: EpisodePlan, rng: np.random.Generator, ep: int, t: int, side: int, size: int) -> int:
    """A child resting at the touch with queue priority, filled by a counterparty 0.3-3 s later.

    The counterparty trades down to the child's price (taking any better level someone stepped in
    at meanwhile), so the child fills whatever the book did in between.
    """
    slot = plan._slot()
    plan._op(t, OP_ADD, ep, side=side, size=size, slot=slot, aux=_PRIORITY)
    t_hit = t + int(rng.uniform(0.3, 3.0) * S)
    plan._op(t_hit, OP_FILL, ep, slot=slot)
    # whatever the counterparty left (a background trade got there first) is withdrawn
    plan._op(t_hit + MS, OP_CANCEL, ep, slot=slot)
    return t_hit


def _mm_quotes(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, end: int
) -> int:
    """A market maker quoting both sides around the touch, re-quoting every 0.2-1 s."""
    t, live, quotes = t0, [], 0
    while t < end:
        for s in live:
            plan._op(t, OP_CANCEL, ep, slot=s)
        live = [plan._slot(), plan._slot()]
        for side, s in zip((0, 1), live, strict=True):
            size = max(1, int(preset.median_order_lots * rng.uniform(0.5, 2.0)))
            plan._op(t, OP_ADD, ep, side=side, off=int(rng.integers(0, 3)), size=size, slot=s)
        quotes += 1
        t += int(rng.uniform(0.2, 1.0) * S)
    for s in live:
        plan._op(t, OP_CANCEL, ep, slot=s)
    return quotes


def institutional(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    """A parent worked over minutes through passive and aggressive children, market-maker quotes around.

    Look-alike: a market maker's two-sided flow of the same volume (children on both sides, half
    each, so the net is near zero). Decisive moment: the child at which the parent's volume
    reaches 50x the median trade (the parent is 60-200x).
    """
    trade = preset.median_trade_lots
    total = int(trade * rng.uniform(60, 200))
    # children of about one median trade each, so an aggressive child takes the touch and no more
    children = int(np.clip(total / (trade * rng.uniform(0.5, 1.5)), 20, 400))
    end = t0 + min(int(rng.uniform(120, 360) * S), span)
    side = int(rng.integers(0, 2))
    child = max(1, total // children)
    times = np.sort(rng.uniform(t0, end, children)).astype(np.int64)
    sides = rng.permutation(np.arange(children) % 2) if look else np.full(children, side)
    passive = rng.uniform(size=children) < rng.uniform(0.2, 0.4)
    if look:
        # half of each kind on each side (alternating in time), not half of all: drawn
        # independently, 24 passive children once split 17/7, one-sided enough to read as a parent
        for idx in (np.nonzero(passive)[0], np.nonzero(~passive)[0]):
            if len(idx):
                sides[idx] = (np.arange(len(idx)) + sides[idx[0]]) % 2
    aggressive_lots = [0, 0]
    done, decisive, last = 0, int(times[-1]), int(times[-1])
    for t, s, pas in zip(times, sides, passive, strict=True):
        if pas:
            last = max(last, _passive_child(plan, rng, ep, int(t), int(s), child))
        else:
            # off=1: a worked child, its remainder re-sent until filled (kernels.sim_agents)
            plan._op(
                int(t), OP_MKT, ep, side=int(s), off=1, size=child, aux=int(preset.params["max_sweep_ticks"])
            )
            aggressive_lots[int(s)] += child
        done += child
        if done >= 50 * trade and decisive == int(times[-1]):
            decisive = int(t)
    quotes = _mm_quotes(plan, rng, preset, ep, t0, last)
    return dict(
        side="N" if look else "BA"[side],
        size_lots=child * children,
        child_lots=child,
        children=children,
        passive_children=int(passive.sum()),
        aggressive_buy_lots=aggressive_lots[0],
        aggressive_sell_lots=aggressive_lots[1],
        mm_quotes=quotes,
        decisive_ns=decisive,
    )


def creep(
    plan: EpisodePlan,
    rng: np.random.Generator,
    preset: Preset,
    ep: int,
    t0: int,
    span: int,
    look: bool,
    duration_ns: int | None = None,
) -> dict[str, Any]:
    """A slow one-directional drift at low volatility with one-sided passive fills.

    Look-alike: a quiet period with no drift (event rate down to 20-40%). Decisive moment:
    30 s into the drift (or half its span when shorter). ``duration_ns``: the drift's length
    drawn by the overlap planner (which gives a creep a cluster of its own length); else 60-180 s
    drawn here, clipped to ``span``.
    """
    if duration_ns is not None:
        end = t0 + int(duration_ns)
    else:
        end = t0 + min(int(rng.uniform(60, 180) * S), span)
    if look:
        rate = float(rng.uniform(0.2, 0.4))
        _regime(plan, t0, ep, vol=1.0, rate=rate, drift_ticks_s=0.0)
        plan._op(end, OP_REGIME, ep, **_NEUTRAL)
        return dict(side="N", rate_scale=rate, decisive_ns=t0 + min(30 * S, (end - t0) // 2))
    side = int(rng.integers(0, 2))
    drift = float(rng.uniform(0.25, 0.4) * preset.sigma_1s_ticks) * (1 if side == 0 else -1)
    vol = float(rng.uniform(0.25, 0.5))
    _regime(plan, t0, ep, vol=vol, rate=1.0, drift_ticks_s=drift)
    plan._op(end, OP_REGIME, ep, **_NEUTRAL)
    t, fills = t0 + int(rng.uniform(0.5, 3.0) * S), 0
    while t < end - 3 * S:
        _passive_child(plan, rng, ep, t, side, max(1, int(preset.median_trade_lots * rng.uniform(0.5, 2.0))))
        fills += 1
        t += int(rng.uniform(2.0, 6.0) * S)
    return dict(
        side="BA"[side],
        drift_ticks_per_s=round(drift, 4),
        vol_scale=round(vol, 3),
        passive_fills=fills,
        decisive_ns=t0 + min(30 * S, (end - t0) // 2),
    )


def contraction(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    """A stretch of compressed range: per-event volatility at 5-15%, activity unchanged.

    Look-alike: a quiet period (event rate down to 20-40%, per-event volatility unchanged: the
    range shrinks only with activity). Decisive moment: 30 s in (or half the span when shorter).
    """
    end = t0 + min(int(rng.uniform(60, 180) * S), span)
    decisive = t0 + min(30 * S, (end - t0) // 2)
    if look:
        rate = float(rng.uniform(0.2, 0.4))
        _regime(plan, t0, ep, vol=1.0, rate=rate, drift_ticks_s=0.0)
        plan._op(end, OP_REGIME, ep, **_NEUTRAL)
        return dict(side="N", rate_scale=rate, decisive_ns=decisive)
    vol = float(rng.uniform(0.05, 0.15))
    _regime(plan, t0, ep, vol=vol, rate=1.0, drift_ticks_s=0.0)
    plan._op(end, OP_REGIME, ep, **_NEUTRAL)
    return dict(side="N", vol_scale=round(vol, 3), decisive_ns=decisive)


def wall(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    """A resting order of 15-50x median depth 1-3 ticks behind the touch that stays (the price
    leans on it and other aggressors stop in front of it), then is pulled or eaten (``outcome``);
    eating takes 3-8 chunks over 2-8 s.

    Look-alike: the same order cancelled 50-500 ms after it appears. Decisive moment: the
    wall's appearance (its add).
    """
    side = int(rng.integers(0, 2))
    size = int(preset.median_depth_lots * rng.uniform(15, 50))
    slot = plan._slot()
    # the look-alike is gone at once: it takes no hold of the price (nor of the engine's one wall state)
    mark = 1 if look else _WALL
    plan._op(t0, OP_ADD, ep, side=side, off=int(rng.integers(1, 4)), size=size, slot=slot, aux=mark)
    if look:
        plan._op(t0 + int(rng.uniform(50, 500) * MS), OP_CANCEL, ep, slot=slot)
        return dict(side="BA"[side], size_lots=size, outcome="cancelled_at_once", decisive_ns=t0)
    stay = min(int(rng.uniform(20, 90) * S), max(span - 10 * S, span // 2))
    t_out = t0 + stay
    if rng.uniform() < 0.5:
        plan._op(t_out, OP_CANCEL, ep, slot=slot)
        return dict(side="BA"[side], size_lots=size, outcome="pulled", gone_ns=t_out, decisive_ns=t0)
    chunks = int(rng.integers(3, 9))
    times = np.sort(rng.uniform(t_out, t_out + rng.uniform(2, 8) * S, chunks)).astype(np.int64)
    for k, t in enumerate(times):
        # the last chunk takes whatever is left (size 0 = the whole queue up to the wall)
        plan._op(int(t), OP_FILL, ep, slot=slot, size=0 if k == chunks - 1 else size // chunks)
    return dict(
        side="BA"[side],
        size_lots=size,
        outcome="eaten",
        eat_start_ns=int(times[0]),
        gone_ns=int(times[-1]),
        decisive_ns=t0,
    )


def spike(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    """A jump of 8-12 sigma (1 s mid changes, preset baseline) with a sweep of the levels it crosses.

    Look-alike: a jump of 1.5-2.5 baseline sigma with the same sweep, in the middle of a 60-120 s
    stretch whose per-event volatility is raised eightfold: a jump inside normal (local) volatility.
    Decisive moment: the jump.
    """
    side = int(rng.integers(0, 2))
    z = float(rng.uniform(1.5, 2.5) if look else rng.uniform(8, 12))
    ticks = max(2 if look else 4, int(round(z * preset.sigma_1s_ticks)))
    t_jump = t0
    if look:
        end = t0 + min(int(rng.uniform(60, 120) * S), span)
        _regime(plan, t0, ep, vol=8.0, rate=1.0, drift_ticks_s=0.0)
        plan._op(end, OP_REGIME, ep, **_NEUTRAL)
        t_jump = t0 + (end - t0) // 2
    plan._op(t_jump, OP_JUMP, ep, side=side, off=ticks if side == 0 else -ticks)
    sweep = int(preset.median_depth_lots * rng.uniform(5, 15))
    # offset 2: the sweep takes at least the levels the jump crosses (a 24k-lot crypto level at
    # the touch once held a whole 5-15x-depth sweep, and the mid moved 2.5 ticks of 18: seed 677298)
    plan._op(t_jump, OP_MKT, ep, side=side, off=2, size=sweep, aux=ticks)
    return dict(side="BA"[side], jump_ticks=ticks, sigmas=round(z, 2), sweep_lots=sweep, decisive_ns=t_jump)
