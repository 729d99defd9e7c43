"""Planted ground truth: scripts of agent operations for each episode kind and its look-alike.

Each episode is a short script of engine operations (add, cancel, marketable order, fill,
iceberg, fair-price jump, withdrawal, regime switch) with prices relative to the touch at the
moment the operation runs; the engine reports back the price each episode ended up at and its end
time. Look-alikes are what a naive detector confuses with the real pattern (SIMULATOR.md's table),
so a detector's precision can be measured. The first five kinds are planted here, the others in
``tapeflow.simulator.plants``; ``plan_episodes`` schedules them all, disjoint or overlapping.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from kernels.sim_orders import (
    OP_ADD,
    OP_BUSY,
    OP_CANCEL,
    OP_FILL,
    OP_ICE,
    OP_ICE_END,
    OP_JUMP,
    OP_MKT,
    OP_WITHDRAW,
)
from tapeflow.simulator import plants
from tapeflow.simulator.presets import Preset
from tapeflow.simulator.script import MS as _MS
from tapeflow.simulator.script import EpisodePlan
from tapeflow.simulator.script import S as _S

KINDS = (
    "spoofing",
    "iceberg",
    "absorption",
    "whale",
    "withdrawal",
    "institutional",
    "creep",
    "contraction",
    "wall",
    "spike",
)
SIDE_SIGN = {"B": 1, "A": -1, "N": 0}


def plan_episodes(
    rng: np.random.Generator,
    preset: Preset,
    start_ns: int,
    duration_ns: int,
    *,
    per_kind_per_hour: float = 2.0,
    overlap: bool = False,
) -> EpisodePlan:
    """Plan real and look-alike episodes of every kind over ``[start_ns, start_ns + duration_ns)``.

    By default episodes get disjoint time slots (so one never disturbs another). With ``overlap``
    they are planted in clusters of about three: the cluster's long plant opens it and the others
    start inside it, and a busy period (the slow Hawkes excitation raised to 1.5-2.5x its mean) opens
    the cluster or follows its spike, except where it holds a contraction or a quiet period, as
    in real markets; plants that drive one of the engine's single states (regime, iceberg, wall) stay
    disjoint within their lane. At least one real and one look-alike of
    each kind is planted whatever the duration, none when ``per_kind_per_hour`` is 0.

    Args:
        rng: the instrument's planning generator (seeded: the plan is part of the determinism).
        preset: sizes are multiples of its median depth, order and trade sizes.
        start_ns, duration_ns: the simulated span.
        per_kind_per_hour: real episodes of each kind per simulated hour (as many look-alikes).
        overlap: plant episodes so that they coincide with each other and with busy periods.
    """
    plan = EpisodePlan()
    if per_kind_per_hour <= 0:
        return plan
    per_kind = max(1, int(round(per_kind_per_hour * duration_ns / (3600 * _S))))
    jobs = [(kind, look) for kind in KINDS for look in (False, True) for _ in range(per_kind)]
    order = rng.permutation(len(jobs))
    margin = min(30 * _S, duration_ns // 20)
    if overlap:
        window_ns = duration_ns - 2 * margin
        _plan_overlapping(plan, rng, preset, start_ns + margin, window_ns, [jobs[j] for j in order])
        return plan
    slot_ns = (duration_ns - 2 * margin) // len(jobs)
    for i, j in enumerate(order):
        kind, look = jobs[j]
        t0 = start_ns + margin + i * slot_ns + int(rng.uniform(0.0, 0.2) * slot_ns)
        _plant(plan, rng, preset, kind, look, t0, int(slot_ns * 0.7))
    return plan


def _lane(kind: str, look: bool) -> str:
    if kind == "creep" and not look:
        return "creep"
    if kind in ("creep", "contraction") or (kind == "spike" and look):
        return "regime"
    if kind in ("iceberg", "wall") and not look:
        return kind
    return ""


# a real creep's cluster: the drift starts 0-5% in and ends by the cluster's end, where the next
# cluster's regime plant (0-5% into it) cannot meet it
_CREEP_SHARE = 0.95


def _plan_overlapping(
    plan: EpisodePlan,
    rng: np.random.Generator,
    preset: Preset,
    begin_ns: int,
    window_ns: int,
    jobs: list[tuple[str, bool]],
) -> None:
    lanes = [_lane(kind, look) for kind, look in jobs]
    creeps = [i for i, name in enumerate(lanes) if name == "creep"]
    # A real creep keeps its specified 60-180 s (docs/simulator.md's kinds table; SIMULATOR.md: "a
    # slow one-directional drift"): it gets a cluster of its own length instead of the 0.7 x
    # cluster clip every other plant takes (31 s at 12 per kind per hour, 2026-12-07). Only a run
    # too short for them (the creeps' clusters over half the window) scales them down.
    durations = [rng.uniform(60, 180) * _S for _ in creeps]
    creep_ns = sum(durations) / _CREEP_SHARE
    if creep_ns > 0.5 * window_ns:
        durations = [d * 0.5 * window_ns / creep_ns for d in durations]
        creep_ns = 0.5 * window_ns
    others = len(jobs) - len(creeps)
    # about three plants a cluster, but with creeps no more clusters than leave the regime plants
    # 60 s (0.7 x cluster) or the lanes need: at 12 per kind per hour the regime lane alone fills
    # the time the creeps leave (28 s plants, 31 s before the creeps took theirs)
    wanted = -(-others // 3)
    if creeps:
        wanted = min(wanted - len(creeps), int(0.7 * (window_ns - creep_ns) // (60 * _S)))
    n_regular = max(lanes.count("regime"), lanes.count("iceberg"), lanes.count("wall"), wanted, 1)
    cluster_ns = int((window_ns - creep_ns) // n_regular)
    n_clusters = n_regular + len(creeps)
    # which clusters are the creeps' (shuffled in among the others), and where each one starts
    is_creep = np.zeros(n_clusters, bool)
    is_creep[rng.permutation(n_clusters)[: len(creeps)]] = True
    lengths, k = [], 0
    for c in range(n_clusters):
        if is_creep[c]:
            lengths.append(int(durations[k] / _CREEP_SHARE))
            k += 1
        else:
            lengths.append(cluster_ns)
    starts = begin_ns + np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.int64)
    members: list[list[int]] = [[] for _ in range(n_clusters)]
    duration_of: dict[int, int] = {}
    for c, i in zip(np.flatnonzero(is_creep), creeps, strict=True):
        members[int(c)].append(i)
        duration_of[i] = int(durations[len(duration_of)])
    # the other lane plants fill the clusters in one shuffled round (a lane's plants land in
    # distinct clusters; regime plants only in clusters without a creep: one regime state), so as
    # many clusters as possible hold a long plant the others start inside
    regular = np.flatnonzero(~is_creep)
    perm = regular[rng.permutation(len(regular))]
    everywhere = rng.permutation(n_clusters)
    pos = 0
    for lane in ("regime", "iceberg", "wall"):
        pool = perm if lane == "regime" else everywhere
        for i in (i for i, name in enumerate(lanes) if name == lane):
            members[int(pool[pos % len(pool)])].append(i)
            pos += 1
    for i, name in enumerate(lanes):
        if not name:
            members[int(rng.integers(0, n_clusters))].append(i)
    for c, idx in enumerate(members):
        c0, length = int(starts[c]), lengths[c]
        # lane plants (the long ones) open the cluster; the others start inside them
        idx.sort(key=lambda i: lanes[i] == "")
        for i in idx:
            kind, look = jobs[i]
            lo, hi = (0.0, 0.05) if lanes[i] else (0.05, 0.3)
            t0 = c0 + int(rng.uniform(lo, hi) * length)
            if i in duration_of:
                _plant(plan, rng, preset, kind, look, t0, duration_of[i], duration_ns=duration_of[i])
            else:
                _plant(plan, rng, preset, kind, look, t0, int(length * 0.7))
        mine = [plan.rows[k] for k in range(len(plan.rows) - len(idx), len(plan.rows))]
        if any(r["kind"] in ("contraction", "creep") for r in mine):
            # a contracting or quiet stretch is not busy, nor is a creep: it drifts at low
            # volatility, and the engine makes busy periods volatile
            continue
        # a busy period: from the cluster's start, or right after a real spike (the jump sets it off)
        spikes = [r["decisive_ns"] for r in mine if r["kind"] == "spike" and not r["lookalike"]]
        t_busy = spikes[0] + _MS if spikes else c0
        plan._op(t_busy, OP_BUSY, -1, aux=int(rng.uniform(1500, 2500)))
        plan.busy_ns.append(t_busy)


def _plant(
    plan: EpisodePlan,
    rng: np.random.Generator,
    preset: Preset,
    kind: str,
    look: bool,
    t0: int,
    span: int,
    **kw: Any,
) -> None:
    ep = len(plan.rows)
    params = _PLANTERS[kind](plan, rng, preset, ep, t0, span, look, **kw)
    decisive = params.pop("decisive_ns", None)
    plan.rows.append(
        dict(
            kind=kind,
            lookalike=look,
            start_ns=t0,
            decisive_ns=-1 if decisive is None else int(decisive),
            params=json.dumps(params, sort_keys=True),
        )
    )


def _spoofing(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    depth = preset.median_depth_lots
    if look:
        # a market maker quoting both sides and cancelling often: large quotes, no genuine fill
        t, end = t0, t0 + min(int(rng.uniform(5, 30) * _S), span)
        live: list[int] = []
        quotes = 0
        while t < end:
            for s in live:
                plan._op(t, OP_CANCEL, ep, slot=s)
            live = [plan._slot(), plan._slot()]
            for side, s in zip((0, 1), live, strict=True):
                plan._op(
                    t,
                    OP_ADD,
                    ep,
                    side=side,
                    off=int(rng.integers(0, 3)),
                    size=int(depth * rng.uniform(3, 10)),
                    slot=s,
                )
            quotes += 1
            t += int(rng.uniform(50, 300) * _MS)
        for s in live:
            plan._op(t, OP_CANCEL, ep, slot=s)
        return dict(side="N", quotes=quotes, decisive_ns=t0)
    genuine_side = int(rng.integers(0, 2))
    layer_side = 1 - genuine_side
    genuine = plan._slot()
    plan._op(
        t0,
        OP_ADD,
        ep,
        side=genuine_side,
        size=max(1, int(preset.median_order_lots * rng.uniform(0.2, 0.5))),
        slot=genuine,
    )
    layers = int(rng.integers(1, 6))
    layer_size = int(depth * rng.uniform(3, 10))
    slots = []
    for k in range(layers):
        s = plan._slot()
        slots.append(s)
        plan._op(
            t0 + int(rng.uniform(5, 50) * _MS) + k * _MS,
            OP_ADD,
            ep,
            side=layer_side,
            off=int(rng.integers(1, 6)),
            size=layer_size,
            slot=s,
            aux=1 if k == 0 else 0,
        )
    t_fill = t0 + int(rng.uniform(0.2, 2.0) * _S)
    plan._op(t_fill, OP_FILL, ep, slot=genuine)
    cancels = [t_fill + int(rng.uniform(20, 1000) * _MS) for _ in slots]
    for t, s in zip(cancels, slots, strict=True):
        plan._op(t, OP_CANCEL, ep, slot=s)
    return dict(
        decisive_ns=min(cancels),
        side="BA"[layer_side],
        genuine_side="BA"[genuine_side],
        layers=layers,
        layer_size_lots=layer_size,
        fill_ns=t_fill,
    )


def _iceberg(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    side = int(rng.integers(0, 2))
    peak = preset.median_order_lots
    total = int(peak * rng.uniform(10, 50))
    end = t0 + min(int(rng.uniform(30, 90) * _S), span)
    # aggressors hitting the price, so the hidden size actually trades in both cases
    hits = int(total / peak * 1.2)
    for t in np.sort(rng.uniform(t0 + 10 * _MS, end, hits)).astype(np.int64):
        plan._op(int(t), OP_MKT, ep, side=1 - side, size=peak, aux=0)
    if look:
        # independent traders joining the same price at times unrelated to fills
        joins = int(rng.integers(5, 16))
        slots = [plan._slot() for _ in range(joins)]
        times = np.sort(rng.uniform(t0, end, joins)).astype(np.int64)
        times[0] = t0
        for k, (t, s) in enumerate(zip(times, slots, strict=True)):
            plan._op(int(t), OP_ADD, ep, side=side, size=peak, slot=s, aux=1 if k == 0 else 2)
        for s in slots:
            plan._op(end, OP_CANCEL, ep, slot=s)
        return dict(side="BA"[side], joins=joins)
    plan._op(t0, OP_ICE, ep, side=side, size=peak, slot=plan._slot(), aux=total)
    plan._op(end, OP_ICE_END, ep)
    return dict(side="BA"[side], peak_lots=peak, total_lots=total)


def _absorption(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    side = int(rng.integers(0, 2))
    depth = preset.median_depth_lots
    defender = int(depth * rng.uniform(10, 30))
    push_total = int(defender * rng.uniform(0.4, 0.8))
    pushes = int(rng.integers(5, 21))
    push_end = t0 + min(int(rng.uniform(2, 10) * _S), span // 2)
    slot = plan._slot()
    if not look:
        plan._op(t0, OP_ADD, ep, side=side, size=defender, slot=slot, aux=1)
    times = np.sort(rng.uniform(t0 + 50 * _MS, push_end, pushes)).astype(np.int64)
    for t in times:
        plan._op(int(t), OP_MKT, ep, side=1 - side, size=max(1, push_total // pushes), aux=10_000)
    # decisive: the last push, when the price has held through all of it (or swept, look-alike)
    last = int(times[-1])
    if not look:
        plan._op(push_end + int(rng.uniform(1, 3) * _S), OP_CANCEL, ep, slot=slot)
        return dict(
            side="BA"[side], defender_lots=defender, push_lots=push_total, pushes=pushes, decisive_ns=last
        )
    return dict(side="BA"[side], push_lots=push_total, pushes=pushes, decisive_ns=last)


def _whale(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    trade = preset.median_trade_lots
    if look:
        # a busy period of ordinary trades in both directions: sizes no heavier-tailed than the
        # background's aggressors (the preset's msize_sigma, fitted to the real trade sizes): in
        # equity (0.55) the 0.8 used until s27 made one print in 24 a 4x-median 'whale' of its
        # own, against 1 in 170 for the background; crypto's background (2.3) keeps 0.8
        count = int(rng.integers(30, 101))
        end = t0 + min(int(rng.uniform(20, 60) * _S), span)
        sigma = min(0.8, float(preset.params["msize_sigma"]))
        for t in np.sort(rng.uniform(t0, end, count)).astype(np.int64):
            size = max(1, int(trade * np.exp(rng.normal(0.0, sigma))))
            plan._op(int(t), OP_MKT, ep, side=int(rng.integers(0, 2)), size=size, aux=20)
        return dict(side="N", trades=count, decisive_ns=t0)
    side = int(rng.integers(0, 2))
    if rng.uniform() < 0.5:
        size = int(preset.median_depth_lots * rng.uniform(3, 8))
        # off=3: waits for a touch on a bare side (kernels.sim_agents), its time kept in ep_mark
        plan._op(t0, OP_MKT, ep, side=side, off=3, size=size, aux=100_000)
        return dict(side="BA"[side], style="sweep", size_lots=size, decisive_ns=t0)
    total = int(trade * rng.uniform(50, 200))
    children = int(rng.integers(20, 61))
    end = t0 + min(int(rng.uniform(60, 240) * _S), span)
    times = np.sort(rng.uniform(t0, end, children)).astype(np.int64)
    child = max(1, total // children)
    for t in times:
        # off=1: a worked child, its remainder re-sent until filled (kernels.sim_agents), so the
        # parent's 50-200x reaches the tape (SIMULATOR.md); until s27 a thin book cut children
        # short and the tape held 7-79 % of the planned parent (median ~30 %, dev seeds 101, 102)
        plan._op(int(t), OP_MKT, ep, side=side, off=1, size=child, aux=20)
    # decisive: the child at which the parent's volume reaches 50x the median trade
    reach = min(children - 1, max(0, -(-50 * trade // child) - 1))
    return dict(
        side="BA"[side], style="parent", size_lots=total, children=children, decisive_ns=int(times[reach])
    )


def _withdrawal(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    side = int(rng.integers(0, 2))
    ticks = int(rng.integers(3, 11))
    if look:
        # the price moves away from this side: depth near the old touch goes with it
        jump = ticks if side == 1 else -ticks
        plan._op(t0, OP_JUMP, ep, side=side, off=jump)
        return dict(side="BA"[side], fair_jump_ticks=jump, decisive_ns=t0)
    share = int(rng.integers(600, 901))
    # engine-timed: the pull waits for its side to have a touch (kernels.sim_agents)
    plan._op(t0, OP_WITHDRAW, ep, side=side, off=ticks, aux=share)
    return dict(side="BA"[side], within_ticks=ticks, share_permille=share)


_PLANTERS = dict(
    spoofing=_spoofing,
    iceberg=_iceberg,
    absorption=_absorption,
    whale=_whale,
    withdrawal=_withdrawal,
    institutional=plants.institutional,
    creep=plants.creep,
    contraction=plants.contraction,
    wall=plants.wall,
    spike=plants.spike,
)
