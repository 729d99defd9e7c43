"""Book and flow metric kernels: exact microprice, per-quote order-flow imbalance, log mid returns.

Pure arrays (numpy + numba). Prices and sizes are int64 fixed-point (1e-9 units); ``UNDEF`` (int64
max) marks an empty side. Products of a price and a size do not fit 64 bits (6e13 * 1e12), so the
microprice is computed in 128 bits and only the result, which lies between bid and ask, is int64.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.bars import _divmod_128_64, _mul_64x64
from kernels.codes import UNDEF_PRICE

UNDEF = np.int64(UNDEF_PRICE)


@numba.njit(cache=True)
def _microprice_one(b: np.int64, bs: np.int64, a: np.int64, az: np.int64) -> np.int64:
    total = bs + az
    if b == UNDEF or a == UNDEF or total <= 0 or bs < 0 or az < 0:
        return UNDEF
    # (b*az + a*bs) // total == b + floor((a - b) * bs / total): one 128-bit product, no overflow.
    spread = a - b
    mag = spread if spread >= 0 else -spread
    hi, lo = _mul_64x64(np.uint64(mag), np.uint64(bs))
    q_hi, q_lo, r = _divmod_128_64(hi, lo, np.uint64(total))
    q = np.int64(q_lo)
    if spread < 0:
        q = -q - 1 if r > 0 else -q
    return b + q


@numba.njit(cache=True)
def _microprice_kernel(bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray,
                       out: np.ndarray) -> None:
    for i in range(bid_px.shape[0]):
        out[i] = _microprice_one(bid_px[i], bid_sz[i], ask_px[i], ask_sz[i])


def microprice_nanos(bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray,
                     ask_sz: np.ndarray) -> np.ndarray:
    """Size-weighted mid ``floor((bid*ask_size + ask*bid_size) / (bid_size + ask_size))``, exact.

    Args:
        bid_px, bid_sz, ask_px, ask_sz: int64[n] best bid/ask price and size, 1e-9 units;
            ``UNDEF`` price for an empty side.

    Returns:
        int64[n]; ``UNDEF`` where a side is empty or both sizes are 0.
    """
    out = np.empty(len(bid_px), dtype=np.int64)
    _microprice_kernel(np.ascontiguousarray(bid_px, np.int64), np.ascontiguousarray(bid_sz, np.int64),
                       np.ascontiguousarray(ask_px, np.int64), np.ascontiguousarray(ask_sz, np.int64), out)
    return out


@numba.njit(cache=True)
def _quote_events_kernel(bp: np.ndarray, bs: np.ndarray, ap: np.ndarray, az: np.ndarray,
                         prev: np.ndarray, changed: np.ndarray, ofi: np.ndarray, sq: np.ndarray) -> None:
    pb, pbs, pa, pas, have = prev[0], prev[1], prev[2], prev[3], prev[4]
    for i in range(bp.shape[0]):
        b, s_b, a, s_a = bp[i], bs[i], ap[i], az[i]
        ofi[i] = 0
        sq[i] = np.nan
        if have == 0:
            changed[i] = True
        else:
            changed[i] = b != pb or s_b != pbs or a != pa or s_a != pas
            if changed[i]:
                e = np.int64(0)
                if b != UNDEF and pb != UNDEF:
                    if b >= pb:
                        e += s_b
                    if b <= pb:
                        e -= pbs
                if a != UNDEF and pa != UNDEF:
                    if a <= pa:
                        e -= s_a
                    if a >= pa:
                        e += pas
                ofi[i] = e
                if b != UNDEF and a != UNDEF and pb != UNDEF and pa != UNDEF:
                    mid = b + (a - b) // 2
                    pmid = pb + (pa - pb) // 2
                    if mid > 0 and pmid > 0:
                        r = np.log(np.float64(mid) / np.float64(pmid))
                        sq[i] = r * r
        pb, pbs, pa, pas, have = b, s_b, a, s_a, 1
    prev[0], prev[1], prev[2], prev[3], prev[4] = pb, pbs, pa, pas, have


def quote_events(bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray,
                 prev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-quote order-flow imbalance (Cont, Kukanov, Stoikov 2014) and squared log mid returns.

    For consecutive best quotes ``n-1 -> n`` (bid ``B``, ask ``A``, sizes ``q``)::

        e_n = 1{B_n >= B_n-1} qB_n - 1{B_n <= B_n-1} qB_n-1 - 1{A_n <= A_n-1} qA_n + 1{A_n >= A_n-1} qA_n-1

    A side that is empty in either quote adds nothing. A quote identical to the previous one is not
    a change: it adds neither a flow term nor a return, so feeds that repeat the BBO and feeds that
    only send changes give the same sums.

    Args:
        bid_px, bid_sz, ask_px, ask_sz: int64[n] quotes in arrival order (``UNDEF`` for no price).
        prev: int64[5] state carried between calls: last ``bid_px, bid_sz, ask_px, ask_sz`` and
            1 when there is one; updated in place (start from zeros).

    Returns:
        (changed bool[n], ofi_nanos int64[n] (0 where unchanged), squared log return of the mid
        ``(bid + ask) // 2`` float64[n] (NaN where there is no return: unchanged, a side empty, or
        the first quote)).
    """
    n = len(bid_px)
    changed = np.zeros(n, dtype=np.bool_)
    ofi = np.zeros(n, dtype=np.int64)
    sq = np.full(n, np.nan)
    _quote_events_kernel(np.ascontiguousarray(bid_px, np.int64), np.ascontiguousarray(bid_sz, np.int64),
                         np.ascontiguousarray(ask_px, np.int64), np.ascontiguousarray(ask_sz, np.int64),
                         prev, changed, ofi, sq)
    return changed, ofi, sq


def grid_end(arrival_ns: np.ndarray, interval_ns: int, start_ns: int | None = None) -> np.ndarray:
    """The first grid instant at or after each row's running-max arrival (the sample it belongs to).

    Args:
        arrival_ns: int64[n] capture times in arrival order.
        interval_ns: grid spacing (> 0).
        start_ns: the running max before these rows (None: none yet).
    """
    a = np.asarray(arrival_ns, dtype=np.int64)
    if start_ns is not None and len(a):
        a = np.maximum(a, start_ns)
    running = np.maximum.accumulate(a) if len(a) else a
    return -(-running // interval_ns) * interval_ns


def microprice_reference(bid_px: int, bid_sz: int, ask_px: int, ask_sz: int) -> int:
    """Python-integer microprice, for tests."""
    if bid_px == UNDEF or ask_px == UNDEF or bid_sz + ask_sz <= 0:
        return int(UNDEF)
    return (bid_px * ask_sz + ask_px * bid_sz) // (bid_sz + ask_sz)


@numba.njit(cache=True)
def _depth_kernel(values: np.ndarray, offsets: np.ndarray, levels: int, out: np.ndarray) -> None:
    for i in range(offsets.shape[0] - 1):
        total = np.int64(0)
        end = min(offsets[i + 1], offsets[i] + levels)
        for k in range(offsets[i], end):
            total += values[k]
        out[i] = total


def depth_nanos(values: np.ndarray, offsets: np.ndarray, levels: int) -> np.ndarray:
    """Summed size of the first ``levels`` entries of each list (a list array's flat values + offsets).

    Args:
        values: int64[m] sizes, best level first within each row.
        offsets: int64[n + 1] start of each row in ``values`` (row i is ``values[offsets[i]:offsets[i+1]]``).
        levels: how many leading entries count.
    """
    out = np.empty(len(offsets) - 1, dtype=np.int64)
    _depth_kernel(np.ascontiguousarray(values, np.int64), np.ascontiguousarray(offsets, np.int64),
                  int(levels), out)
    return out


@numba.njit(cache=True, error_model="numpy")
def _book_kernel(bpx: np.ndarray, boff: np.ndarray, bsz: np.ndarray, bsoff: np.ndarray, apx: np.ndarray,
                 aoff: np.ndarray, asz: np.ndarray, asoff: np.ndarray, levels: int, ints: np.ndarray,
                 floats: np.ndarray) -> None:
    for i in range(boff.shape[0] - 1):
        b0, b1, a0, a1 = boff[i], boff[i + 1], aoff[i], aoff[i + 1]
        s0, t0 = bsoff[i], asoff[i]
        bid_depth = np.int64(0)
        for k in range(s0, min(bsoff[i + 1], s0 + levels)):
            bid_depth += bsz[k]
        ask_depth = np.int64(0)
        for k in range(t0, min(asoff[i + 1], t0 + levels)):
            ask_depth += asz[k]
        mid = spread = micro = UNDEF
        bps = np.nan
        if b1 > b0 and a1 > a0:
            bid, ask = bpx[b0], apx[a0]
            spread = ask - bid
            mid = bid + spread // 2
            bps = np.float64(spread) / np.float64(mid) * 1e4
            micro = _microprice_one(bid, bsz[s0], ask, asz[t0])
        total = np.float64(bid_depth + ask_depth)
        ints[i, 0], ints[i, 1], ints[i, 2], ints[i, 3], ints[i, 4] = mid, spread, micro, bid_depth, ask_depth
        floats[i, 0] = bps
        floats[i, 1] = np.float64(bid_depth - ask_depth) / total if total > 0 else np.nan


def book_metrics(bid_px: tuple[np.ndarray, np.ndarray], bid_sz: tuple[np.ndarray, np.ndarray],
                 ask_px: tuple[np.ndarray, np.ndarray], ask_sz: tuple[np.ndarray, np.ndarray],
                 levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-snapshot book metrics in one pass (mid, spread, microprice, depths, spread bps, imbalance).

    Each argument is a list column as (flat values, offsets): row i is
    ``values[offsets[i]:offsets[i+1]]``, best level first, and prices and sizes of a side have
    rows of the same lengths. A side is empty when its list is; the definitions are those of
    ``tapeflow.derived.metrics`` (mid ``bid + (ask - bid) // 2``, exact microprice, depth over the
    first ``levels`` sizes, ``imbalance = (bid_depth - ask_depth) / (bid_depth + ask_depth)``).

    Returns:
        (int64[n, 5]: mid, spread, microprice (``UNDEF`` without two sides), bid depth, ask depth;
        float64[n, 2]: spread in bps (NaN without two sides), imbalance (NaN when both depths are 0)).
    """
    n = len(bid_px[1]) - 1
    ints = np.empty((n, 5), np.int64)
    floats = np.empty((n, 2), np.float64)
    flat = [np.ascontiguousarray(a, np.int64) for side in (bid_px, bid_sz, ask_px, ask_sz) for a in side]
    _book_kernel(*flat, int(levels), ints, floats)
    return ints, floats


@numba.njit(cache=True)
def _runs_of_instants(recv: np.ndarray, start_max: np.int64, has_start: bool, step: np.int64,
                      instant: np.ndarray, end: np.ndarray) -> tuple[int, np.int64]:
    # grid instant of each row's running-max arrival; rows of one instant are consecutive
    top = start_max
    have = has_start
    r = 0
    for i in range(recv.shape[0]):
        if not have or recv[i] > top:
            top = recv[i]
            have = True
        g = -((-top) // step) * step
        if r == 0 or instant[r - 1] != g:
            instant[r] = g
            r += 1
        end[r - 1] = i + 1
    return r, top


@numba.njit(cache=True)
def _fold_quotes_kernel(bp: np.ndarray, bs: np.ndarray, ap: np.ndarray, az: np.ndarray, recv: np.ndarray,
                        bad: np.ndarray, prev: np.ndarray, start_max: np.int64, has_start: bool,
                        step: np.int64, ints: np.ndarray, flags: np.ndarray,
                        sq_vals: np.ndarray) -> tuple[int, np.int64, int]:
    n = bp.shape[0]
    changed = np.zeros(n, np.bool_)
    ofi = np.zeros(n, np.int64)
    sq = np.empty(n, np.float64)
    _quote_events_kernel(bp, bs, ap, az, prev, changed, ofi, sq)
    instant = ints[:, 0]
    end = ints[:, 1]
    r, top = _runs_of_instants(recv, start_max, has_start, step, instant, end)
    m = 0
    lo = 0
    for k in range(r):
        total = np.int64(0)
        any_bad = False
        for i in range(lo, end[k]):
            total += ofi[i]
            any_bad = any_bad or bad[i]
            if not np.isnan(sq[i]):
                sq_vals[m] = sq[i]
                m += 1
        ints[k, 2] = total
        ints[k, 3] = m  # end of the run's returns in sq_vals
        flags[k, 0] = any_bad
        flags[k, 1] = bad[end[k] - 1]
        lo = end[k]
    return r, top, m


def fold_quotes(bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray,
                recv_ns: np.ndarray, bad: np.ndarray, prev: np.ndarray, start_ns: int | None,
                interval_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Quotes reduced per grid instant in one call (the live metrics' per-batch work on quotes).

    Rows belong to :func:`grid_end`'s instant; rows of one instant are consecutive (running-max
    arrival never goes back), so each instant is a run.

    Args:
        bid_px, bid_sz, ask_px, ask_sz: int64[n] quotes in arrival order (n >= 1).
        recv_ns: int64[n] capture times; bad: bool[n] quotes flagged F_MAYBE_BAD_BOOK.
        prev: int64[5] quote state of :func:`quote_events`, updated in place.
        start_ns: running-max arrival before these rows (None: none yet).
        interval_ns: grid spacing.

    Returns:
        (int64[r, 4] per run: instant, end row (exclusive), summed OFI, end of its returns in the
        next array; bool[r, 2] per run: any quote bad, last quote bad; float64[m] the squared log
        mid returns that exist, run after run, in arrival order; the new running-max arrival).
    """
    n = len(bid_px)
    ints = np.empty((n, 4), np.int64)
    flags = np.empty((n, 2), np.bool_)
    sq_vals = np.empty(n, np.float64)
    r, top, m = _fold_quotes_kernel(
        _i64(bid_px), _i64(bid_sz), _i64(ask_px), _i64(ask_sz), _i64(recv_ns),
        np.ascontiguousarray(bad, np.bool_), prev, np.int64(0 if start_ns is None else start_ns),
        start_ns is not None, np.int64(interval_ns), ints, flags, sq_vals)
    return ints[:r], flags[:r], sq_vals[:m], int(top)


@numba.njit(cache=True)
def _fold_trades_kernel(recv: np.ndarray, side: np.ndarray, size: np.ndarray, start_max: np.int64,
                        has_start: bool, step: np.int64, ints: np.ndarray) -> tuple[int, np.int64]:
    instant = ints[:, 0]
    end = ints[:, 1]
    r, top = _runs_of_instants(recv, start_max, has_start, step, instant, end)
    lo = 0
    for k in range(r):
        total = np.int64(0)
        for i in range(lo, end[k]):
            if side[i] == 66:  # "B": buyer-initiated
                total += size[i]
            elif side[i] == 65:  # "A": seller-initiated
                total -= size[i]
        ints[k, 2] = total
        lo = end[k]
    return r, top


def fold_trades(recv_ns: np.ndarray, aggressor_side: np.ndarray, size_nanos: np.ndarray, start_ns: int | None,
                interval_ns: int) -> tuple[np.ndarray, int]:
    """Signed trade volume (buyer- minus seller-initiated) summed per grid instant, as :func:`fold_quotes`.

    Returns:
        (int64[r, 3] per run: instant, end row (exclusive), signed volume; the new running-max arrival).
    """
    ints = np.empty((len(recv_ns), 3), np.int64)
    r, top = _fold_trades_kernel(_i64(recv_ns), np.ascontiguousarray(aggressor_side, np.uint8),
                                 _i64(size_nanos), np.int64(0 if start_ns is None else start_ns),
                                 start_ns is not None, np.int64(interval_ns), ints)
    return ints[:r], int(top)


def _i64(a: np.ndarray) -> np.ndarray:
    return a if a.dtype == np.int64 and a.flags.c_contiguous else np.ascontiguousarray(a, np.int64)
