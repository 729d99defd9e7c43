"""Re-anchoring an L3 book to a vendor's own book (LOBSTER's orderbook file).

A LOBSTER message file of N levels cannot rebuild the book alone: the book does not start empty
and events beyond the N-level window are not in it. Its orderbook file has, for every message,
the top N levels after it. :func:`kernels.l3book.l3_run` takes those as anchors: after a row with
an anchor, each side whose top levels differ from the vendor's is re-anchored (:func:`anchor_side`),
and the book counts as synced (a seed is the first anchor).

The window a vendor row vouches for: its levels, best first; when it shows fewer than N levels
the side has no others (the whole side), else every price at or better than its N-th level.
Re-anchoring removes the side's orders inside the window and adds one synthetic order per vendor
level (ids from ``ANCHOR_ID_BASE`` up, never a real order's): orders deeper than the window stay,
and a later event of a removed order is an unknown order (no effect), which the next anchor
corrects if it mattered.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from kernels._l3table import _erase, _find, _insert, _level_add, _level_sub
from kernels.codes import UNDEF_PRICE

ANCHOR_ID_BASE = np.uint64(0xFFFF_FFFF_0000_0000)


@nb.njit(cache=True, inline="always")
def _shown(vpx: np.ndarray) -> int:
    q = 0
    while q < len(vpx) and vpx[q] != UNDEF_PRICE:
        q += 1
    return q


@nb.njit(cache=True)
def top_differs(lv_px: np.ndarray, lv_sz: np.ndarray, n_lv: np.ndarray, s: int, vpx: np.ndarray,
                vsz: np.ndarray) -> bool:
    """Whether side ``s`` (0 bid, 1 ask) differs from the vendor's levels inside their window."""
    nv = _shown(vpx)
    n = n_lv[s]
    if n < nv or (nv < len(vpx) and n != nv):
        return True
    for q in range(nv):
        if lv_px[s, n - 1 - q] != vpx[q] or lv_sz[s, n - 1 - q] != vsz[q]:
            return True
    return False


@nb.njit(cache=True)
def anchor_side(keys: np.ndarray, used: np.ndarray, o_side: np.ndarray, o_px: np.ndarray, o_sz: np.ndarray,
                dense: np.ndarray, pos: np.ndarray, n: int, lv_px: np.ndarray, lv_sz: np.ndarray,
                lv_ct: np.ndarray, n_lv: np.ndarray, s: int, vpx: np.ndarray, vsz: np.ndarray,
                shift: np.uint64, mask: np.int64, next_id: int) -> tuple[int, int]:
    """Make side ``s`` show the vendor's levels: (the orders of the book now, next synthetic id).

    ``n``: the orders before (``dense[:n]`` their slots). The caller leaves room for ``len(vpx)``
    more orders and levels.
    """
    nv = _shown(vpx)
    whole = nv < len(vpx)
    edge = vpx[nv - 1] if nv > 0 else 0
    # walk the orders (the dense list), not the table: a re-anchor costs the orders there are
    d = 0
    while d < n:
        j = dense[d]
        if o_side[j] == s and (whole or (o_px[j] >= edge if s == 0 else o_px[j] <= edge)):
            _level_sub(lv_px, lv_sz, lv_ct, n_lv, s, o_px[j], o_sz[j], 1)
            # the list's last order moves into place d: look at d again
            _erase(keys, used, o_side, o_px, o_sz, dense, pos, n, j, shift, mask)
            n -= 1
            continue
        d += 1
    for q in range(nv):
        if vsz[q] <= 0:
            continue
        oid = ANCHOR_ID_BASE + np.uint64(next_id)
        next_id += 1
        t, _ = _find(keys, used, oid, shift, mask)
        _insert(keys, used, o_side, o_px, o_sz, dense, pos, n, t, oid, s, vpx[q], vsz[q])
        n += 1
        _level_add(lv_px, lv_sz, lv_ct, n_lv, s, vpx[q], vsz[q])
    return n, next_id
