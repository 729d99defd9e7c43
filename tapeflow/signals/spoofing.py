"""Spoofing / layering from L3 order events (kernels.signals_orders for the per-order state).

A layer is a large order (``min_size_x_depth`` times the causal median depth at the touch) added
``min_ticks``..``max_ticks`` behind its own side's touch, never filled, and cancelled between
``min_life_ns`` and ``max_life_ns`` after it was added (a spoof is short-lived) and within
``max_after_fill_ns`` of a fill on the other side (the genuine order it was there to help),
a fill that came while it rested: a large order placed after the other side traded and pulled
within a second (a wall look-alike cancelled at once) did not help that fill.
A market maker quoting both sides also adds and cancels large orders near the touch; what it
does not do is leave the other side without a large order: a cancel counts only when the other
side held no large live order during the last ``mm_clear_ns``. Layers share one size: a cancel of
only ``multi_size_x_depth`` median depths also counts when another such cancel of the same side
and size came within ``max_after_fill_ns`` before it. The first counted cancel of a side opens
an alert (side = the layered orders'), then ``refractory_ns`` of quiet on that side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.signals_orders import NONE_NS
from tapeflow.signals.rows import Alerts, first_of_runs

NAME = "spoofing/1"


def detect(ev: dict[str, np.ndarray], facts: dict[str, np.ndarray], depth_median: np.ndarray,
           params: dict[str, Any], venue: str, symbol: str, *, from_row: int = 0) -> Alerts:
    """Spoofing alerts of one instrument.

    Args:
        ev: the ``order_event`` columns ``ts_event_ns``, ``ts_recv_ns``, ``price_nanos``, ``size_nanos``
            and ``side_code`` (0 bid, 1 ask, -1 none), arrival order.
        facts: :func:`kernels.signals_orders.order_lifetimes` of those events.
        depth_median: per event, the causal median depth at the touch (NaN before any baseline).
        params: the detector's thresholds.
        from_row: events before it only look back (the live stage's earlier layers): no alert.
    """
    out = Alerts(venue, symbol, NAME, params)
    ts = ev["ts_event_ns"]
    opp_fill, opp_big = facts["last_opp_fill_ns"], facts["last_opp_big_ns"]
    after_fill = np.where(opp_fill != NONE_NS, ts - opp_fill, np.iinfo(np.int64).max)
    since_big = np.where(opp_big != NONE_NS, ts - opp_big, np.iinfo(np.int64).max)
    life = ts - facts["add_ts_ns"]
    with np.errstate(invalid="ignore", divide="ignore"):
        size_x = np.where(depth_median > 0, facts["add_size"] / depth_median, 0.0)
    dist = facts["add_dist_ticks"]
    base = (facts["cancel"] & (dist >= params["min_ticks"]) & (dist <= params["max_ticks"])
            & (life >= params["min_life_ns"]) & (life <= params["max_life_ns"])
            & (after_fill <= params["max_after_fill_ns"]) & (after_fill <= life)
            & (since_big > params["mm_clear_ns"]))
    ok = base & facts["add_big"]
    ok |= _layered(base & (size_x >= params["multi_size_x_depth"]), ts, ev["side_code"],
                   facts["add_size"], params["max_after_fill_ns"])
    ok[:from_row] = False
    for code, side in ((0, 1), (1, -1)):
        cand = np.flatnonzero(ok & (ev["side_code"] == code))
        for k in first_of_runs(ts[cand], params["refractory_ns"]):
            i = int(cand[k])
            out.add(ts_event_ns=int(ts[i]), ts_recv_ns=int(ev["ts_recv_ns"][i]), kind="spoofing", side=side,
                    price_nanos=int(ev["price_nanos"][i]), size_nanos=int(facts["add_size"][i]),
                    start_ns=int(facts["add_ts_ns"][i]), end_ns=int(ts[i]),
                    score=float(size_x[i] / params["min_size_x_depth"]),
                    evidence=dict(size_x_depth=round(float(size_x[i]), 2),
                                  ticks_behind=int(facts["add_dist_ticks"][i]),
                                  life_ms=round(float(life[i]) / 1e6, 1),
                                  after_opposite_fill_ms=round(float(after_fill[i]) / 1e6, 1)))
    return out


def _layered(cand: np.ndarray, ts: np.ndarray, side: np.ndarray, size: np.ndarray, within_ns: int
             ) -> np.ndarray:
    """Candidates preceded, within ``within_ns``, by another of the same side and size (layers
    share one size; background orders rarely repeat one within a second)."""
    out = np.zeros(len(cand), bool)
    idx = np.flatnonzero(cand)
    for a, i in enumerate(idx.tolist()):
        for j in idx[:a][::-1].tolist():
            if ts[i] - ts[j] > within_ns:
                break
            if side[j] == side[i] and size[j] == size[i]:
                out[i] = True
                break
    return out
