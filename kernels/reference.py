"""Plain-Python reference books: the oracle the fast kernels are tested against.

Semantics shared by every L2 backend (arrays of one instrument, in arrival order):

* ``flags & F_SUPERSEDED``: the event is not applied (already inside the snapshot).
* ``flags & F_GAP``: the book enters RESYNC before the event is applied.
* action ``R`` clears the book and enters RESYNC; rows with ``F_SNAPSHOT`` rebuild it, and the
  snapshot row that carries ``F_LAST`` re-anchors it (state VALID). A book is never VALID before
  its first completed snapshot.
* action ``U`` sets a level to the absolute size (size 0 deletes); ``D`` deletes a level.
* after each event the status is VALID (0), RESYNC (1) or CROSSED (2: synced, but best bid >
  best ask; a locked book, bid == ask, is valid).
* an empty side reports price ``UNDEF_PRICE`` and size 0.
"""

from __future__ import annotations

import numpy as np

from kernels.codes import (
    BID,
    CROSSED,
    F_GAP,
    F_LAST,
    F_SNAPSHOT,
    F_SUPERSEDED,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    RESYNC,
    UNDEF_PRICE,
    VALID,
)


def l2_replay_reference(side: np.ndarray, action: np.ndarray, price: np.ndarray, size: np.ndarray,
                        flags: np.ndarray, *, levels: int = 0, snapshot_rows: np.ndarray | None = None,
                        ) -> dict[str, np.ndarray]:
    """Apply L2 events one at a time with dicts.

    Args:
        side, action, flags: uint8[n]; price, size: int64[n] (1e-9 units).
        levels: depth of the snapshots taken at ``snapshot_rows``.
        snapshot_rows: int64[k] row indices after which to record the top ``levels`` levels.

    Returns:
        ``bid_px, bid_sz, ask_px, ask_sz`` int64[n], ``status`` uint8[n]; with snapshots also
        ``snap_bid_px, snap_bid_sz, snap_ask_px, snap_ask_sz`` int64[k, levels] (padded with
        UNDEF_PRICE / 0) and ``snap_status`` uint8[k].
    """
    n = len(side)
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    synced = False
    out = {k: np.empty(n, np.int64) for k in ("bid_px", "bid_sz", "ask_px", "ask_sz")}
    status = np.empty(n, np.uint8)
    rows = set() if snapshot_rows is None else set(int(r) for r in snapshot_rows)
    snaps: dict[int, tuple] = {}
    for i in range(n):
        f = int(flags[i])
        if f & F_GAP:
            synced = False
        if not f & F_SUPERSEDED:
            a = int(action[i])
            book = bids if side[i] == BID else asks
            if a == L2_CLEAR:
                bids.clear()
                asks.clear()
                synced = False
            elif a == L2_DELETE or (a == L2_SET and size[i] == 0):
                book.pop(int(price[i]), None)
            elif a == L2_SET:
                book[int(price[i])] = int(size[i])
            if f & F_SNAPSHOT and f & F_LAST:
                synced = True
        bb = max(bids) if bids else None
        ba = min(asks) if asks else None
        out["bid_px"][i] = UNDEF_PRICE if bb is None else bb
        out["bid_sz"][i] = 0 if bb is None else bids[bb]
        out["ask_px"][i] = UNDEF_PRICE if ba is None else ba
        out["ask_sz"][i] = 0 if ba is None else asks[ba]
        crossed = bb is not None and ba is not None and bb > ba
        status[i] = RESYNC if not synced else (CROSSED if crossed else VALID)
        if i in rows:
            snaps[i] = (_top(bids, levels, reverse=True), _top(asks, levels, reverse=False), status[i])
    out["status"] = status
    if snapshot_rows is not None:
        k = len(snapshot_rows)
        for name in ("snap_bid_px", "snap_ask_px"):
            out[name] = np.full((k, levels), UNDEF_PRICE, np.int64)
        for name in ("snap_bid_sz", "snap_ask_sz"):
            out[name] = np.zeros((k, levels), np.int64)
        out["snap_status"] = np.empty(k, np.uint8)
        for j, r in enumerate(snapshot_rows):
            (bp, bs), (ap, as_), st = snaps[int(r)]
            out["snap_bid_px"][j, : len(bp)] = bp
            out["snap_bid_sz"][j, : len(bs)] = bs
            out["snap_ask_px"][j, : len(ap)] = ap
            out["snap_ask_sz"][j, : len(as_)] = as_
            out["snap_status"][j] = st
    return out


def _top(book: dict[int, int], levels: int, *, reverse: bool) -> tuple[list[int], list[int]]:
    prices = sorted(book, reverse=reverse)[:levels]
    return prices, [book[p] for p in prices]
