"""L2 price-level book kernel in numba: BBO after every event and top-N snapshots.

Same semantics as :func:`kernels.reference.l2_replay_reference` (the oracle), same outputs, and
the same state layout as the JAX kernel (:mod:`kernels._l2state`). numba has ~1 us call overhead,
so this backend also serves one-event-at-a-time (latency) paths.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._l2state import (
    BA,
    BB,
    DEFAULT_SPILL,
    DEFAULT_WINDOW_TICKS,
    DONE,
    LO,
    LO_LIMIT,
    NA,
    NB,
    NSA,
    NSB,
    RECENTER,
    REGRID,
    SBA,
    SBB,
    SPILL_FULL,
    SYNCED,
    TICK,
    L2State,
    alloc_outputs,
    handle_halt,
    new_state,
    pack_outputs,
)
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


@njit(cache=True, nogil=True)
def _spill(sp_tick: np.ndarray, sp_sz: np.ndarray, row: int, t: int, sz: int, remove: bool, count: int
           ) -> tuple[int, int]:
    """Set or delete a level outside the window; returns (halt code, new count).

    The spill row stays sorted by tick (binary search, then a short memmove), so a venue that
    keeps thousands of far levels costs log(n) per far update, and the best spilled level is an
    end of the row.
    """
    k = np.searchsorted(sp_tick[row, :count], t)
    found = k < count and sp_tick[row, k] == t
    if remove:
        if not found:
            return DONE, count
        sp_tick[row, k:count - 1] = sp_tick[row, k + 1:count]
        sp_sz[row, k:count - 1] = sp_sz[row, k + 1:count]
        return DONE, count - 1
    if found:
        sp_sz[row, k] = sz
        return DONE, count
    if count == sp_tick.shape[1]:
        return SPILL_FULL, count
    for q in range(count, k, -1):
        sp_tick[row, q] = sp_tick[row, q - 1]
        sp_sz[row, q] = sp_sz[row, q - 1]
    sp_tick[row, k] = t
    sp_sz[row, k] = sz
    return DONE, count + 1


@njit(cache=True, nogil=True, inline="always")
def _to_tick(p: int, tick: int, inv: float) -> tuple[int, bool]:
    """(floor(p / tick), p % tick == 0) without a 64-bit integer division on the hot path.

    A float estimate of the quotient is off by at most a few units while |p| < 2**52; the
    integer remainder corrects it exactly. Larger prices take the exact (slow) division.
    """
    if -(2**52) < p < 2**52:
        q = np.int64(p * inv)
        r = p - q * tick
        while r < 0:
            q -= 1
            r += tick
        while r >= tick:
            q += 1
            r -= tick
        return q, r == 0
    return p // tick, p % tick == 0


@njit(cache=True, nogil=True, inline="always")
def _best(w: np.ndarray, lo: int, wbest: int, wcount: int, sp_tick: np.ndarray, sp_sz: np.ndarray,
          row: int, sbest: int) -> tuple[bool, int, int]:
    """(exists, tick, size) of the best level of one side over window and spill."""
    if sbest >= 0:
        st = sp_tick[row, sbest]
        if wcount == 0 or (st > lo + wbest) == (row == 0):
            return True, st, sp_sz[row, sbest]
    if wcount > 0:
        return True, lo + wbest, w[wbest]
    return False, 0, 0


@njit(cache=True, nogil=True, inline="always")
def _window(w: np.ndarray, j: int, sz: int, remove: bool, best: int, count: int, is_bid: bool
            ) -> tuple[int, int]:
    """Set or delete window slot ``j``; returns the side's (best index, level count)."""
    old = w[j]
    if remove:
        if old != 0:
            w[j] = 0
            count -= 1
            if j == best:
                if count == 0:
                    best = -1 if is_bid else w.shape[0]
                else:
                    step = -1 if is_bid else 1
                    k = j + step
                    while w[k] == 0:
                        k += step
                    best = k
    else:
        if old == 0:
            count += 1
        w[j] = sz
        if (j > best) if is_bid else (j < best):
            best = j
    return best, count


@njit(cache=True, nogil=True)
def _top(w: np.ndarray, tick: int, lo: int, best: int, wcount: int, sp_tick: np.ndarray, sp_sz: np.ndarray,
         row: int, count: int, levels: int, out_px: np.ndarray, out_sz: np.ndarray) -> None:
    cand_t = np.empty(levels + count, np.int64)
    cand_s = np.empty(levels + count, np.int64)
    c = 0
    j = best
    step = -1 if row == 0 else 1
    # stop after `levels` window levels or after the last one the window holds
    while c < levels and c < wcount:
        if w[j] != 0:
            cand_t[c] = lo + j
            cand_s[c] = w[j]
            c += 1
        j += step
    for k in range(count):
        cand_t[c] = sp_tick[row, k]
        cand_s[c] = sp_sz[row, k]
        c += 1
    order = np.argsort(cand_t[:c])
    if row == 0:
        order = order[::-1]
    for q in range(min(levels, c)):
        out_px[q] = cand_t[order[q]] * tick
        out_sz[q] = cand_s[order[q]]


@njit(cache=True, nogil=True)
def l2_apply(side: np.ndarray, action: np.ndarray, price: np.ndarray, size: np.ndarray,
             flags: np.ndarray, start: int, snap_slot: np.ndarray, bid_w: np.ndarray, ask_w: np.ndarray,
             sp_tick: np.ndarray, sp_sz: np.ndarray, m: np.ndarray, bbo: np.ndarray, status: np.ndarray,
             snaps: np.ndarray, snap_status: np.ndarray) -> tuple[int, int]:
    """Apply events ``start..n-1`` in place; stop at the first one needing a host repair.

    Args:
        side, action, flags: uint8[n]; price, size: int64[n] (1e-9 units).
        start: first event to apply.
        snap_slot: int64[n], slot of ``snaps`` to fill after the event, -1 for none.
        bid_w, ask_w, sp_tick, sp_sz, m: the book (see :class:`kernels._l2state.L2State`).
        bbo: int64[4, n] out (bid px, bid size, ask px, ask size); status: uint8[n] out.
        snaps: int64[4, k, levels] out (pre-filled with UNDEF_PRICE / 0); snap_status: uint8[k].

    Returns:
        (index of the first event not applied, halt code); ``(n, DONE)`` when all are applied.
    """
    n = side.shape[0]
    width = bid_w.shape[0]
    levels = snaps.shape[2]
    half = width // 2
    # the book lives in locals inside the loop (registers); ``m`` is written back on exit
    tick, lo, synced = m[TICK], m[LO], m[SYNCED]
    bb, ba, nb, na = m[BB], m[BA], m[NB], m[NA]
    nsb, nsa, sbb, sba = m[NSB], m[NSA], m[SBB], m[SBA]
    inv = 1.0 / tick if tick > 0 else 0.0
    code = DONE
    stop = n
    for i in range(start, n):
        f = flags[i]
        if f & F_GAP:
            synced = 0
        if not f & F_SUPERSEDED:
            a = action[i]
            if a == L2_CLEAR:
                if nb > 0:
                    bid_w[:] = 0
                if na > 0:
                    ask_w[:] = 0
                nb, na, nsb, nsa = 0, 0, 0, 0
                bb, ba, sbb, sba = -1, width, -1, -1
                synced = 0
            elif a == L2_SET or a == L2_DELETE:
                if tick == 0:
                    code, stop = REGRID, i
                    break
                t, exact = _to_tick(price[i], tick, inv)
                if not exact:
                    code, stop = REGRID, i
                    break
                is_bid = side[i] == BID
                sz = size[i]
                remove = a == L2_DELETE or sz == 0
                if not remove and nb + na + nsb + nsa == 0:
                    # an empty book re-anchors for free: nothing to move
                    lo = t - half if t > -LO_LIMIT + half else -LO_LIMIT
                    lo = lo if lo < LO_LIMIT else LO_LIMIT
                if lo <= t < lo + width:
                    if is_bid:
                        bb, nb = _window(bid_w, t - lo, sz, remove, bb, nb, True)
                    else:
                        ba, na = _window(ask_w, t - lo, sz, remove, ba, na, False)
                else:
                    row = 0 if is_bid else 1
                    count = nsb if is_bid else nsa
                    if not remove:
                        if is_bid:
                            has, bt, _ = _best(bid_w, lo, bb, nb, sp_tick, sp_sz, 0, sbb)
                        else:
                            has, bt, _ = _best(ask_w, lo, ba, na, sp_tick, sp_sz, 1, sba)
                        if not has or (t > bt if is_bid else t < bt):
                            # the touch left the window: the host moves the window onto it
                            code, stop = RECENTER, i
                            break
                    code, count = _spill(sp_tick, sp_sz, row, t, sz, remove, count)
                    if code != DONE:
                        stop = i
                        break
                    # sorted ascending: best bid is the last entry, best ask the first
                    sb = -1 if count == 0 else (count - 1 if is_bid else 0)
                    if is_bid:
                        nsb, sbb = count, sb
                    else:
                        nsa, sba = count, sb
            if f & F_SNAPSHOT and f & F_LAST:
                synced = 1
        # written out rather than calling _best: numba's tuple-returning helper costs ~30 ns here
        hb, ha = nb > 0, na > 0
        bt, at = lo + bb, lo + ba
        bs = bid_w[bb] if hb else 0
        az = ask_w[ba] if ha else 0
        if sbb >= 0 and (not hb or sp_tick[0, sbb] > bt):
            hb, bt, bs = True, sp_tick[0, sbb], sp_sz[0, sbb]
        if sba >= 0 and (not ha or sp_tick[1, sba] < at):
            ha, at, az = True, sp_tick[1, sba], sp_sz[1, sba]
        bbo[0, i] = bt * tick if hb else UNDEF_PRICE
        bbo[1, i] = bs
        bbo[2, i] = at * tick if ha else UNDEF_PRICE
        bbo[3, i] = az
        st = RESYNC if synced == 0 else (CROSSED if hb and ha and bt > at else VALID)
        status[i] = st
        s = snap_slot[i]
        if s >= 0:
            _top(bid_w, tick, lo, bb, nb, sp_tick, sp_sz, 0, nsb, levels, snaps[0, s], snaps[1, s])
            _top(ask_w, tick, lo, ba, na, sp_tick, sp_sz, 1, nsa, levels, snaps[2, s], snaps[3, s])
            snap_status[s] = st
    m[TICK], m[LO], m[SYNCED] = tick, lo, synced
    m[BB], m[BA], m[NB], m[NA] = bb, ba, nb, na
    m[NSB], m[NSA], m[SBB], m[SBA] = nsb, nsa, sbb, sba
    return stop, code


@njit(cache=True, nogil=True)
def l2_step(side: int, action: int, price: int, size: int, flags: int, bid_w: np.ndarray, ask_w: np.ndarray,
            sp_tick: np.ndarray, sp_sz: np.ndarray, m: np.ndarray, out: np.ndarray) -> int:
    """One event with scalar inputs (fewer arrays to unbox per call than :func:`l2_apply`).

    ``out`` int64[5] receives bid px, bid size, ask px, ask size, status; returns the halt code.
    """
    u8 = np.empty(3, np.uint8)
    u8[0], u8[1], u8[2] = side, action, flags
    i64 = np.empty(2, np.int64)
    i64[0], i64[1] = price, size
    bbo = np.empty((4, 1), np.int64)
    status = np.empty(1, np.uint8)
    slot = np.full(1, -1, np.int64)
    _, code = l2_apply(u8[0:1], u8[1:2], i64[0:1], i64[1:2], u8[2:3], 0, slot, bid_w, ask_w, sp_tick, sp_sz,
                       m, bbo, status, np.empty((4, 0, 0), np.int64), np.empty(0, np.uint8))
    out[:4] = bbo[:, 0]
    out[4] = status[0]
    return code


def run(state: L2State, side: np.ndarray, action: np.ndarray, price: np.ndarray, size: np.ndarray,
        flags: np.ndarray, *, levels: int = 0, snapshot_rows: np.ndarray | None = None,
        ) -> tuple[L2State, dict[str, np.ndarray]]:
    """Apply one batch to ``state`` (mutated and returned, or replaced after a repair).

    Args:
        state: the book before the batch (:func:`kernels._l2state.new_state`).
        side, action, flags: uint8[n]; price, size: int64[n] (1e-9 units).
        levels: depth of the snapshots.
        snapshot_rows: int64[k] row indices (into this batch) after which to record the top levels.

    Returns:
        The state after the batch and the reference's output dict for the batch rows.
    """
    side, action, flags = (np.ascontiguousarray(x, np.uint8) for x in (side, action, flags))
    price, size = (np.ascontiguousarray(x, np.int64) for x in (price, size))
    bbo, status, slot, snaps, snap_status = alloc_outputs(len(side), snapshot_rows, levels)
    i = 0
    while True:
        i, code = l2_apply(side, action, price, size, flags, i, slot, state.bid_w, state.ask_w,
                           state.sp_tick, state.sp_sz, state.meta, bbo, status, snaps, snap_status)
        if code == DONE:
            break
        state = handle_halt(state, code, i, side, price, action, flags)
    return state, pack_outputs(bbo, status, snapshot_rows, slot, snaps, snap_status)


def l2_replay_numba(side: np.ndarray, action: np.ndarray, price: np.ndarray, size: np.ndarray,
                    flags: np.ndarray, *, levels: int = 0, snapshot_rows: np.ndarray | None = None,
                    tick_nanos: int = 0, window_ticks: int = DEFAULT_WINDOW_TICKS,
                    spill: int = DEFAULT_SPILL) -> dict[str, np.ndarray]:
    """Replay one instrument from an empty book; drop-in for ``l2_replay_reference``.

    Args:
        side, action, flags: uint8[n]; price, size: int64[n] (1e-9 units).
        levels, snapshot_rows: as in the reference.
        tick_nanos: the price grid if known (0: the gcd of the prices).
        window_ticks: dense window width (power of two); levels outside it are spilled, not lost.
        spill: initial spill capacity per side (grows on demand).

    Returns:
        ``bid_px, bid_sz, ask_px, ask_sz`` int64[n], ``status`` uint8[n], and with snapshot rows
        ``snap_*`` int64[k, levels] and ``snap_status`` uint8[k].
    """
    state = new_state(window_ticks=window_ticks, spill=spill, tick_nanos=tick_nanos)
    return run(state, side, action, price, size, flags, levels=levels, snapshot_rows=snapshot_rows)[1]


class Stepper:
    """One event per call, for latency paths (a live feed handler).

    Example:
        ``bid_px, bid_sz, ask_px, ask_sz, status = stepper.step(ord("B"), ord("U"), px, sz, 0)``
    """

    def __init__(self, state: L2State | None = None, *, tick_nanos: int = 0,
                 window_ticks: int = DEFAULT_WINDOW_TICKS) -> None:
        if state is None:
            state = new_state(window_ticks=window_ticks, tick_nanos=tick_nanos)
        self.state = state
        self._out = np.zeros(5, np.int64)

    def step(self, side: int, action: int, price_nanos: int, size_nanos: int, flags: int
             ) -> tuple[int, int, int, int, int]:
        """Apply one event; returns (bid_px, bid_sz, ask_px, ask_sz, status) after it."""
        st, out = self.state, self._out
        code = l2_step(side, action, price_nanos, size_nanos, flags, st.bid_w, st.ask_w, st.sp_tick,
                       st.sp_sz, st.meta, out)
        while code != DONE:
            one = (np.array([side], np.uint8), np.array([price_nanos], np.int64),
                   np.array([action], np.uint8), np.array([flags], np.uint8))
            st = self.state = handle_halt(st, code, 0, *one)
            code = l2_step(side, action, price_nanos, size_nanos, flags, st.bid_w, st.ask_w, st.sp_tick,
                           st.sp_sz, st.meta, out)
        return int(out[0]), int(out[1]), int(out[2]), int(out[3]), int(out[4])
