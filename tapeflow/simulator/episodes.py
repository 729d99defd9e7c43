"""Planted ground truth: scripts of agent operations for each episode kind and its look-alike.

Each episode is a short script of engine operations (add, cancel, marketable order, fill,
iceberg, fair-price jump, withdrawal) with prices relative to the touch at the moment the
operation runs; the engine reports back the price each episode ended up at and its end time.
Look-alikes are what a naive detector confuses with the real pattern (SIMULATOR.md's table), so
a detector's precision can be measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.sim_engine import OP_ADD, OP_CANCEL, OP_FILL, OP_ICE, OP_ICE_END, OP_JUMP, OP_MKT, OP_WITHDRAW
from tapeflow.simulator.presets import Preset

KINDS = ("spoofing", "iceberg", "absorption", "whale", "withdrawal")
_MS = 1_000_000
_S = 1_000_000_000


@dataclass
class EpisodePlan:
    """Operations for the engine plus one description per episode (index = episode id)."""

    ops: list[list[int]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    slots: int = 0

    def op_array(self) -> np.ndarray:
        if not self.ops:
            return np.zeros((0, 8), np.int64)
        arr = np.asarray(self.ops, np.int64)
        # stable sort keeps the script order of operations planned for the same instant
        return arr[np.argsort(arr[:, 0], kind="stable")]

    def _slot(self) -> int:
        self.slots += 1
        return self.slots - 1

    def _op(
        self,
        t: int,
        code: int,
        ep: int,
        *,
        side: int = 0,
        off: int = 0,
        size: int = 0,
        slot: int = 0,
        aux: int = 0,
    ) -> None:
        self.ops.append([int(t), code, side, int(off), int(size), slot, ep, int(aux)])


def plan_episodes(
    rng: np.random.Generator,
    preset: Preset,
    start_ns: int,
    duration_ns: int,
    *,
    per_kind_per_hour: float = 2.0,
) -> EpisodePlan:
    """Plan real and look-alike episodes of every kind over ``[start_ns, start_ns + duration_ns)``.

    Episodes get disjoint time slots (so one never disturbs another); at least one real and one
    look-alike of each kind is planted whatever the duration, none when ``per_kind_per_hour`` is 0.

    Args:
        rng: the instrument's planning generator (seeded: the plan is part of the determinism).
        preset: sizes are multiples of its median depth, order and trade sizes.
        start_ns, duration_ns: the simulated span.
        per_kind_per_hour: real episodes of each kind per simulated hour (as many look-alikes).
    """
    plan = EpisodePlan()
    if per_kind_per_hour <= 0:
        return plan
    per_kind = max(1, int(round(per_kind_per_hour * duration_ns / (3600 * _S))))
    jobs = [(kind, look) for kind in KINDS for look in (False, True) for _ in range(per_kind)]
    order = rng.permutation(len(jobs))
    margin = min(30 * _S, duration_ns // 20)
    slot_ns = (duration_ns - 2 * margin) // len(jobs)
    for i, j in enumerate(order):
        kind, look = jobs[j]
        t0 = start_ns + margin + i * slot_ns + int(rng.uniform(0.0, 0.2) * slot_ns)
        span = int(slot_ns * 0.7)
        ep = len(plan.rows)
        params = _PLANTERS[kind](plan, rng, preset, ep, t0, span, look)
        plan.rows.append(
            dict(kind=kind, lookalike=look, start_ns=t0, params=json.dumps(params, sort_keys=True))
        )
    return plan


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
        return dict(side="N", quotes=quotes)
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
    for s in slots:
        plan._op(t_fill + int(rng.uniform(20, 1000) * _MS), OP_CANCEL, ep, slot=s)
    return dict(
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
    for t in np.sort(rng.uniform(t0 + 50 * _MS, push_end, pushes)).astype(np.int64):
        plan._op(int(t), OP_MKT, ep, side=1 - side, size=max(1, push_total // pushes), aux=10_000)
    if not look:
        plan._op(push_end + int(rng.uniform(1, 3) * _S), OP_CANCEL, ep, slot=slot)
        return dict(side="BA"[side], defender_lots=defender, push_lots=push_total, pushes=pushes)
    return dict(side="BA"[side], push_lots=push_total, pushes=pushes)


def _whale(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    trade = preset.median_trade_lots
    if look:
        # a busy period of ordinary trades in both directions
        count = int(rng.integers(30, 101))
        end = t0 + min(int(rng.uniform(20, 60) * _S), span)
        for t in np.sort(rng.uniform(t0, end, count)).astype(np.int64):
            size = max(1, int(trade * np.exp(rng.normal(0.0, 0.8))))
            plan._op(int(t), OP_MKT, ep, side=int(rng.integers(0, 2)), size=size, aux=20)
        return dict(side="N", trades=count)
    side = int(rng.integers(0, 2))
    if rng.uniform() < 0.5:
        size = int(preset.median_depth_lots * rng.uniform(3, 8))
        plan._op(t0, OP_MKT, ep, side=side, size=size, aux=100_000)
        return dict(side="BA"[side], style="sweep", size_lots=size)
    total = int(trade * rng.uniform(50, 200))
    children = int(rng.integers(20, 61))
    end = t0 + min(int(rng.uniform(60, 240) * _S), span)
    for t in np.sort(rng.uniform(t0, end, children)).astype(np.int64):
        plan._op(int(t), OP_MKT, ep, side=side, size=max(1, total // children), aux=20)
    return dict(side="BA"[side], style="parent", size_lots=total, children=children)


def _withdrawal(
    plan: EpisodePlan, rng: np.random.Generator, preset: Preset, ep: int, t0: int, span: int, look: bool
) -> dict[str, Any]:
    side = int(rng.integers(0, 2))
    ticks = int(rng.integers(3, 11))
    if look:
        # the price moves away from this side: depth near the old touch goes with it
        jump = ticks if side == 1 else -ticks
        plan._op(t0, OP_JUMP, ep, side=side, off=jump)
        return dict(side="BA"[side], fair_jump_ticks=jump)
    share = int(rng.integers(600, 901))
    plan._op(t0, OP_WITHDRAW, ep, side=side, off=ticks, aux=share)
    return dict(side="BA"[side], within_ticks=ticks, share_permille=share)


_PLANTERS = dict(
    spoofing=_spoofing, iceberg=_iceberg, absorption=_absorption, whale=_whale, withdrawal=_withdrawal
)
