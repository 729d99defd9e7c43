"""Exact L3 queue positions: each resting feed order's side, price, size and priority stamp.

A backtest order joins the back of its level: the quantity ahead of it is the size of the feed
orders at its price stamped before it. The quantity ahead shrinks only when one of those orders
is cancelled or reduced (a ``C``/``M`` row; a fill shows as ``F`` then the ``C`` that removes it,
so only the ``C`` counts). A feed order that changes price or grows loses its priority (a new
stamp: it goes behind). When the exchange fills a feed order stamped *after* ours at our price,
FIFO matching must have filled ours first: that is our fill (hftbacktest's ``L3FIFOQueueModel``).
"""

from __future__ import annotations

from numba import njit

from kernels.codes import L3_ADD, L3_CANCEL, L3_FILL, L3_MODIFY


@njit(cache=True, error_model="numpy")
def clear(feed):
    feed[0].clear()
    feed[1].clear()


@njit(cache=True, error_model="numpy")
def front_of(feed, side, px, prio):
    meta, size = feed
    total = 0.0
    for oid, m in meta.items():
        if m[0] == side and m[1] == px and m[2] < prio:
            total += size[oid]
    return total


@njit(cache=True, error_model="numpy")
def _behind(o_i, o_f, act, n_act, side, px, prio, removed):
    for j in range(n_act):
        s = act[j]
        if o_i[s, 0] == side and o_i[s, 1] == px and o_i[s, 7] > prio:
            o_f[s, 1] = max(o_f[s, 1] - removed, 0.0)


@njit(cache=True, error_model="numpy")
def apply(feed, o_i, o_f, act, n_act, action, oid, side, px, qty, S):
    """Apply one order event; returns the priority stamp of a filled feed order, else -1."""
    meta, size = feed
    prio_at = 9  # index of the priority counter in the state vector (core.PRIO)
    if action == L3_ADD or (action == L3_MODIFY and oid not in meta):
        meta[oid] = (side, px, S[prio_at])
        size[oid] = qty
        S[prio_at] += 1
        return -1
    if oid not in meta:
        return -1
    s0, p0, pr0 = meta[oid]
    old = size[oid]
    if action == L3_CANCEL:
        removed = min(qty, old)
        _behind(o_i, o_f, act, n_act, s0, p0, pr0, removed)
        if old - removed <= 0.0:
            del meta[oid]
            del size[oid]
        else:
            size[oid] = old - removed
    elif action == L3_MODIFY:
        if px != p0 or qty > old:
            _behind(o_i, o_f, act, n_act, s0, p0, pr0, old)
            meta[oid] = (s0, px, S[prio_at])
            S[prio_at] += 1
        else:
            _behind(o_i, o_f, act, n_act, s0, p0, pr0, old - qty)
        size[oid] = qty
    elif action == L3_FILL:
        return pr0
    return -1
