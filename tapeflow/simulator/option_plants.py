"""Planted option flow: coordinated cross-strike flow and its three look-alikes, and the schedule.

Every plant is a list of :class:`Leg` trades (time, listing, side, contracts) plus its episode row.
Sizes are multiples of the background's median retail trade (``median_contracts``); times are
relative to the plant's start until :func:`schedule` places them.

* ``coordinated`` (real; side: the flow's): 3-6 strikes (distinct expiry/strike pairs, forward
  delta 0.1-0.6 in size) bought or sold aggressively, all one way, in 2-5 children each within a
  15-50 s window: 10-30 median trades per strike.
* ``market_maker`` (side N): the same volume in 3-6 strikes, each bought and sold back 2-15 s
  later (the first leg's side alternating across strikes), hedged in the perpetual.
* ``block`` (side: the print's): one strike, the volume of a whole coordinated plant (3-6 x 10-30
  median trades) in one print.
* ``bursts`` (side N): 3-5 strikes, each a one-sided burst of 2-4 children within 10 s with its own
  random side, the bursts 70-100 s apart.

The decisive moment of a coordinated plant is its child that makes three strikes traded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

S = 1_000_000_000
STYLES = ("coordinated", "market_maker", "block", "bursts")
MIN_STRIKES = 3


@dataclass
class Leg:
    """One planted trade: ``t_ns`` from the plant's start until scheduled."""

    t_ns: int
    listing: int
    side: int  # +1 buyer-initiated, -1 seller-initiated
    contracts: float
    hedge: bool = False  # a market maker's perpetual hedge follows it


@dataclass
class Plant:
    """One planted episode: its trades and what the episode table says of it."""

    style: str
    side: str
    legs: list[Leg] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def span_ns(self) -> int:
        return max(leg.t_ns for leg in self.legs) if self.legs else 0


def _split(rng: np.random.Generator, total: float, parts: int) -> list[float]:
    """``total`` contracts in ``parts`` children of 0.1-contract lots (each at least one lot)."""
    share = rng.dirichlet(np.full(parts, 2.0))
    lots = np.maximum(1, np.round(share * total * 10)).astype(int)
    return [float(x) / 10 for x in lots]


def _strikes(rng: np.random.Generator, eligible: np.ndarray, pair: np.ndarray, n: int) -> list[int]:
    """``n`` listings of ``eligible`` with distinct (expiry, strike) pairs (``pair`` per listing)."""
    chosen, pairs = [], set()
    for i in rng.permutation(eligible).tolist():
        if int(pair[i]) not in pairs:
            chosen.append(i)
            pairs.add(int(pair[i]))
        if len(chosen) == n:
            break
    return chosen


def make_plant(style: str, rng: np.random.Generator, eligible: np.ndarray, pair: np.ndarray,
               median_contracts: float) -> Plant:
    """One plant of ``style`` over the ``eligible`` listings (indices; ``pair`` names each one's
    expiry/strike pair so two legs never share a strike)."""
    n = int(rng.integers(MIN_STRIKES, 7)) if style != "bursts" else int(rng.integers(MIN_STRIKES, 6))
    chosen = _strikes(rng, eligible, pair, n)
    per_strike = [float(rng.uniform(10, 30)) * median_contracts for _ in chosen]
    side = int(rng.choice([1, -1]))
    window_ns = int(rng.uniform(15, 50) * S)
    plant = Plant(style, {1: "B", -1: "A"}[side] if style in ("coordinated", "block") else "N")
    if style == "coordinated":
        for listing, volume in zip(chosen, per_strike, strict=True):
            for size in _split(rng, volume, int(rng.integers(2, 6))):
                plant.legs.append(Leg(int(rng.uniform(0, window_ns)), listing, side, size))
    elif style == "market_maker":
        first = side
        for listing, volume in zip(chosen, per_strike, strict=True):
            for size in _split(rng, volume, int(rng.integers(1, 3))):
                t = int(rng.uniform(0, window_ns))
                back = t + int(rng.uniform(2, 15) * S)
                plant.legs += [Leg(t, listing, first, size, True), Leg(back, listing, -first, size, True)]
            first = -first
    elif style == "block":
        plant.legs.append(Leg(0, chosen[0], side, round(sum(per_strike), 1)))
        chosen = chosen[:1]
    else:
        t0, sides = 0, []
        for listing, volume in zip(chosen, per_strike, strict=True):
            burst_side = int(rng.choice([1, -1]))
            sides.append(burst_side)
            for size in _split(rng, volume, int(rng.integers(2, 5))):
                plant.legs.append(Leg(t0 + int(rng.uniform(0, 10 * S)), listing, burst_side, size))
            t0 += int(rng.uniform(70, 100) * S)
        plant.params["burst_sides"] = sides
    plant.legs.sort(key=lambda leg: leg.t_ns)
    first_t = plant.legs[0].t_ns
    for leg in plant.legs:
        leg.t_ns -= first_t
    plant.params.update(style=style, listings=chosen, window_ns=window_ns,
                        contracts=round(sum(leg.contracts for leg in plant.legs), 1))
    return plant


def decisive_offset_ns(plant: Plant) -> int:
    """The leg at which :data:`MIN_STRIKES` distinct strikes have traded (the last leg if never)."""
    seen: set[int] = set()
    for leg in plant.legs:
        seen.add(leg.listing)
        if len(seen) >= MIN_STRIKES:
            return leg.t_ns
    return plant.span_ns


def plan_styles(rng: np.random.Generator, real: int) -> list[str]:
    """``real`` coordinated plants and as many look-alikes (the three styles in turn), shuffled."""
    looks = [STYLES[1 + i % 3] for i in range(real)]
    jobs = ["coordinated"] * real + looks
    return [jobs[i] for i in rng.permutation(len(jobs))]


def schedule(rng: np.random.Generator, plants: list[Plant], first_ns: int, last_ns: int,
             overlap: bool) -> tuple[list[int], list[int]]:
    """Start times for ``plants`` in order, and the indices of those that did not fit before ``last_ns``.

    Disjoint: 60-120 s of quiet after each plant. Overlap: the next plant starts 30 s before to 30 s
    after the previous one ends, except that a coordinated plant starts at least 70 s after the last
    coordinated one ended (one alert per flow could not tell two same-side flows apart).
    """
    starts, dropped, t = [], [], first_ns
    real_end = None
    for i, plant in enumerate(plants):
        if starts:
            lo, hi = (-30, 30) if overlap else (60, 120)
            t = max(starts[-1], t + int(rng.uniform(lo, hi) * S))
        if plant.style == "coordinated" and real_end is not None:
            t = max(t, real_end + int(rng.uniform(70, 120) * S))
        if t + plant.span_ns > last_ns:
            dropped.append(i)
            continue
        starts.append(t)
        t += plant.span_ns
        if plant.style == "coordinated":
            real_end = t
    return starts, dropped


def episode_row(plant: Plant, start_ns: int, index: int, underlying: str, symbols: list[str]) -> dict:
    """The plant's row in the simulator's episode table (``price_nanos`` undefined: a flow over strikes)."""
    from kernels.codes import UNDEF_PRICE

    params = dict(plant.params, side=plant.side, symbols=[symbols[i] for i in plant.params["listings"]],
                  decisive_ns=start_ns + decisive_offset_ns(plant))
    params.pop("listings")
    return {"episode_id": f"{underlying}-{index}", "instrument": underlying, "kind": "cross_strike",
            "lookalike": plant.style != "coordinated", "price_nanos": UNDEF_PRICE, "start_ns": start_ns,
            "end_ns": start_ns + plant.span_ns, "refills": 0, "params": json.dumps(params, sort_keys=True),
            "decisive_ns": params["decisive_ns"]}
