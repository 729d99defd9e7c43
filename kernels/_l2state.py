"""Book state shared by the numba and JAX L2 kernels, and the host-side repairs both rely on.

Prices are mapped to ticks ``t = price_nanos // tick_nanos`` (``tick_nanos`` is the gcd of every
price applied so far, so the map is exact). A dense window of ``W`` ticks starting at tick ``lo``
holds the levels near the touch, as hftbacktest's ROI vector does; levels outside the window are
kept, never dropped, in a small unsorted "spill" list per side. The kernels handle the common path
and stop ("halt") at the first event they cannot apply in place; the host then repairs the state
with :func:`rebuild` (new tick, window moved onto the touch, bigger spill) and resumes at that
event. Halts are rare: once per tick refinement, once per touch leaving the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kernels.codes import F_SUPERSEDED, L2_DELETE, L2_SET, UNDEF_PRICE

# meta vector layout (int64[N_META])
TICK, LO, BB, BA, NB, NA, NSB, NSA, SBB, SBA, SYNCED = range(11)
N_META = 11
# halt codes returned by the kernels with the index of the event not yet applied
DONE, REGRID, SPILL_FULL, RECENTER, CLEAR_BOOK = 0, 1, 2, 3, 4
# the window never starts beyond +-2**62 ticks, so ``lo + W`` can not overflow int64
LO_LIMIT = 2**62
DEFAULT_WINDOW_TICKS = 1 << 16
DEFAULT_SPILL = 1024


@dataclass
class L2State:
    """One instrument's L2 book, as plain arrays (the numba kernel mutates them in place).

    Attributes:
        bid_w, ask_w: int64[W] absolute size at tick ``lo + j`` (0 = no level).
        sp_tick, sp_sz: int64[2, S] spill levels (row 0 bids, row 1 asks), ascending by tick;
            the first ``meta[NSB]`` / ``meta[NSA]`` entries of each row are in use.
        meta: int64[N_META]: tick (0 = not known yet), lo, window best bid index (-1 none),
            window best ask index (W none), window level counts, spill counts, index of the
            best spill level per side (-1 none), synced flag.
    """

    bid_w: np.ndarray
    ask_w: np.ndarray
    sp_tick: np.ndarray
    sp_sz: np.ndarray
    meta: np.ndarray

    @property
    def window_ticks(self) -> int:
        return self.bid_w.shape[0]

    @property
    def spill_capacity(self) -> int:
        return self.sp_tick.shape[1]

    def copy(self) -> L2State:
        return L2State(*(a.copy() for a in (self.bid_w, self.ask_w, self.sp_tick, self.sp_sz, self.meta)))


def new_state(*, window_ticks: int = DEFAULT_WINDOW_TICKS, spill: int = DEFAULT_SPILL,
              tick_nanos: int = 0) -> L2State:
    """An empty, unsynced book (``tick_nanos`` 0 lets the first batch choose it)."""
    if window_ticks < 2 or window_ticks & (window_ticks - 1):
        raise ValueError(f"window_ticks must be a power of two >= 2, got {window_ticks}")
    if tick_nanos < 0:
        raise ValueError(f"tick_nanos must be >= 0, got {tick_nanos}")
    meta = np.zeros(N_META, np.int64)
    meta[TICK] = tick_nanos
    meta[BB], meta[BA], meta[SBB], meta[SBA] = -1, window_ticks, -1, -1
    return L2State(np.zeros(window_ticks, np.int64), np.zeros(window_ticks, np.int64),
                   np.zeros((2, spill), np.int64), np.zeros((2, spill), np.int64), meta)


def levels(state: L2State) -> tuple[dict[int, int], dict[int, int]]:
    """Every level of the book as ``{price_nanos: size_nanos}`` for bids and asks."""
    m = state.meta
    tick, lo = int(m[TICK]), int(m[LO])
    out: list[dict[int, int]] = []
    for row, (w, count) in enumerate(((state.bid_w, m[NSB]), (state.ask_w, m[NSA]))):
        side: dict[int, int] = {}
        for j in np.flatnonzero(w):
            side[(lo + int(j)) * tick] = int(w[j])
        for k in range(int(count)):
            side[int(state.sp_tick[row, k]) * tick] = int(state.sp_sz[row, k])
        out.append(side)
    return out[0], out[1]


def anchor(tick_center: int, window_ticks: int) -> int:
    """Window start that puts ``tick_center`` in the middle, kept within +-LO_LIMIT."""
    return max(-LO_LIMIT, min(LO_LIMIT, tick_center - window_ticks // 2))


def rebuild(state: L2State, *, tick_nanos: int | None = None, center_tick: int | None = None,
            spill: int | None = None) -> L2State:
    """A new state holding the same levels on a (finer) tick, window and spill capacity.

    Args:
        state: the book to move.
        tick_nanos: the new tick; must divide every price in the book (the gcd keeps that true).
        center_tick: tick (in the new grid) to put at the middle of the window; default keeps
            the old window's middle.
        spill: minimum spill capacity; it also grows to twice the levels that land outside.
    """
    bids, asks = levels(state)
    m = state.meta
    old_tick = int(m[TICK])
    tick = old_tick if tick_nanos is None else tick_nanos
    w = state.window_ticks
    if center_tick is None:
        center_tick = (int(m[LO]) + w // 2) * old_tick // tick if old_tick else 0
    lo = anchor(center_tick, w)
    books = ({p // tick: s for p, s in bids.items()}, {p // tick: s for p, s in asks.items()})
    outside = [sorted(t for t in b if not lo <= t < lo + w) for b in books]
    cap = max(spill or 0, state.spill_capacity, 2 * max(len(o) for o in outside))
    new = new_state(window_ticks=w, spill=cap, tick_nanos=tick)
    nm = new.meta
    nm[LO], nm[SYNCED] = lo, m[SYNCED]
    for row, (book, arr) in enumerate(zip(books, (new.bid_w, new.ask_w), strict=True)):
        inside = np.array([t - lo for t in book if lo <= t < lo + w], np.int64)
        arr[inside] = [book[t + lo] for t in inside.tolist()]
        nm[NB + row] = len(inside)
        if len(inside):
            nm[BB + row] = inside.max() if row == 0 else inside.min()
        spilled = outside[row]
        new.sp_tick[row, : len(spilled)] = spilled
        new.sp_sz[row, : len(spilled)] = [book[t] for t in spilled]
        nm[NSB + row] = len(spilled)
        if spilled:
            nm[SBB + row] = len(spilled) - 1 if row == 0 else 0
    return new


def refine_tick(state: L2State, price: np.ndarray, applied: np.ndarray) -> int:
    """The gcd of the current tick and every applied price of the batch (1 when all are 0)."""
    g = int(np.gcd.reduce(np.abs(price[applied]))) if applied.any() else 0
    g = math.gcd(g, int(state.meta[TICK]))
    return g or 1


def applied_mask(action: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Rows whose price enters the book (set/delete, not superseded)."""
    return ((action == L2_SET) | (action == L2_DELETE)) & ((flags & F_SUPERSEDED) == 0)


def handle_halt(state: L2State, code: int, i: int, side: np.ndarray, price: np.ndarray,
                action: np.ndarray, flags: np.ndarray) -> L2State:
    """Repair ``state`` so the event ``i`` the kernel halted on can be applied.

    Raises:
        RuntimeError: an unknown halt code (a kernel bug, not bad data).
    """
    if code == REGRID:
        tick = refine_tick(state, price[i:], applied_mask(action[i:], flags[i:]))
        return rebuild(state, tick_nanos=tick, center_tick=int(price[i]) // tick)
    if code == SPILL_FULL:
        return rebuild(state, spill=2 * state.spill_capacity)
    if code == RECENTER:
        return rebuild(state, center_tick=int(price[i]) // int(state.meta[TICK]))
    if code == CLEAR_BOOK:
        fresh = new_state(window_ticks=state.window_ticks, spill=state.spill_capacity,
                          tick_nanos=int(state.meta[TICK]))
        fresh.meta[LO] = state.meta[LO]
        return fresh
    raise RuntimeError(f"unknown L2 kernel halt code {code} at event {i}")


def alloc_outputs(n: int, snapshot_rows: np.ndarray | None, levels_n: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Output buffers: bbo int64[4, n], status uint8[n], snap_slot int64[n] (-1 = none),
    snaps int64[4, k, levels] (prices UNDEF, sizes 0), snap_status uint8[k]."""
    bbo = np.empty((4, n), np.int64)
    status = np.empty(n, np.uint8)
    slot = np.full(n, -1, np.int64)
    k = 0 if snapshot_rows is None else len(snapshot_rows)
    if k:
        rows = np.asarray(snapshot_rows, np.int64)
        if rows.min() < 0 or rows.max() >= n:
            raise IndexError(f"snapshot row out of range 0..{n - 1}: {rows.min()}..{rows.max()}")
        # several requests for one row read the same slot: keep the last, copy after
        slot[rows] = np.arange(k)
    snaps = np.zeros((4, k, levels_n), np.int64)
    snaps[0] = UNDEF_PRICE
    snaps[2] = UNDEF_PRICE
    return bbo, status, slot, snaps, np.zeros(k, np.uint8)


def pack_outputs(bbo: np.ndarray, status: np.ndarray, snapshot_rows: np.ndarray | None,
                 slot: np.ndarray, snaps: np.ndarray, snap_status: np.ndarray) -> dict[str, np.ndarray]:
    """The reference's output dict from kernel buffers."""
    out = {"bid_px": bbo[0], "bid_sz": bbo[1], "ask_px": bbo[2], "ask_sz": bbo[3], "status": status}
    if snapshot_rows is not None:
        # duplicated rows: every request reads the slot the kernel filled for that row
        take = slot[np.asarray(snapshot_rows, np.int64)] if len(snapshot_rows) else np.zeros(0, np.int64)
        for j, name in enumerate(("snap_bid_px", "snap_bid_sz", "snap_ask_px", "snap_ask_sz")):
            out[name] = snaps[j][take]
        out["snap_status"] = snap_status[take]
    return out
