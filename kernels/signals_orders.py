"""Per-order state for the L3 detectors (spoofing, icebergs): numba, with a pure-Python reference.

One sequential pass over ``order_event`` rows of one instrument (arrival order) keeps each
order's add time, price, size and fills, how many large orders each side holds, and the last
complete fill at each price. It returns per event the facts the detectors judge:

* at an unfilled cancel (the ``C`` that removes what is left of an order that never traded; a
  fill is an ``F`` followed by the ``C`` that takes the filled size off the book, as in
  ``kernels.reference_l3``; ``M`` is not followed): the order's add time, price, size,
  its distance from its own touch when it was added, and whether it was large;
* ``last_opp_fill_ns``: the latest fill (``F``) of a resting order on the other side, at or before
  the event (the spoof's trigger: "the other side trades");
* ``last_opp_big_ns``: the latest instant the other side held a large live order (a market maker
  quoting both sides holds large orders on both: the look-alike);
* at an add (``A``): whether it refills a price within ``refill_ns`` of a complete fill there of an
  order of the same size and side (an iceberg's next peak under a new order id), and the row of
  that filled order's own add (an iceberg's peaks follow one another: each refill replaces the
  order the previous refill added).

Sides are coded 0 bid, 1 ask, -1 none; order ids and prices come densely indexed (``np.unique``
with ``return_inverse``) so the kernel needs no hash maps.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.codes import L3_ADD as A
from kernels.codes import L3_CANCEL as C
from kernels.codes import L3_FILL as F

NONE_NS = np.iinfo(np.int64).min


@njit(cache=True)
def _lifetimes(ts, oid, action, side, price_idx, size, dist, big, n_orders, n_prices, refill_ns):
    n = len(ts)
    o_ts = np.zeros(n_orders, np.int64)
    o_size = np.zeros(n_orders, np.int64)
    o_filled = np.zeros(n_orders, np.int64)
    o_left = np.zeros(n_orders, np.int64)
    o_dist = np.zeros(n_orders, np.int64)
    o_big = np.zeros(n_orders, np.bool_)
    o_live = np.zeros(n_orders, np.bool_)
    o_row = np.full(n_orders, -1, np.int64)
    alive_big = np.zeros(2, np.int64)
    big_until = np.full(2, NONE_NS, np.int64)
    last_fill = np.full(2, NONE_NS, np.int64)
    full_ns = np.full((2, n_prices), NONE_NS, np.int64)
    full_size = np.zeros((2, n_prices), np.int64)
    full_oid = np.full((2, n_prices), -1, np.int64)
    full_row = np.full((2, n_prices), -1, np.int64)
    cancel = np.zeros(n, np.bool_)
    add_ts = np.full(n, NONE_NS, np.int64)
    add_size = np.zeros(n, np.int64)
    add_dist = np.zeros(n, np.int64)
    add_big = np.zeros(n, np.bool_)
    opp_fill = np.full(n, NONE_NS, np.int64)
    opp_big = np.full(n, NONE_NS, np.int64)
    refill = np.zeros(n, np.bool_)
    refill_prev = np.full(n, -1, np.int64)
    for i in range(n):
        s = side[i]
        if s < 0:
            continue
        o = 1 - s
        t = ts[i]
        opp_fill[i] = last_fill[o]
        opp_big[i] = t if alive_big[o] > 0 else big_until[o]
        k = oid[i]
        a = action[i]
        if k < 0:
            continue
        if a == A:
            p = price_idx[i]
            if (full_ns[s, p] != NONE_NS and t - full_ns[s, p] <= refill_ns and full_size[s, p] == size[i]
                    and full_oid[s, p] != k):
                refill[i] = True
                refill_prev[i] = full_row[s, p]
            o_row[k] = i
            o_ts[k], o_size[k], o_filled[k], o_left[k], o_dist[k] = t, size[i], 0, size[i], dist[i]
            o_big[k], o_live[k] = big[i], True
            if big[i]:
                alive_big[s] += 1
        elif a == F and o_live[k]:
            o_filled[k] += size[i]
            last_fill[s] = t
            if o_filled[k] >= o_size[k]:
                p = price_idx[i]
                full_ns[s, p], full_size[s, p], full_oid[s, p] = t, o_size[k], k
                full_row[s, p] = o_row[k]
        elif a == C and o_live[k]:
            o_left[k] -= min(size[i], o_left[k])
            if o_left[k] > 0:
                continue
            if o_filled[k] == 0:
                cancel[i] = True
                add_ts[i], add_size[i], add_dist[i], add_big[i] = o_ts[k], o_size[k], o_dist[k], o_big[k]
            o_live[k] = False
            if o_big[k]:
                alive_big[s] -= 1
                if alive_big[s] == 0:
                    big_until[s] = t
    return cancel, add_ts, add_size, add_dist, add_big, opp_fill, opp_big, refill, refill_prev


def order_lifetimes(ts_ns: np.ndarray, order_id: np.ndarray, action: np.ndarray, side: np.ndarray,
                    price_nanos: np.ndarray, size: np.ndarray, dist_ticks: np.ndarray, big: np.ndarray,
                    refill_ns: int) -> dict[str, np.ndarray]:
    """Per-event order facts of one instrument's ``order_event`` rows (arrival order).

    Args:
        ts_ns, order_id, action, side, price_nanos, size: the rows (``side`` coded 0 bid, 1 ask,
            -1 none; ``action`` the record's byte codes; order id 0 is anonymous).
        dist_ticks: at adds, ticks between the order and its own side's touch (>= 0 behind it).
        big: at adds, whether the order counts as large.
        refill_ns: how soon after a complete fill an add at the same price counts as a refill.

    Returns:
        Arrays of the events' length: ``cancel`` (an unfilled order cancelled), ``add_ts_ns``,
        ``add_size``, ``add_dist_ticks``, ``add_big`` (of that order), ``last_opp_fill_ns``,
        ``last_opp_big_ns`` (``NONE_NS`` where never), ``refill`` and ``refill_prev`` (at a
        refill, the row of the filled order's add; -1 elsewhere).
    """
    ids, oid = np.unique(np.asarray(order_id), return_inverse=True)
    oid = np.where(np.asarray(order_id) == 0, -1, oid).astype(np.int64)
    prices, pidx = np.unique(np.asarray(price_nanos), return_inverse=True)
    out = _lifetimes(np.asarray(ts_ns, np.int64), oid, np.asarray(action, np.int64),
                     np.asarray(side, np.int64), pidx.astype(np.int64), np.asarray(size, np.int64),
                     np.asarray(dist_ticks, np.int64),
                     np.asarray(big, np.bool_), max(1, len(ids)), max(1, len(prices)), int(refill_ns))
    names = ("cancel", "add_ts_ns", "add_size", "add_dist_ticks", "add_big", "last_opp_fill_ns",
             "last_opp_big_ns", "refill", "refill_prev")
    return dict(zip(names, out, strict=True))


def order_lifetimes_ref(ts_ns: np.ndarray, order_id: np.ndarray, action: np.ndarray, side: np.ndarray,
                        price_nanos: np.ndarray, size: np.ndarray, dist_ticks: np.ndarray, big: np.ndarray,
                        refill_ns: int) -> dict[str, np.ndarray]:
    """Pure-Python reference of :func:`order_lifetimes` (dicts keyed by raw ids and prices)."""
    n = len(ts_ns)
    out = dict(cancel=np.zeros(n, bool), add_ts_ns=np.full(n, NONE_NS), add_size=np.zeros(n, np.int64),
               add_dist_ticks=np.zeros(n, np.int64), add_big=np.zeros(n, bool),
               last_opp_fill_ns=np.full(n, NONE_NS), last_opp_big_ns=np.full(n, NONE_NS),
               refill=np.zeros(n, bool), refill_prev=np.full(n, -1, np.int64))
    orders: dict[int, dict] = {}
    live_big: list[set[int]] = [set(), set()]
    big_until = [NONE_NS, NONE_NS]
    last_fill = [NONE_NS, NONE_NS]
    full: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    for i in range(n):
        s, t, k, a = int(side[i]), int(ts_ns[i]), int(order_id[i]), int(action[i])
        if s not in (0, 1):
            continue
        out["last_opp_fill_ns"][i] = last_fill[1 - s]
        out["last_opp_big_ns"][i] = t if live_big[1 - s] else big_until[1 - s]
        if k == 0:
            continue
        o = orders.get(k)
        if a == A:
            prev = full.get((s, int(price_nanos[i])))
            out["refill"][i] = bool(prev and t - prev[0] <= refill_ns and prev[1] == size[i] and prev[2] != k)
            if out["refill"][i]:
                out["refill_prev"][i] = prev[3]
            orders[k] = dict(row=i, ts=t, size=int(size[i]), filled=0, left=int(size[i]),
                             dist=int(dist_ticks[i]), big=bool(big[i]))
            if big[i]:
                live_big[s].add(k)
        elif a == F and o is not None:
            o["filled"] += int(size[i])
            last_fill[s] = t
            if o["filled"] >= o["size"]:
                full[(s, int(price_nanos[i]))] = (t, o["size"], k, o["row"])
        elif a == C and o is not None:
            o["left"] -= min(int(size[i]), o["left"])
            if o["left"] > 0:
                continue
            if o["filled"] == 0:
                out["cancel"][i] = True
                out["add_ts_ns"][i], out["add_size"][i] = o["ts"], o["size"]
                out["add_dist_ticks"][i], out["add_big"][i] = o["dist"], o["big"]
            del orders[k]
            if k in live_big[s]:
                live_big[s].discard(k)
                if not live_big[s]:
                    big_until[s] = t
    return out
