"""The L3 book's tables: the order hash table and the sorted price levels (see :mod:`kernels.l3book`).

Beside the hash table, a dense list of its occupied slots (``dense[:n]``, and ``pos[slot]`` the
place of a slot's order in it): a walk over every order (re-anchoring, a rehash) costs the orders
there are, not the table's capacity.

Shared by the book kernel and the re-anchoring of :mod:`kernels.l3anchor`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True, inline="always")
def _home(oid, shift, mask):
    return np.int64((oid * _GOLDEN) >> shift) & mask


@nb.njit(cache=True, inline="always")
def _find(keys, used, oid, shift, mask):
    j = _home(oid, shift, mask)
    while used[j]:
        if keys[j] == oid:
            return j, True
        j = (j + 1) & mask
    return j, False


@nb.njit(cache=True, inline="always")
def _insert(keys, used, o_side, o_px, o_sz, dense, pos, n, j, oid, s, px, sz):
    # slot j (a free one, from _find) takes the order; it is the n-th of the dense list
    keys[j], used[j], o_side[j], o_px[j], o_sz[j] = oid, 1, s, px, sz
    dense[n] = j
    pos[j] = n


@nb.njit(cache=True)
def _erase(keys, used, o_side, o_px, o_sz, dense, pos, n, j, shift, mask):
    # the dense list (n orders before this one goes): its last order takes the erased one's place
    d = pos[j]
    last = dense[n - 1]
    dense[d] = last
    pos[last] = d
    # backward-shift deletion: pull later entries of the probe run into the hole when their home
    # slot is not cyclically inside (hole, k], so every lookup still finds them (a moved order
    # keeps its place in the dense list, which follows it to its new slot)
    i = j
    k = (j + 1) & mask
    while used[k]:
        h = _home(keys[k], shift, mask)
        if (k > i and (h <= i or h > k)) or (k < i and h <= i and h > k):
            keys[i], o_side[i], o_px[i], o_sz[i] = keys[k], o_side[k], o_px[k], o_sz[k]
            pos[i] = pos[k]
            dense[pos[i]] = i
            i = k
        k = (k + 1) & mask
    used[i] = 0


@nb.njit(cache=True, inline="always")
def _level_find(lv_px, s, n, price):
    # key ascending towards the best: price for bids, -price for asks. Most events touch the
    # first few levels, so walk down from the best a little before bisecting the rest.
    sgn = 1 if s == 0 else -1
    key = price * sgn
    lo = 0
    q = n - 1
    while q >= 0 and q >= n - 8:
        k = lv_px[s, q] * sgn
        if k == key:
            return q, True
        if k < key:
            return q + 1, False
        q -= 1
    hi = q + 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if lv_px[s, mid] * sgn < key:
            lo = mid + 1
        else:
            hi = mid
    return lo, lo < n and lv_px[s, lo] == price


@nb.njit(cache=True)
def _level_add(lv_px, lv_sz, lv_ct, n_lv, s, price, size):
    n = n_lv[s]
    j, found = _level_find(lv_px, s, n, price)
    if found:
        lv_sz[s, j] += size
        lv_ct[s, j] += 1
        return
    for q in range(n, j, -1):
        lv_px[s, q], lv_sz[s, q], lv_ct[s, q] = lv_px[s, q - 1], lv_sz[s, q - 1], lv_ct[s, q - 1]
    lv_px[s, j], lv_sz[s, j], lv_ct[s, j] = price, size, 1
    n_lv[s] = n + 1


@nb.njit(cache=True)
def _level_sub(lv_px, lv_sz, lv_ct, n_lv, s, price, size, count):
    n = n_lv[s]
    j, found = _level_find(lv_px, s, n, price)
    if not found:
        raise AssertionError("L3 book: a resting order's price level is missing")
    lv_sz[s, j] -= size
    lv_ct[s, j] -= count
    if lv_ct[s, j] == 0:
        for q in range(j, n - 1):
            lv_px[s, q], lv_sz[s, q], lv_ct[s, q] = lv_px[s, q + 1], lv_sz[s, q + 1], lv_ct[s, q + 1]
        n_lv[s] = n - 1
