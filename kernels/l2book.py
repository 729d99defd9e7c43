"""L2 price-level book kernel in JAX: ``lax.scan`` over fixed-size padded batches.

Same semantics and outputs as :func:`kernels.reference.l2_replay_reference`, same host state as
the numba kernel (:mod:`kernels._l2state`): a dense tick window plus a sorted spill list per side.

XLA:CPU runs a scan body as a chain of thunks (one per fusion); measured on jax 0.10 a
``lax.cond`` costs 1.7-3.6 us per event even when not taken, and reading the window in the same
iteration before updating it makes XLA copy the whole window. So the scan body has no branches:
it applies the window update in place, keeps the best index and size of each side in a small
carried vector, and after a best-level delete searches the next best in a ``RESCAN_TICKS`` slice
of the updated window. Work that is rare or sequential outside the window runs on the host:

* ticks are computed on the host (one vectorised division per batch, no division per event);
* levels outside the window (4% of the Binance capture) are applied on the host, in order, by a
  numba pass before the scan; it hands the scan the best spilled level of each side per event;
* the scan halts, with the book as it was before the event, on a price off the tick grid, a
  touch leaving the window, a full spill, clearing a non-empty book, an insert into an empty book
  (the window re-anchors), a snapshot row, or a next best farther than the search; the host
  applies that one event with the numba kernel and resumes the scan after it.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import numpy as np
from jax import lax
from numba import njit

from kernels import _l2state as s2
from kernels import codes
from kernels._l2state import DONE, L2State
from kernels.l2book_numba import _spill, l2_apply

# 64-bit prices and sizes are the point: enable x64 here, at the kernel boundary, before any array
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402  (after x64 is on)

BUCKETS = (1, 16, 256, 1024, 4096, 10240, 16384, 65536)
RESCAN_TICKS = 256  # next-best search span after a best delete (every event pays it; farther halts)
_NO_HALT = 2**62  # meta[_HALT] while every row so far applied
NEED_HOST, RESCAN_FAR = 5, 6  # halt codes beyond the _l2state ones
# per-event control bits, packed on the host
_CTL_ASK, _CTL_UPD, _CTL_REMOVE, _CTL_CLEAR, _CTL_GAP, _CTL_SNAP_LAST, _CTL_OFFGRID = 1, 2, 4, 8, 16, 32, 64
_SP_INSERT, _SP_TOP, _SP_NONEMPTY, _HOST = 128, 256, 512, 1024
# the device scalars live in one int64 vector (per-side fields take two slots: bids, asks)
_LO, _TICK, _WB, _WBS, _SYNCED, _HALT, _CODE = 0, 1, 2, 4, 6, 7, 8
N_META = 9


class Book(NamedTuple):
    """One instrument's book: the window on the device, the spill on the host (numba layout)."""

    w: jax.Array        # int64[2, W + 1] size at tick lo + j (row 0 bids); slot W absorbs no-op writes
    meta: jax.Array     # int64[N_META]: lo, tick, window best index (-1 / W none), its size, synced,
    #                     halt row, halt code
    sp_tick: np.ndarray  # int64[2, S] spilled ticks, ascending; the first nsp[row] in use
    sp_sz: np.ndarray    # int64[2, S]
    nsp: np.ndarray      # int64[2]


def _get(m: jax.Array, field: int, row: jax.Array) -> jax.Array:
    # a select on two static reads fuses; a dynamic gather would not
    return jnp.where(row == 0, m[field], m[field + 1])


def _vec(*xs: jax.Array) -> jax.Array:
    """int64[len(xs)] from scalars as one elementwise select (fuses into one kernel; a stack does not)."""
    idx = np.arange(len(xs))
    out = jnp.asarray(xs[-1], jnp.int64)
    for k in range(len(xs) - 2, -1, -1):
        out = jnp.where(idx == k, jnp.asarray(xs[k], jnp.int64), out)
    return out


def _better(a: jax.Array, b: jax.Array, row: jax.Array | int) -> jax.Array:
    return jnp.where(row == 0, a > b, a < b)


def _rescan(w: jax.Array, row: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Next window best after deleting the best slot ``j``: (index, size, exact)."""
    width = w.shape[1] - 1
    span = min(RESCAN_TICKS, width)
    start = jnp.clip(jnp.where(row == 0, j - span, j + 1), 0, width + 1 - span)
    seg = lax.dynamic_slice(w, (row, start), (1, span))[0]
    idx = start + jnp.arange(span)
    cand = (seg != 0) & jnp.where(row == 0, idx < j, (idx > j) & (idx < width))
    # one reduction for both sides (asks negated): each reduction is a separate kernel per event
    r = jnp.max(jnp.where(cand, jnp.where(row == 0, idx, -idx), -(2**62)))
    found = r != -(2**62)
    k = jnp.where(found, jnp.where(row == 0, r, -r), jnp.where(row == 0, -1, width))
    # no level found is still exact when the span reached the window edge: the side is empty there
    edge = jnp.where(row == 0, start == 0, start + span >= width)
    size = seg[jnp.clip(k - start, 0, span - 1)]
    return k, jnp.where(found, size, 0), found | edge


def _step(c: jax.Array, w: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    ctl, t, size, i = x[0], x[1], x[2], x[3]
    m = c
    width = w.shape[1] - 1
    live = m[_HALT] == _NO_HALT
    row = ctl & _CTL_ASK
    remove = (ctl & _CTL_REMOVE) != 0
    upd = live & ((ctl & _CTL_UPD) != 0)
    offgrid = upd & ((ctl & _CTL_OFFGRID) != 0)
    go = upd & ~offgrid
    lo = m[_LO]
    in_win = (t >= lo) & (t < lo + width)
    j = jnp.where(go & in_win, t - lo, width)
    cur, curs = _get(m, _WB, row), _get(m, _WBS, row)
    nonempty = (m[_WB] >= 0) | (m[_WB + 1] < width) | ((ctl & _SP_NONEMPTY) != 0)
    has_w = jnp.where(row == 0, cur >= 0, cur < width)
    # an insert outside the window that becomes the side's best: the window must move onto it
    recenter = (go & ~in_win & ((ctl & (_SP_INSERT | _SP_TOP)) == (_SP_INSERT | _SP_TOP))
                & (~has_w | _better(t, lo + cur, row)))
    is_clear = live & ((ctl & _CTL_CLEAR) != 0)
    code = jnp.where(offgrid, s2.REGRID, jnp.where(is_clear & nonempty, s2.CLEAR_BOOK, jnp.where(
        recenter, s2.RECENTER, jnp.where((go & ~remove & ~nonempty) | (live & ((ctl & _HOST) != 0)),
                                         NEED_HOST, s2.DONE))))
    wr = live & (code == s2.DONE) & go & in_win
    w = lax.dynamic_update_slice(w, jnp.where(remove, 0, size).reshape(1, 1), (row, jnp.where(wr, j, width)))
    on_best = wr & (j == cur)
    set_best = wr & ~remove & (on_best | _better(j, cur, row))
    rescan = on_best & remove
    # searched in the updated window: a read before the write would make XLA copy the window
    k, ks, exact = _rescan(w, row, j)
    code = jnp.where(rescan & ~exact, RESCAN_FAR, code)
    keep = live & (code == s2.DONE)
    new_wb = jnp.where(keep, jnp.where(rescan, k, jnp.where(set_best, j, cur)), cur)
    new_wbs = jnp.where(keep, jnp.where(rescan, ks, jnp.where(set_best, size, curs)), curs)
    synced = m[_SYNCED] != 0
    synced = jnp.where(keep & ((ctl & _CTL_GAP) != 0), False, synced)
    synced = jnp.where(keep & is_clear, False, synced)
    synced = jnp.where(keep & ((ctl & _CTL_SNAP_LAST) != 0), True, synced)
    stop = live & ~keep
    wb0, wb1 = jnp.where(row == 0, new_wb, m[_WB]), jnp.where(row == 0, m[_WB + 1], new_wb)
    wbs0, wbs1 = jnp.where(row == 0, new_wbs, m[_WBS]), jnp.where(row == 0, m[_WBS + 1], new_wbs)
    meta = _vec(lo, m[_TICK], wb0, wb1, wbs0, wbs1, synced, jnp.where(stop, i, m[_HALT]),
                jnp.where(stop, code, m[_CODE]))
    # each side's best over the window and the spill best the host pass computed for this row
    sbt_b, sbs_b, sbt_a, sbs_a = x[4], x[5], x[6], x[7]
    hwb, hwa = wb0 >= 0, wb1 < width
    use_sb = (sbs_b != 0) & (~hwb | (sbt_b > lo + wb0))
    use_sa = (sbs_a != 0) & (~hwa | (sbt_a < lo + wb1))
    hb, ha = hwb | (sbs_b != 0), hwa | (sbs_a != 0)
    bt, at = jnp.where(use_sb, sbt_b, lo + wb0), jnp.where(use_sa, sbt_a, lo + wb1)
    bs = jnp.where(use_sb, sbs_b, jnp.where(hwb, wbs0, 0))
    az = jnp.where(use_sa, sbs_a, jnp.where(hwa, wbs1, 0))
    st = jnp.where(~synced, codes.RESYNC, jnp.where(hb & ha & (bt > at), codes.CROSSED, codes.VALID))
    tk = m[_TICK]
    undef = codes.UNDEF_PRICE
    out = _vec(jnp.where(hb, bt * tk, undef), bs, jnp.where(ha, at * tk, undef), az, st)
    return meta, w, out


@partial(jax.jit, donate_argnums=(0, 1))
def _scan(meta: jax.Array, w: jax.Array, xs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    def body(carry: tuple, x: jax.Array) -> tuple:
        meta, w, out = _step(carry[0], carry[1], x)
        return (meta, w), out

    (meta, w), ys = lax.scan(body, (meta, w), xs)
    return meta, w, ys


@njit(cache=True, nogil=True)
def _spill_pass(ctl: np.ndarray, t: np.ndarray, size: np.ndarray, lo: int, width: int, sp_tick: np.ndarray,
                sp_sz: np.ndarray, nsp: np.ndarray, xs: np.ndarray) -> int:
    """Apply the batch's out-of-window events to the spill in order; fill ``xs[:, 4:8]`` with
    each row's best spilled bid/ask (tick, size; size 0 = none) and OR spill bits into ``xs[:, 0]``.

    Returns the number of rows passed; a full spill stops it at that row (flagged for the host).
    """
    cnt = nsp.copy()
    for q in range(len(ctl)):
        c = ctl[q]
        extra = _SP_NONEMPTY if cnt[0] + cnt[1] > 0 else 0
        if (c & _CTL_UPD) and not (c & _CTL_OFFGRID) and not (lo <= t[q] < lo + width):
            row = c & _CTL_ASK
            remove = (c & _CTL_REMOVE) != 0
            count = cnt[row]
            if count == 0:
                top = True
            elif row == 0:
                top = t[q] > sp_tick[0, count - 1]
            else:
                top = t[q] < sp_tick[1, 0]
            code, new = _spill(sp_tick, sp_sz, row, t[q], size[q], remove, count)
            if code != DONE:
                xs[q, 0] = c | extra | _HOST
                nsp[:] = cnt
                return q
            if new > count:
                extra |= _SP_INSERT | (_SP_TOP if top else 0)
            cnt[row] = new
        xs[q, 0] = c | extra
        if cnt[0] > 0:
            xs[q, 4], xs[q, 5] = sp_tick[0, cnt[0] - 1], sp_sz[0, cnt[0] - 1]
        if cnt[1] > 0:
            xs[q, 6], xs[q, 7] = sp_tick[1, 0], sp_sz[1, 0]
    nsp[:] = cnt
    return len(ctl)


def to_book(state: L2State) -> Book:
    """Device copy of a host state."""
    m = state.meta
    width = state.window_ticks
    w = np.zeros((2, width + 1), np.int64)
    w[0, :-1], w[1, :-1] = state.bid_w, state.ask_w
    meta = np.zeros(N_META, np.int64)
    meta[_LO], meta[_TICK], meta[_SYNCED], meta[_HALT] = m[s2.LO], m[s2.TICK], m[s2.SYNCED] != 0, _NO_HALT
    for row in (0, 1):
        wi = int(m[s2.BB + row])
        meta[_WB + row] = wi
        meta[_WBS + row] = w[row, wi] if 0 <= wi < width else 0
    return Book(jax.device_put(w), jax.device_put(meta), state.sp_tick.copy(), state.sp_sz.copy(),
                np.array([m[s2.NSB], m[s2.NSA]], np.int64))


def from_book(book: Book) -> L2State:
    """Host copy of a device book."""
    w, hm = (np.asarray(a) for a in jax.device_get((book.w, book.meta)))
    meta = np.zeros(s2.N_META, np.int64)
    meta[s2.TICK], meta[s2.LO], meta[s2.SYNCED] = hm[_TICK], hm[_LO], int(hm[_SYNCED] != 0)
    bid_w, ask_w = w[0, :-1].copy(), w[1, :-1].copy()
    meta[[s2.BB, s2.BA]] = hm[_WB:_WB + 2]
    meta[s2.NB], meta[s2.NA] = np.count_nonzero(bid_w), np.count_nonzero(ask_w)
    nsp = book.nsp
    meta[[s2.NSB, s2.NSA]] = nsp
    meta[s2.SBB] = int(nsp[0]) - 1 if nsp[0] else -1
    meta[s2.SBA] = 0 if nsp[1] else -1
    return L2State(bid_w, ask_w, book.sp_tick.copy(), book.sp_sz.copy(), meta)


def bucket_size(n: int) -> int:
    """The padded length a batch of ``n`` events runs at (n <= BUCKETS[-1])."""
    return next(b for b in BUCKETS if b >= n)


def _segment(left: int) -> int:
    """Rows to run next: a whole bucket when one fits at least half of them (padded rows cost as
    much as real ones, and a halt leaves odd remainders), else everything left, padded."""
    fit = max(b for b in BUCKETS if b <= min(left, BUCKETS[-1]))
    return fit if 2 * fit >= left else min(left, BUCKETS[-1])


def _control(side: np.ndarray, action: np.ndarray, price: np.ndarray, size: np.ndarray, flags: np.ndarray,
             tick: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-event control bits and ticks (vectorised on the host, so the scan does no division)."""
    applied = (flags & codes.F_SUPERSEDED) == 0
    upd = applied & ((action == codes.L2_SET) | (action == codes.L2_DELETE))
    ctl = np.where(side == codes.BID, 0, _CTL_ASK) | np.where(upd, _CTL_UPD, 0)
    ctl |= np.where((action == codes.L2_DELETE) | (size == 0), _CTL_REMOVE, 0)
    ctl |= np.where(applied & (action == codes.L2_CLEAR), _CTL_CLEAR, 0)
    ctl |= np.where((flags & codes.F_GAP) != 0, _CTL_GAP, 0)
    last = codes.F_SNAPSHOT | codes.F_LAST
    ctl |= np.where(applied & ((flags & last) == last), _CTL_SNAP_LAST, 0)
    if tick == 0:
        return (ctl | np.where(upd, _CTL_OFFGRID, 0)).astype(np.int64), np.zeros(len(price), np.int64)
    t, rem = np.divmod(price, tick)
    return (ctl | np.where(upd & (rem != 0), _CTL_OFFGRID, 0)).astype(np.int64), t


def run(state: L2State | Book, side: np.ndarray, action: np.ndarray, price: np.ndarray, size: np.ndarray,
        flags: np.ndarray, *, levels: int = 0, snapshot_rows: np.ndarray | None = None,
        ) -> tuple[Book, dict[str, np.ndarray]]:
    """Apply one batch to a book with the JAX kernel.

    Args:
        state: the book before the batch, host (:func:`kernels._l2state.new_state`) or ``Book``.
        side, action, flags: uint8[n]; price, size: int64[n] (1e-9 units).
        levels: depth of the snapshots.
        snapshot_rows: int64[k] row indices (into this batch) after which to record the top levels.

    Returns:
        The book after the batch (``from_book`` gives the host state) and the reference's output
        dict for the batch rows.
    """
    side, action, flags = (np.asarray(x, np.uint8) for x in (side, action, flags))
    price, size = (np.asarray(x, np.int64) for x in (price, size))
    n = len(side)
    bbo, status, slot, snaps, snap_status = s2.alloc_outputs(n, snapshot_rows, levels)
    book = to_book(state) if isinstance(state, L2State) else state
    hm = np.asarray(jax.device_get(book.meta))
    tick, lo, width = int(hm[_TICK]), int(hm[_LO]), book.w.shape[1] - 1
    ctl, t = _control(side, action, price, size, flags, tick)
    # snapshot rows go to the host (numba fills the snapshot): a branch in the scan costs every row
    ctl[slot >= 0] |= _HOST
    pos = 0
    while pos < n:
        m = _segment(n - pos)
        size_b = bucket_size(m)
        seg = slice(pos, pos + m)
        xs = np.zeros((size_b, 8), np.int64)
        xs[:m, 1], xs[:m, 2] = t[seg], size[seg]
        xs[:, 3] = np.arange(pos, pos + size_b)
        sp_tick, sp_sz, nsp = book.sp_tick.copy(), book.sp_sz.copy(), book.nsp.copy()
        _spill_pass(ctl[seg], t[seg], size[seg], lo, width, sp_tick, sp_sz, nsp, xs)
        meta, w, ys = _scan(book.meta, book.w, xs)
        ys, hm = jax.device_get((ys, meta))
        halt = int(hm[_HALT])
        done = m if halt == _NO_HALT else halt - pos
        bbo[:, pos:pos + done] = ys[:done, :4].T
        status[pos:pos + done] = ys[:done, 4]
        if halt == _NO_HALT:
            book = Book(w, meta, sp_tick, sp_sz, nsp)
            pos += done
            continue
        # the spill as it was before the halted row: replay the host pass up to it
        sp_tick, sp_sz, nsp = book.sp_tick.copy(), book.sp_sz.copy(), book.nsp.copy()
        _spill_pass(ctl[pos:halt], t[pos:halt], size[pos:halt], lo, width, sp_tick, sp_sz, nsp,
                    np.zeros((done, 8), np.int64))
        host = from_book(Book(w, meta, sp_tick, sp_sz, nsp))
        if int(hm[_CODE]) == RESCAN_FAR:
            # the scan wrote the delete of the best slot before finding its next best: undo it
            row = int(ctl[halt] & _CTL_ASK)
            (host.bid_w if row == 0 else host.ask_w)[int(hm[_WB + row])] = hm[_WBS + row]
            host.meta[s2.NB + row] += 1
        host = _host_event(host, halt, side, action, price, size, flags, slot, bbo, status, snaps,
                           snap_status)
        pos = halt + 1
        book = to_book(host)
        lo = int(host.meta[s2.LO])
        if int(host.meta[s2.TICK]) != tick:
            tick = int(host.meta[s2.TICK])
            ctl, t = _control(side, action, price, size, flags, tick)
            ctl[slot >= 0] |= _HOST
    return book, s2.pack_outputs(bbo, status, snapshot_rows, slot, snaps, snap_status)


def _host_event(state: L2State, i: int, side: np.ndarray, action: np.ndarray, price: np.ndarray,
                size: np.ndarray, flags: np.ndarray, slot: np.ndarray, bbo: np.ndarray, status: np.ndarray,
                snaps: np.ndarray, snap_status: np.ndarray) -> L2State:
    """Apply event ``i`` on the host with the numba kernel (repairing the state as it asks)."""
    end = i + 1
    while True:
        stop, code = l2_apply(side[:end], action[:end], price[:end], size[:end], flags[:end], i, slot[:end],
                              state.bid_w, state.ask_w, state.sp_tick, state.sp_sz, state.meta, bbo, status,
                              snaps, snap_status)
        if code == s2.DONE:
            return state
        state = s2.handle_halt(state, code, stop, side, price, action, flags)


def l2_replay_jax(side: np.ndarray, action: np.ndarray, price: np.ndarray, size: np.ndarray,
                  flags: np.ndarray, *, levels: int = 0, snapshot_rows: np.ndarray | None = None,
                  tick_nanos: int = 0, window_ticks: int = s2.DEFAULT_WINDOW_TICKS,
                  spill: int = s2.DEFAULT_SPILL) -> dict[str, np.ndarray]:
    """Replay one instrument from an empty book; drop-in for ``l2_replay_reference``.

    Args:
        side, action, flags: uint8[n]; price, size: int64[n] (1e-9 units).
        levels, snapshot_rows: as in the reference.
        tick_nanos: the price grid if known (0: the gcd of the prices).
        window_ticks: dense window width (power of two); levels outside it are spilled, not lost.
        spill: initial spill capacity per side (grows on demand, one recompile per doubling).

    Returns:
        ``bid_px, bid_sz, ask_px, ask_sz`` int64[n], ``status`` uint8[n], and with snapshot rows
        ``snap_*`` int64[k, levels] and ``snap_status`` uint8[k].
    """
    state = s2.new_state(window_ticks=window_ticks, spill=spill, tick_nanos=tick_nanos)
    return run(state, side, action, price, size, flags, levels=levels, snapshot_rows=snapshot_rows)[1]
