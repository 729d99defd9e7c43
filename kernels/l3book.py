"""L3 (market-by-order) book kernel: numba over micro-batches of ``order_event`` arrays.

Same semantics as :mod:`kernels.reference_l3` (read its docstring): per-order state, aggregated
price levels, BBO + status + anomaly code after every row, top-N snapshots at requested rows.

Layout, chosen for a hot loop without Python objects:

* orders: an open-addressing hash table on the uint64 order id (Fibonacci hashing, linear
  probing, backward-shift deletion so no tombstones accumulate over a long day). Capacity is a
  power of two, kept at most half full: when it would pass that, the jitted loop stops at the
  row and the Python wrapper doubles the table and resumes there, so the loop never allocates
  and the table stays about as small as the live book (cache-resident).
* levels: per side, a sorted array of prices with the best price LAST (bids ascending, asks
  descending). Most activity is at or near the top, so inserts and deletes shift only a few
  slots, the best is ``[n - 1]`` and top-N is a reversed slice.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from kernels._l3table import _erase, _find, _insert, _level_add, _level_find, _level_sub
from kernels.codes import (
    ASK,
    BID,
    CROSSED,
    F_GAP,
    F_LAST,
    F_SNAPSHOT,
    F_SUPERSEDED,
    L3_ADD,
    L3_CANCEL,
    L3_CLEAR,
    L3_FILL,
    L3_MODIFY,
    L3_NONE,
    L3_TRADE,
    RESYNC,
    UNDEF_PRICE,
    VALID,
)
from kernels.l3anchor import anchor_side, top_differs
from kernels.reference_l3 import (
    ANOM_BAD_EVENT,
    ANOM_DUPLICATE_ADD,
    ANOM_NONE,
    ANOM_SIZE_UNDERFLOW,
    ANOM_UNKNOWN_ORDER,
    BBO_KEYS,
    SNAP_KEYS,
)

# meta slots: the last two count the synthetic orders and the re-anchors (kernels.l3anchor)
_N_ORDERS, _SYNCED, _IN_SNAPSHOT, _BITS, _ANCHOR_IDS, _ANCHORS = range(6)


class _L3Fields(NamedTuple):
    keys: np.ndarray    # uint64[cap]   order ids
    used: np.ndarray    # uint8[cap]    1 where the slot holds an order
    o_side: np.ndarray  # uint8[cap]    0 bid, 1 ask
    o_px: np.ndarray    # int64[cap]    order price, 1e-9 units
    o_sz: np.ndarray    # int64[cap]    order size left, 1e-9 units
    lv_px: np.ndarray   # int64[2, lcap] level prices, best last; row 0 bids, row 1 asks
    lv_sz: np.ndarray   # int64[2, lcap] aggregated size per level
    lv_ct: np.ndarray   # int64[2, lcap] resting orders per level
    n_lv: np.ndarray    # int64[2]      levels in use per side
    meta: np.ndarray    # int64[6]      n_orders, synced, in_snapshot, log2(cap), anchor ids, anchors
    dense: np.ndarray   # int64[cap]    the occupied slots, dense[:n_orders] (kernels._l3table)
    pos: np.ndarray     # int64[cap]    a slot's place in ``dense``


class L3State(_L3Fields):
    """The book of one instrument between batches (cap = 2**bits order slots, lcap level slots).

    A state without ``dense``/``pos`` (pickled in a recovery snapshot before the dense list existed,
    round s27: ten fields) gets them rebuilt from ``used`` when it is unpickled, so a flow resumes
    from its old snapshots."""

    __slots__ = ()

    def __new__(cls, keys: np.ndarray, used: np.ndarray, o_side: np.ndarray, o_px: np.ndarray,
                o_sz: np.ndarray, lv_px: np.ndarray, lv_sz: np.ndarray, lv_ct: np.ndarray, n_lv: np.ndarray,
                meta: np.ndarray, dense: np.ndarray | None = None, pos: np.ndarray | None = None) -> L3State:
        if dense is None or pos is None:
            dense, pos = np.zeros(len(used), np.int64), np.zeros(len(used), np.int64)
            slots = np.flatnonzero(used)
            dense[:len(slots)] = slots
            pos[slots] = np.arange(len(slots), dtype=np.int64)
        return super().__new__(cls, keys, used, o_side, o_px, o_sz, lv_px, lv_sz, lv_ct, n_lv, meta,
                               dense, pos)


def new_l3_state(*, order_capacity: int = 1 << 14, level_capacity: int = 256,
                 start_synced: bool = False) -> L3State:
    """An empty book.

    Args:
        order_capacity: initial order slots (rounded up to a power of two; grows on demand).
        level_capacity: initial price levels per side (grows on demand).
        start_synced: report VALID before any snapshot (feeds that start from an empty book).
    """
    bits = max(4, int(order_capacity - 1).bit_length())
    cap = 1 << bits
    return L3State(
        keys=np.zeros(cap, np.uint64), used=np.zeros(cap, np.uint8), o_side=np.zeros(cap, np.uint8),
        o_px=np.zeros(cap, np.int64), o_sz=np.zeros(cap, np.int64),
        lv_px=np.zeros((2, level_capacity), np.int64), lv_sz=np.zeros((2, level_capacity), np.int64),
        lv_ct=np.zeros((2, level_capacity), np.int64), n_lv=np.zeros(2, np.int64),
        meta=np.array([0, int(start_synced), 0, bits, 0, 0], np.int64),
        dense=np.zeros(cap, np.int64), pos=np.zeros(cap, np.int64),
    )


@nb.njit(cache=True)
def l3_run(keys, used, o_side, o_px, o_sz, lv_px, lv_sz, lv_ct, n_lv, meta, dense, pos,
           order_id, action, side, price, size, flags, snap_rows, levels, start,
           bbo, status, anomaly, snaps, snap_status, anchor_row, anchors):
    """Apply rows ``start..`` in place (the :class:`L3State` arrays first, then the batch columns).

    ``anchor_row`` int64[n]: per row, -1 or the index of the vendor's book after it in ``anchors``
    int64[4, A, La] (bid px, bid sz, ask px, ask sz, best first, UNDEF_PRICE / 0 padded): after
    the row, sides that differ from it are re-anchored (:mod:`kernels.l3anchor`).

    Writes ``bbo`` int64[6, n], ``status`` / ``anomaly`` uint8[n] per row and, at the ascending
    ``snap_rows``, the top ``levels`` into ``snaps`` int64[6, k, levels] (pre-filled UNDEF_PRICE /
    0) and ``snap_status``. Returns the row it stopped before: ``n`` when done, earlier when a
    table is full (grow the state with the host and resume there).
    """
    bits = meta[_BITS]
    shift = np.uint64(64 - bits)
    mask = np.int64((1 << bits) - 1)
    n_orders = meta[_N_ORDERS]
    synced = meta[_SYNCED] != 0
    in_snap = meta[_IN_SNAPSHOT] != 0
    k = len(snap_rows)
    sp = np.searchsorted(snap_rows, start)
    # keep the table at most half full (short probe runs), with room for an anchor's levels
    la = anchors.shape[2]
    max_orders = ((mask + 1) >> 1) - 2 * la
    max_levels = lv_px.shape[1] - 1 - la
    stop = len(order_id)
    for i in range(start, len(order_id)):
        if n_orders >= max_orders or n_lv[0] >= max_levels or n_lv[1] >= max_levels:
            stop = i
            break
        f = flags[i]
        anom = ANOM_NONE
        if not f & F_SUPERSEDED:
            if f & F_SNAPSHOT:
                if not in_snap:
                    used[:] = 0
                    n_orders = 0
                    n_lv[0] = 0
                    n_lv[1] = 0
                    synced = False
                    in_snap = True
            elif in_snap:
                synced = True
                in_snap = False
        if f & F_GAP:
            synced = False
        if not f & F_SUPERSEDED:
            a = action[i]
            oid = order_id[i]
            sd = side[i]
            px = price[i]
            sz = size[i]
            if a == L3_CLEAR:
                used[:] = 0
                n_orders = 0
                n_lv[0] = 0
                n_lv[1] = 0
                synced = False
            elif a == L3_ADD or a == L3_MODIFY:
                if (sd != BID and sd != ASK) or sz < 0 or (a == L3_ADD and sz == 0):
                    anom = ANOM_BAD_EVENT
                else:
                    s = 0 if sd == BID else 1
                    j, found = _find(keys, used, oid, shift, mask)
                    if found:
                        if a == L3_ADD:
                            anom = ANOM_DUPLICATE_ADD
                        os_ = np.int64(o_side[j])
                        if sz > 0 and os_ == s and o_px[j] == px:
                            # same level: adjust in place, the order keeps its slot
                            lv_sz[s, _level_find(lv_px, s, n_lv[s], px)[0]] += sz - o_sz[j]
                            o_sz[j] = sz
                        else:
                            _level_sub(lv_px, lv_sz, lv_ct, n_lv, os_, o_px[j], o_sz[j], 1)
                            if sz > 0:
                                o_side[j], o_px[j], o_sz[j] = s, px, sz
                                _level_add(lv_px, lv_sz, lv_ct, n_lv, s, px, sz)
                            else:
                                _erase(keys, used, o_side, o_px, o_sz, dense, pos, n_orders, j, shift, mask)
                                n_orders -= 1
                    else:
                        if a == L3_MODIFY:
                            anom = ANOM_UNKNOWN_ORDER
                        if sz > 0:
                            _insert(keys, used, o_side, o_px, o_sz, dense, pos, n_orders, j, oid, s, px, sz)
                            n_orders += 1
                            _level_add(lv_px, lv_sz, lv_ct, n_lv, s, px, sz)
            elif a == L3_CANCEL:
                if sz < 0:
                    anom = ANOM_BAD_EVENT
                else:
                    j, found = _find(keys, used, oid, shift, mask)
                    if not found:
                        anom = ANOM_UNKNOWN_ORDER
                    else:
                        left = o_sz[j]
                        if sz > left:
                            anom = ANOM_SIZE_UNDERFLOW
                            sz = left
                        s = np.int64(o_side[j])
                        if sz == left:
                            _level_sub(lv_px, lv_sz, lv_ct, n_lv, s, o_px[j], sz, 1)
                            _erase(keys, used, o_side, o_px, o_sz, dense, pos, n_orders, j, shift, mask)
                            n_orders -= 1
                        else:
                            o_sz[j] = left - sz
                            _level_sub(lv_px, lv_sz, lv_ct, n_lv, s, o_px[j], sz, 0)
            elif a == L3_FILL:
                j, found = _find(keys, used, oid, shift, mask)
                if not found:
                    anom = ANOM_UNKNOWN_ORDER
            elif a != L3_TRADE and a != L3_NONE:
                anom = ANOM_BAD_EVENT
            if f & F_SNAPSHOT and f & F_LAST:
                synced = True
                in_snap = False
        if anchor_row[i] >= 0:
            r = anchor_row[i]
            for s in range(2):
                if top_differs(lv_px, lv_sz, n_lv, s, anchors[2 * s, r], anchors[2 * s + 1, r]):
                    n_orders, meta[_ANCHOR_IDS] = anchor_side(
                        keys, used, o_side, o_px, o_sz, dense, pos, n_orders, lv_px, lv_sz, lv_ct, n_lv, s,
                        anchors[2 * s, r], anchors[2 * s + 1, r], shift, mask, meta[_ANCHOR_IDS])
                    meta[_ANCHORS] += 1
            synced = True
        anomaly[i] = anom
        nb_, na_ = n_lv[0], n_lv[1]
        if nb_ > 0:
            bbo[0, i], bbo[1, i], bbo[2, i] = lv_px[0, nb_ - 1], lv_sz[0, nb_ - 1], lv_ct[0, nb_ - 1]
        else:
            bbo[0, i], bbo[1, i], bbo[2, i] = UNDEF_PRICE, 0, 0
        if na_ > 0:
            bbo[3, i], bbo[4, i], bbo[5, i] = lv_px[1, na_ - 1], lv_sz[1, na_ - 1], lv_ct[1, na_ - 1]
        else:
            bbo[3, i], bbo[4, i], bbo[5, i] = UNDEF_PRICE, 0, 0
        if not synced:
            st = RESYNC
        elif nb_ > 0 and na_ > 0 and bbo[0, i] > bbo[3, i]:
            st = CROSSED
        else:
            st = VALID
        status[i] = st
        while sp < k and snap_rows[sp] == i:
            for s in range(2):
                n = n_lv[s]
                for q in range(min(levels, n)):
                    snaps[3 * s, sp, q] = lv_px[s, n - 1 - q]
                    snaps[3 * s + 1, sp, q] = lv_sz[s, n - 1 - q]
                    snaps[3 * s + 2, sp, q] = lv_ct[s, n - 1 - q]
            snap_status[sp] = st
            sp += 1
    meta[_N_ORDERS] = n_orders
    meta[_SYNCED] = 1 if synced else 0
    meta[_IN_SNAPSHOT] = 1 if in_snap else 0
    return stop


@nb.njit(cache=True)
def _rehash(keys, o_side, o_px, o_sz, dense, n, nkeys, nused, nside, npx, nsz, ndense, npos, bits):
    shift = np.uint64(64 - bits)
    mask = np.int64((1 << bits) - 1)
    for d in range(n):
        j = dense[d]
        t, _ = _find(nkeys, nused, keys[j], shift, mask)
        _insert(nkeys, nused, nside, npx, nsz, ndense, npos, d, t, keys[j], o_side[j], o_px[j], o_sz[j])


def grow(state: L3State, room: int = 0) -> L3State:
    """Double whichever table the kernel stopped on (the order table is rehashed); ``room``: the
    anchor depth the kernel ran with (it keeps that many more orders and levels free)."""
    bits = int(state.meta[_BITS])
    if 2 * int(state.meta[_N_ORDERS]) >= (1 << bits) - 4 * room:
        new_bits = bits + 1
        cap = 1 << new_bits
        grown = (np.zeros(cap, np.uint64), np.zeros(cap, np.uint8), np.zeros(cap, np.uint8),
                 np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int64),
                 np.zeros(cap, np.int64))
        _rehash(state.keys, state.o_side, state.o_px, state.o_sz, state.dense, int(state.meta[_N_ORDERS]),
                *grown, new_bits)
        meta = state.meta.copy()
        meta[_BITS] = new_bits
        state = state._replace(keys=grown[0], used=grown[1], o_side=grown[2], o_px=grown[3],
                               o_sz=grown[4], dense=grown[5], pos=grown[6], meta=meta)
    lcap = state.lv_px.shape[1]
    if int(state.n_lv.max()) >= lcap - 1 - room:
        grown_lv = []
        for arr in (state.lv_px, state.lv_sz, state.lv_ct):
            g = np.zeros((2, 2 * lcap), np.int64)
            g[:, :lcap] = arr
            grown_lv.append(g)
        state = state._replace(lv_px=grown_lv[0], lv_sz=grown_lv[1], lv_ct=grown_lv[2])
    return state


def apply_l3(state: L3State, order_id: np.ndarray, action: np.ndarray, side: np.ndarray,
             price: np.ndarray, size: np.ndarray, flags: np.ndarray, *, levels: int = 0,
             snapshot_rows: np.ndarray | None = None) -> tuple[L3State, dict[str, np.ndarray]]:
    """Apply one batch of L3 events to ``state``.

    Args:
        state: the book before the batch (its arrays are updated in place, or replaced when they
            grow: always continue with the returned state).
        order_id: uint64[n]; action, side, flags: uint8[n]; price, size: int64[n] (1e-9 units).
        levels: depth recorded at ``snapshot_rows``.
        snapshot_rows: int64[k] ascending row indices of this batch after which to record the
            top ``levels`` levels.

    Returns:
        The new state and the per-row outputs of :func:`kernels.reference_l3.l3_replay_reference`
        (``bid_px .. ask_ct``, ``status``, ``anomaly`` and, with snapshot rows, ``snap_*``).
    """
    n = len(order_id)
    rows = np.zeros(0, np.int64) if snapshot_rows is None else np.asarray(snapshot_rows, np.int64)
    if len(rows) and (np.any(np.diff(rows) < 0) or rows[0] < 0 or rows[-1] >= n):
        raise ValueError(f"snapshot_rows must be ascending row indices below {n}, got {rows}")
    k = len(rows)
    bbo = np.empty((6, n), np.int64)
    status = np.empty(n, np.uint8)
    anomaly = np.empty(n, np.uint8)
    snaps = np.zeros((6, k, levels), np.int64)
    snaps[0::3] = UNDEF_PRICE
    snap_status = np.empty(k, np.uint8)
    arrays = (np.asarray(order_id, np.uint64), np.asarray(action, np.uint8), np.asarray(side, np.uint8),
              np.asarray(price, np.int64), np.asarray(size, np.int64), np.asarray(flags, np.uint8))
    done = 0
    no_anchor, no_anchors = np.full(n, -1, np.int64), np.zeros((4, 0, 0), np.int64)
    while True:
        done = l3_run(*state, *arrays, rows, levels, done, bbo, status, anomaly, snaps, snap_status,
                      no_anchor, no_anchors)
        if done == n:
            break
        state = grow(state)
    out = {name: bbo[q] for q, name in enumerate(BBO_KEYS)}
    out["status"] = status
    out["anomaly"] = anomaly
    if snapshot_rows is not None:
        out.update({name: snaps[q] for q, name in enumerate(SNAP_KEYS)})
        out["snap_status"] = snap_status
    return state, out


def l3_replay(order_id: np.ndarray, action: np.ndarray, side: np.ndarray, price: np.ndarray,
              size: np.ndarray, flags: np.ndarray, *, levels: int = 0,
              snapshot_rows: np.ndarray | None = None, start_synced: bool = False,
              batch_rows: int | None = None) -> dict[str, np.ndarray]:
    """Replay a whole event array from an empty book (in batches of ``batch_rows``, if given).

    Same arguments and outputs as :func:`kernels.reference_l3.l3_replay_reference`. One batch is
    fastest (no concatenation); smaller batches show how a stream is fed, with the same result.
    """
    n = len(order_id)
    batch_rows = batch_rows or max(n, 1)
    state = new_l3_state(start_synced=start_synced)
    rows = np.zeros(0, np.int64) if snapshot_rows is None else np.asarray(snapshot_rows, np.int64)
    parts: list[dict[str, np.ndarray]] = []
    for lo in range(0, max(n, 1), batch_rows):
        hi = min(n, lo + batch_rows)
        sel = rows[(rows >= lo) & (rows < hi)] - lo
        state, out = apply_l3(state, order_id[lo:hi], action[lo:hi], side[lo:hi], price[lo:hi],
                              size[lo:hi], flags[lo:hi], levels=levels,
                              snapshot_rows=sel if snapshot_rows is not None else None)
        parts.append(out)
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


__all__ = ["ANOM_BAD_EVENT", "ANOM_DUPLICATE_ADD", "ANOM_NONE", "ANOM_SIZE_UNDERFLOW",
           "ANOM_UNKNOWN_ORDER", "CROSSED", "RESYNC", "VALID", "L3State", "apply_l3", "grow", "l3_replay",
           "l3_run", "new_l3_state"]
