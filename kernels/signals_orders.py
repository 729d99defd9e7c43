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
with ``return_inverse``) so the kernel needs no hash maps. :class:`OrderState` carries the state from
one call to the next (the live stage), ``order_lifetimes`` starts it empty (a whole day).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from kernels.codes import L3_ADD as A
from kernels.codes import L3_CANCEL as C
from kernels.codes import L3_FILL as F

NONE_NS = np.iinfo(np.int64).min


@njit(cache=True)
def _lifetimes(ts, slot, raw_id, action, side, price_idx, size, dist, big, first_row, refill_ns,
               o_ts, o_size, o_filled, o_left, o_dist, o_big, o_live, o_row,
               alive_big, big_until, last_fill, full_ns, full_size, full_oid, full_row):
    # the order, side and price state (o_* .. full_row) comes in and is updated in place: a batch
    # over a whole day starts it empty, the live stage carries it across micro-batches
    n = len(ts)
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
        k = slot[i]
        a = action[i]
        if k < 0:
            continue
        if a == A:
            p = price_idx[i]
            if (full_ns[s, p] != NONE_NS and t - full_ns[s, p] <= refill_ns and full_size[s, p] == size[i]
                    and full_oid[s, p] != raw_id[i]):
                refill[i] = True
                refill_prev[i] = full_row[s, p]
            o_row[k] = first_row + i
            o_ts[k], o_size[k], o_filled[k], o_left[k], o_dist[k] = t, size[i], 0, size[i], dist[i]
            o_big[k], o_live[k] = big[i], True
            if big[i]:
                alive_big[s] += 1
        elif a == F and o_live[k]:
            o_filled[k] += size[i]
            last_fill[s] = t
            if o_filled[k] >= o_size[k]:
                p = price_idx[i]
                full_ns[s, p], full_size[s, p], full_oid[s, p] = t, o_size[k], raw_id[i]
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


_FACTS = ("cancel", "add_ts_ns", "add_size", "add_dist_ticks", "add_big", "last_opp_fill_ns",
          "last_opp_big_ns", "refill", "refill_prev")


class OrderState:
    """The per-order, per-side and per-price state of :func:`order_lifetimes`, carried from one
    :meth:`step` to the next (the live stage's micro-batches; picklable).

    Orders and prices get dense slots on first sight (sorted id arrays: no hash maps in the
    kernel). The slots of finished orders are given back now and then: an event of a finished
    order is ignored whether its slot is kept or not, and a refill compares raw ids, not slots.
    """

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.uint64)  # known order ids, sorted, and their slots
        self.id_slot = np.zeros(0, np.int64)
        self.n_slots = 0
        self.orders = _order_arrays(64)
        self.prices = np.zeros(0, np.int64)  # known prices, sorted, and their slots
        self.price_slot = np.zeros(0, np.int64)
        self.full = _price_arrays(64)
        self.alive_big = np.zeros(2, np.int64)
        self.big_until = np.full(2, NONE_NS, np.int64)
        self.last_fill = np.full(2, NONE_NS, np.int64)
        self.rows = 0  # events stepped so far: the row numbers ``refill_prev`` counts

    def step(self, ts_ns: np.ndarray, order_id: np.ndarray, action: np.ndarray, side: np.ndarray,
             price_nanos: np.ndarray, size: np.ndarray, dist_ticks: np.ndarray, big: np.ndarray,
             refill_ns: int) -> dict[str, np.ndarray]:
        """:func:`order_lifetimes` of the next events, the state carried; ``refill_prev`` counts
        rows from the first event ever stepped."""
        raw = np.asarray(order_id).astype(np.uint64)
        self.ids, self.id_slot, slot, added = _slots(self.ids, self.id_slot, raw, self.n_slots,
                                                     skip_zero=True)
        self.n_slots += added
        self.orders = _grown(self.orders, self.n_slots, _order_arrays)
        self.prices, self.price_slot, pidx, added = _slots(self.prices, self.price_slot,
                                                           np.asarray(price_nanos, np.int64),
                                                           len(self.price_slot), skip_zero=False)
        self.full = _grown(self.full, len(self.price_slot), _price_arrays)
        o, f = self.orders, self.full
        out = _lifetimes(np.asarray(ts_ns, np.int64), slot, raw.view(np.int64),
                         np.asarray(action, np.int64), np.asarray(side, np.int64), pidx,
                         np.asarray(size, np.int64), np.asarray(dist_ticks, np.int64),
                         np.asarray(big, np.bool_), self.rows, int(refill_ns),
                         o["ts"], o["size"], o["filled"], o["left"], o["dist"], o["big"], o["live"], o["row"],
                         self.alive_big, self.big_until, self.last_fill,
                         f["ns"], f["size"], f["oid"], f["row"])
        self.rows += len(raw)
        if self.n_slots > 4096 and self.n_slots > 4 * int(o["live"][:self.n_slots].sum()):
            self._compact()
        return dict(zip(_FACTS, out, strict=True))

    def _compact(self) -> None:
        live = np.flatnonzero(self.orders["live"][:self.n_slots])
        keep = np.isin(self.id_slot, live)
        renumber = np.full(self.n_slots, -1, np.int64)
        renumber[live] = np.arange(len(live))
        self.ids, self.id_slot = self.ids[keep], renumber[self.id_slot[keep]]
        fresh = _order_arrays(max(64, 2 * len(live)))
        for name, values in self.orders.items():
            fresh[name][:len(live)] = values[live]
        self.orders, self.n_slots = fresh, len(live)


def _slots(known: np.ndarray, known_slot: np.ndarray, keys: np.ndarray, next_slot: int, *, skip_zero: bool
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Slots of ``keys`` in the sorted ``known`` keys, new keys given the next slots (key 0 gets -1
    with ``skip_zero``); returns the grown known keys and slots, the keys' slots, how many new."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    at = np.searchsorted(known, uniq)
    found = np.zeros(len(uniq), bool)
    slots = np.full(len(uniq), -1, np.int64)
    if len(known):
        clipped = np.minimum(at, len(known) - 1)
        found = known[clipped] == uniq
        slots[found] = known_slot[clipped[found]]
    new = ~found & (uniq != 0) if skip_zero else ~found
    count = int(new.sum())
    if count:
        slots[new] = next_slot + np.arange(count)
        known = np.insert(known, at[new], uniq[new])
        known_slot = np.insert(known_slot, at[new], slots[new])
    return known, known_slot, slots[inverse.ravel()], count


def _order_arrays(n: int) -> dict[str, np.ndarray]:
    return {"ts": np.zeros(n, np.int64), "size": np.zeros(n, np.int64), "filled": np.zeros(n, np.int64),
            "left": np.zeros(n, np.int64), "dist": np.zeros(n, np.int64), "big": np.zeros(n, np.bool_),
            "live": np.zeros(n, np.bool_), "row": np.full(n, -1, np.int64)}


def _price_arrays(n: int) -> dict[str, np.ndarray]:
    return {"ns": np.full((2, n), NONE_NS, np.int64), "size": np.zeros((2, n), np.int64),
            "oid": np.full((2, n), -1, np.int64), "row": np.full((2, n), -1, np.int64)}


def _grown(arrays: dict[str, np.ndarray], need: int, make: Callable[[int], dict[str, np.ndarray]]
           ) -> dict[str, np.ndarray]:
    cap = arrays["row"].shape[-1]
    if need <= cap:
        return arrays
    fresh = make(max(need, 2 * cap))
    for name, values in arrays.items():
        fresh[name][..., :cap] = values
    return fresh


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
    return OrderState().step(ts_ns, order_id, action, side, price_nanos, size, dist_ticks, big, refill_ns)


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
