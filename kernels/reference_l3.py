"""Plain-Python L3 (market-by-order) reference book: the oracle the numba kernel is tested against.

Semantics (DBN MBO; arrays of one instrument in arrival order; sides and actions are ASCII codes):

* ``flags & F_SUPERSEDED``: the event is not applied. ``flags & F_GAP``: RESYNC before applying.
* ``A`` adds an order. An id that is already resting is a ``DUPLICATE_ADD`` anomaly: the old order
  is replaced. A side other than B/A or a size <= 0 is a ``BAD_EVENT`` and is ignored.
* ``C`` removes ``size`` from the order; the order goes when nothing is left. An unknown id is an
  ``UNKNOWN_ORDER`` anomaly (nothing changes); removing more than is left is a ``SIZE_UNDERFLOW``
  anomaly and removes the whole order (sizes never go negative).
* ``M`` gives the order a new side/price/size (size 0 removes it). An unknown id is an
  ``UNKNOWN_ORDER`` anomaly and is then treated as an add, as Databento's reference books do.
* ``F`` (resting fill) and ``T`` (aggressor trade) do not change the book: the ``C``/``M`` that
  follow do. ``F`` of an unknown id is ``UNKNOWN_ORDER``. A fill larger than the displayed size
  is NOT an anomaly: CME icebergs fill beyond their display and the following ``M`` refills them.
  ``N`` does nothing. ``R`` clears the book and enters RESYNC.
* A run of ``F_SNAPSHOT`` rows rebuilds the book: its first row clears it (RESYNC); the snapshot
  is complete (VALID) at its row with ``F_SNAPSHOT | F_LAST`` or, when it ends without one (as
  Databento's 2023-12-25 GLBX start-of-day snapshot does), at the first non-snapshot row. A book
  is never VALID before its first completed snapshot unless ``start_synced``. ``F_GAP`` is
  applied after that, so a gap right after a snapshot still forces RESYNC.
* After every row: best bid/ask price, aggregated size and order count (an empty side reports
  ``UNDEF_PRICE``, 0, 0) and the status VALID (0) / RESYNC (1) / CROSSED (2: synced but best bid >
  best ask). Databento publishes a book only at rows with ``F_LAST``: consumers judge the status
  there (mid-event rows may be transiently crossed).
"""

from __future__ import annotations

import numpy as np

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

ANOM_NONE, ANOM_UNKNOWN_ORDER, ANOM_SIZE_UNDERFLOW, ANOM_DUPLICATE_ADD, ANOM_BAD_EVENT = 0, 1, 2, 3, 4
BBO_KEYS = ("bid_px", "bid_sz", "bid_ct", "ask_px", "ask_sz", "ask_ct")
SNAP_KEYS = ("snap_bid_px", "snap_bid_sz", "snap_bid_ct", "snap_ask_px", "snap_ask_sz", "snap_ask_ct")


class _Book:
    def __init__(self) -> None:
        self.orders: dict[int, tuple[int, int, int]] = {}  # id -> (side, price, size)
        self.levels: dict[int, dict[int, list[int]]] = {BID: {}, ASK: {}}  # price -> [size, count]

    def clear(self) -> None:
        self.orders.clear()
        self.levels[BID].clear()
        self.levels[ASK].clear()

    def level_add(self, side: int, price: int, size: int) -> None:
        lv = self.levels[side].setdefault(price, [0, 0])
        lv[0] += size
        lv[1] += 1

    def level_sub(self, side: int, price: int, size: int, count: int) -> None:
        lv = self.levels[side][price]
        lv[0] -= size
        lv[1] -= count
        if lv[1] == 0:
            del self.levels[side][price]

    def remove(self, oid: int) -> None:
        side, price, size = self.orders.pop(oid)
        self.level_sub(side, price, size, 1)

    def put(self, oid: int, side: int, price: int, size: int) -> None:
        self.orders[oid] = (side, price, size)
        self.level_add(side, price, size)

    def top(self, side: int, levels: int) -> list[tuple[int, int, int]]:
        book = self.levels[side]
        prices = sorted(book, reverse=side == BID)[:levels]
        return [(p, book[p][0], book[p][1]) for p in prices]


def _apply(book: _Book, a: int, oid: int, side: int, price: int, size: int) -> int:
    """Apply one event; return its anomaly code."""
    if a == L3_ADD:
        if side not in (BID, ASK) or size <= 0:
            return ANOM_BAD_EVENT
        anomaly = ANOM_NONE
        if oid in book.orders:
            book.remove(oid)
            anomaly = ANOM_DUPLICATE_ADD
        book.put(oid, side, price, size)
        return anomaly
    if a == L3_CANCEL:
        if size < 0:
            return ANOM_BAD_EVENT
        if oid not in book.orders:
            return ANOM_UNKNOWN_ORDER
        o_side, o_price, o_size = book.orders[oid]
        anomaly = ANOM_SIZE_UNDERFLOW if size > o_size else ANOM_NONE
        removed = min(size, o_size)
        if removed == o_size:
            book.remove(oid)
        else:
            book.orders[oid] = (o_side, o_price, o_size - removed)
            book.level_sub(o_side, o_price, removed, 0)
        return anomaly
    if a == L3_MODIFY:
        if side not in (BID, ASK) or size < 0:
            return ANOM_BAD_EVENT
        anomaly = ANOM_NONE
        if oid in book.orders:
            book.remove(oid)
        else:
            anomaly = ANOM_UNKNOWN_ORDER
        if size > 0:
            book.put(oid, side, price, size)
        return anomaly
    if a == L3_FILL:
        return ANOM_NONE if oid in book.orders else ANOM_UNKNOWN_ORDER
    if a in (L3_TRADE, L3_NONE):
        return ANOM_NONE
    return ANOM_BAD_EVENT


def l3_replay_reference(order_id: np.ndarray, action: np.ndarray, side: np.ndarray, price: np.ndarray,
                        size: np.ndarray, flags: np.ndarray, *, levels: int = 0,
                        snapshot_rows: np.ndarray | None = None, start_synced: bool = False,
                        ) -> dict[str, np.ndarray]:
    """Apply L3 events one at a time with dicts.

    Args:
        order_id: uint64[n]; action, side, flags: uint8[n] (ASCII codes, quality flags);
            price, size: int64[n] (1e-9 units).
        levels: depth of the snapshots taken at ``snapshot_rows``.
        snapshot_rows: int64[k] ascending row indices after which to record the top ``levels``.
        start_synced: treat the empty starting book as valid (feeds without a snapshot).

    Returns:
        ``bid_px, bid_sz, bid_ct, ask_px, ask_sz, ask_ct`` int64[n], ``status`` and ``anomaly``
        uint8[n]; with snapshots also ``snap_*`` int64[k, levels] (padded with UNDEF_PRICE / 0)
        and ``snap_status`` uint8[k].
    """
    n = len(order_id)
    book = _Book()
    synced = start_synced
    in_snapshot = False
    out = {k: np.empty(n, np.int64) for k in BBO_KEYS}
    out["status"] = np.empty(n, np.uint8)
    out["anomaly"] = np.zeros(n, np.uint8)
    rows = [] if snapshot_rows is None else [int(r) for r in snapshot_rows]
    k = len(rows)
    snaps = {name: np.full((k, levels), UNDEF_PRICE if name.endswith("_px") else 0, np.int64)
             for name in SNAP_KEYS}
    snap_status = np.empty(k, np.uint8)
    sp = 0
    for i in range(n):
        f = int(flags[i])
        if not f & F_SUPERSEDED:
            if f & F_SNAPSHOT:
                if not in_snapshot:
                    book.clear()
                    synced = False
                    in_snapshot = True
            elif in_snapshot:
                synced = True
                in_snapshot = False
        if f & F_GAP:
            synced = False
        if not f & F_SUPERSEDED:
            a = int(action[i])
            if a == L3_CLEAR:
                book.clear()
                synced = False
            else:
                out["anomaly"][i] = _apply(book, a, int(order_id[i]), int(side[i]), int(price[i]),
                                           int(size[i]))
            if f & F_SNAPSHOT and f & F_LAST:
                synced = True
                in_snapshot = False
        bids, asks = book.top(BID, 1), book.top(ASK, 1)
        for prefix, top in (("bid", bids), ("ask", asks)):
            px, sz, ct = top[0] if top else (UNDEF_PRICE, 0, 0)
            out[f"{prefix}_px"][i], out[f"{prefix}_sz"][i], out[f"{prefix}_ct"][i] = px, sz, ct
        crossed = bool(bids and asks and bids[0][0] > asks[0][0])
        out["status"][i] = RESYNC if not synced else (CROSSED if crossed else VALID)
        while sp < k and rows[sp] == i:
            for prefix, s in (("bid", BID), ("ask", ASK)):
                for q, (px, sz, ct) in enumerate(book.top(s, levels)):
                    snaps[f"snap_{prefix}_px"][sp, q] = px
                    snaps[f"snap_{prefix}_sz"][sp, q] = sz
                    snaps[f"snap_{prefix}_ct"][sp, q] = ct
            snap_status[sp] = out["status"][i]
            sp += 1
    if snapshot_rows is not None:
        out.update(snaps)
        out["snap_status"] = snap_status
    return out
