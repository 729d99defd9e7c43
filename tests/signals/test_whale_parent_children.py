"""A whale parent needs children above the median print: an institutional meta-order of the same
volume worked in smaller children is left to the institutional detector."""

from __future__ import annotations

import json

import numpy as np

from tapeflow.schemas.records import ASK, BID
from tapeflow.signals import whale
from tapeflow.signals.config import DEFAULT_PATH, load

S = 1_000_000_000
LOT = 1_000_000_000


def _trades(child_lots: int, per_second: int) -> dict[str, np.ndarray]:
    """20 min of one 100-lot print a second, sides alternating, then 20 s of buys of ``child_lots``."""
    t0 = 1_704_196_800 * S
    ts, side, size = [], [], []
    for s in range(1200):
        ts.append(t0 + s * S)
        side.append(BID if s % 2 else ASK)
        size.append(100 * LOT)
    for s in range(1200, 1220):
        for j in range(per_second):
            ts.append(t0 + s * S + 1000 + j * (S // (per_second + 1)))
            side.append(BID)
            size.append(child_lots * LOT)
    order = np.argsort(ts, kind="stable")
    ts_ns = np.array(ts, np.int64)[order]
    return dict(ts_event_ns=ts_ns, ts_recv_ns=ts_ns, price_nanos=np.full(len(ts), 100 * 10**9, np.int64),
                size_nanos=np.array(size, np.int64)[order], aggressor_side=np.array(side, np.uint8)[order])


def _parents(trades: dict[str, np.ndarray], gate: float) -> list[dict]:
    params = {**load(DEFAULT_PATH).for_instrument("whale", "SIMA"), "parent_min_child_x_median": gate}
    table = whale.detect(trades, params, "sim", "X").table()
    return [json.loads(e) for e in table.column("evidence").to_pylist() if json.loads(e)["style"] == "parent"]


def test_a_parent_of_large_children_alerts_and_one_of_small_children_does_not():
    large = _trades(300, 6)   # 36,000 lots in children of 3 median prints
    small = _trades(75, 24)   # the same volume in children of 0.75 median prints
    gate = load(DEFAULT_PATH).for_instrument("whale", "SIMA")["parent_min_child_x_median"]
    assert gate >= 1.0
    found = _parents(large, gate)
    assert len(found) == 1 and found[0]["child_x_median"] >= 2.0, found
    assert _parents(small, gate) == []
    # without the gate the small children read as a whale parent: what the gate is for
    assert len(_parents(small, 0.0)) == 1
