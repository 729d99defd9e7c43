"""Partial time bars of one micro-batch on many intervals in one call (the live bars' inner loop).

Pure arrays (numpy + numba). The live bar state merges these partials into the bars it holds, so a
partial keeps what a merge needs: open/close with the input positions of its first and last trade
(open and close are the first and last trade in input order), and the exact notional
``sum(price * size)`` as two unsigned 128-bit words (positive and negative prices apart), since a
rounded VWAP cannot be merged.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from kernels.bars import _add_128, _mul_64x64
from kernels.codes import ASK as SELL
from kernels.codes import BID as BUY


class Partials(NamedTuple):
    """One row per (interval, bucket) holding trades of the batch; int64[k] unless noted."""

    interval: np.ndarray  # index into the ``steps_ns`` passed in
    start_ns: np.ndarray  # bucket start
    open_price_nanos: np.ndarray
    high_price_nanos: np.ndarray
    low_price_nanos: np.ndarray
    close_price_nanos: np.ndarray
    volume_nanos: np.ndarray
    trade_count: np.ndarray
    buy_volume_nanos: np.ndarray
    sell_volume_nanos: np.ndarray
    recv_max_ns: np.ndarray
    gap: np.ndarray  # 1 when a trade of the bucket was flagged
    notional: np.ndarray  # uint64[k, 4]: positive (hi, lo), negative (hi, lo) price * size sums


@numba.njit(cache=True)
def _products(price: np.ndarray, size: np.ndarray, prod: np.ndarray) -> None:
    # |price| * size once per trade (128 bits); column 2 says the price was negative
    for r in range(price.shape[0]):
        p = price[r]
        h, lo = _mul_64x64(np.uint64(p if p >= 0 else -p), np.uint64(size[r]))
        prod[r, 0], prod[r, 1], prod[r, 2] = h, lo, np.uint64(1 if p < 0 else 0)


@numba.njit(cache=True)
def _from_trades(ts: np.ndarray, price: np.ndarray, size: np.ndarray, side: np.ndarray, flagged: np.ndarray,
                 recv: np.ndarray, prod: np.ndarray, j: int, step: np.int64, ordered: bool, ints: np.ndarray,
                 words: np.ndarray, k: int) -> int:
    n = ts.shape[0]
    bucket = (ts // step) * step
    if ordered:
        order = np.arange(n)  # in time order already (the common case): no sort
    else:
        order = np.argsort(bucket, kind="mergesort")  # stable: input order kept within a bucket
    i = 0
    while i < n:
        first = order[i]
        b = bucket[first]
        hi_p = price[first]
        lo_p = price[first]
        vol = np.int64(0)
        buy = np.int64(0)
        sell = np.int64(0)
        rmax = recv[first]
        gap = np.int64(0)
        ph = np.uint64(0)
        pl = np.uint64(0)
        nh = np.uint64(0)
        nl = np.uint64(0)
        start = i
        while i < n and bucket[order[i]] == b:
            r = order[i]
            p = price[r]
            s = size[r]
            hi_p = max(hi_p, p)
            lo_p = min(lo_p, p)
            vol += s
            if side[r] == BUY:
                buy += s
            elif side[r] == SELL:
                sell += s
            rmax = max(rmax, recv[r])
            if flagged[r]:
                gap = 1
            if prod[r, 2] == 0:
                ph, pl = _add_128(ph, pl, prod[r, 0], prod[r, 1])
            else:
                nh, nl = _add_128(nh, nl, prod[r, 0], prod[r, 1])
            i += 1
        last = order[i - 1]
        ints[k, 0] = j
        ints[k, 1] = b
        ints[k, 2] = price[first]
        ints[k, 3] = hi_p
        ints[k, 4] = lo_p
        ints[k, 5] = price[last]
        ints[k, 6] = vol
        ints[k, 7] = i - start
        ints[k, 8] = buy
        ints[k, 9] = sell
        ints[k, 10] = rmax
        ints[k, 11] = gap
        words[k, 0] = ph
        words[k, 1] = pl
        words[k, 2] = nh
        words[k, 3] = nl
        k += 1
    return k


@numba.njit(cache=True)
def _from_partials(lo_row: int, hi_row: int, j: int, step: np.int64, ints: np.ndarray, words: np.ndarray,
                   k: int) -> int:
    # Rows lo_row:hi_row hold a finer interval's partials in bucket (= input) order, and that
    # interval divides ``step``, so each of them lies inside one bucket of ``step``: merge runs.
    i = lo_row
    while i < hi_row:
        b = (ints[i, 1] // step) * step
        ints[k, 0] = j
        ints[k, 1] = b
        ints[k, 2] = ints[i, 2]
        hi_p, lo_p = ints[i, 3], ints[i, 4]
        close = ints[i, 5]
        vol, cnt, buy, sell = ints[i, 6], ints[i, 7], ints[i, 8], ints[i, 9]
        rmax, gap = ints[i, 10], ints[i, 11]
        ph, pl, nh, nl = words[i, 0], words[i, 1], words[i, 2], words[i, 3]
        i += 1
        while i < hi_row and (ints[i, 1] // step) * step == b:
            hi_p = max(hi_p, ints[i, 3])
            lo_p = min(lo_p, ints[i, 4])
            close = ints[i, 5]
            vol += ints[i, 6]
            cnt += ints[i, 7]
            buy += ints[i, 8]
            sell += ints[i, 9]
            rmax = max(rmax, ints[i, 10])
            gap = max(gap, ints[i, 11])
            ph, pl = _add_128(ph, pl, words[i, 0], words[i, 1])
            nh, nl = _add_128(nh, nl, words[i, 2], words[i, 3])
            i += 1
        ints[k, 3], ints[k, 4], ints[k, 5], ints[k, 6], ints[k, 7] = hi_p, lo_p, close, vol, cnt
        ints[k, 8], ints[k, 9], ints[k, 10], ints[k, 11] = buy, sell, rmax, gap
        words[k, 0], words[k, 1], words[k, 2], words[k, 3] = ph, pl, nh, nl
        k += 1
    return k


@numba.njit(cache=True)
def _partials_kernel(ts: np.ndarray, price: np.ndarray, size: np.ndarray, side: np.ndarray,
                     flagged: np.ndarray, recv: np.ndarray, steps: np.ndarray, ints: np.ndarray,
                     words: np.ndarray) -> int:
    n = ts.shape[0]
    m = steps.shape[0]
    prod = np.empty((n, 3), np.uint64)
    _products(price, size, prod)
    ordered = True
    for r in range(1, n):
        if ts[r] < ts[r - 1]:
            ordered = False
            break
    lo_rows = np.zeros(m, np.int64)
    hi_rows = np.zeros(m, np.int64)
    k = 0
    for j in range(m):
        step = steps[j]
        # In time order, a coarser interval is the merge of the partials of the largest finer one
        # that divides it (15 standard intervals: one pass over the trades, then over few rows).
        src = -1
        if ordered:
            for i in range(j):
                if step % steps[i] == 0 and (src < 0 or steps[i] > steps[src]):
                    src = i
        lo_rows[j] = k
        if src >= 0:
            k = _from_partials(lo_rows[src], hi_rows[src], j, step, ints, words, k)
        else:
            bucket_ordered = ordered
            if not ordered and n > 1:
                bucket = (ts // step) * step
                bucket_ordered = bool(np.all(bucket[1:] >= bucket[:-1]))
            k = _from_trades(ts, price, size, side, flagged, recv, prod, j, step, bucket_ordered, ints,
                             words, k)
        hi_rows[j] = k
    return k


def partial_bars(ts_ns: np.ndarray, price_nanos: np.ndarray, size_nanos: np.ndarray,
                 aggressor_side: np.ndarray, flagged: np.ndarray, recv_ns: np.ndarray,
                 steps_ns: np.ndarray) -> Partials:
    """Aggregate one batch of one instrument's trades into buckets of every interval.

    Args:
        ts_ns: int64[n] bucketing clock (venue time), ns.
        price_nanos: int64[n]; size_nanos: int64[n] (>= 0); aggressor_side: uint8[n] ``B``/``A``/other.
        flagged: bool[n] trades that carried a gap flag.
        recv_ns: int64[n] capture times (the partial keeps their max).
        steps_ns: int64[m] interval lengths, ns (buckets aligned to the UNIX epoch).

    Returns:
        :class:`Partials`, grouped by interval then bucket start.
    """
    c, words = partial_rows(ts_ns, price_nanos, size_nanos, aggressor_side, flagged, recv_ns, steps_ns)
    return Partials(*(c[:, i] for i in range(12)), words)


def partial_rows(ts_ns: np.ndarray, price_nanos: np.ndarray, size_nanos: np.ndarray,
                 aggressor_side: np.ndarray, flagged: np.ndarray, recv_ns: np.ndarray,
                 steps_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`partial_bars` as two matrices, the shape a caller that walks the rows wants.

    Returns:
        (int64[k, 12]: the :class:`Partials` fields ``interval`` .. ``gap`` as columns, in that
        order; uint64[k, 4]: the notional words).
    """
    n, m = len(ts_ns), len(steps_ns)
    ints = np.empty((n * m, 12), np.int64)
    words = np.empty((n * m, 4), np.uint64)
    k = _partials_kernel(
        _i64(ts_ns), _i64(price_nanos), _i64(size_nanos), np.ascontiguousarray(aggressor_side, np.uint8),
        np.ascontiguousarray(flagged, np.bool_), _i64(recv_ns), _i64(steps_ns), ints, words,
    )
    return ints[:k], words[:k]


def _i64(a: np.ndarray) -> np.ndarray:
    # the arrays usually are contiguous int64 already; ascontiguousarray costs a call either way
    return a if a.dtype == np.int64 and a.flags.c_contiguous else np.ascontiguousarray(a, np.int64)


def rounded_vwaps(notional: np.ndarray, volume_nanos: np.ndarray, open_price_nanos: np.ndarray) -> np.ndarray:
    """:func:`kernels.bars.rounded_vwap` of many bars at once (halves away from zero; the open price
    when the volume is 0).

    The notionals exceed 64 bits, so they are Python integers in an object array: the division
    and the rounding run in numpy's loops, exactly, with no Python statement per bar.

    Args:
        notional: object[n], the exact signed ``sum(price * size)`` of each bar (1e-18 units).
        volume_nanos: int64[n] volumes (>= 0); open_price_nanos: int64[n].

    Returns:
        int64[n] VWAPs.
    """
    if not len(notional):
        return np.zeros(0, np.int64)
    total = np.asarray(notional, dtype=object)
    volume = np.where(volume_nanos == 0, 1, volume_nanos).astype(object)
    magnitude = np.where(volume_nanos == 0, 0, np.abs(total))  # no trade volume: the open price
    q = magnitude // volume
    r = magnitude - q * volume
    q = (q + (2 * r >= volume)).astype(np.int64)
    return np.where(volume_nanos == 0, open_price_nanos, np.where(total < 0, -q, q))


def notional_ints(words: np.ndarray) -> list[int]:
    """The exact signed notional of each partial, as Python integers (1e-18 units)."""
    # object arrays: numpy's loops do the 128-bit arithmetic on Python ints (half the time of a
    # comprehension over the rows)
    w = words.astype(object)
    return (((w[:, 0] << 64) | w[:, 1]) - ((w[:, 2] << 64) | w[:, 3])).tolist()


@numba.njit(cache=True)
def _admit_kernel(ts: np.ndarray, size: np.ndarray, max_ts: np.int64, lateness: np.int64, horizon: np.int64,
                  watermark: np.ndarray, status: np.ndarray) -> tuple[np.int64, int, int, int]:
    top = max_ts
    late = too_late = negative = 0
    for i in range(ts.shape[0]):
        top = max(top, ts[i])
        wm = top - lateness
        watermark[i] = wm
        if ts[i] < wm - horizon:
            status[i] = 1
            too_late += 1
        elif size[i] < 0:
            status[i] = 2
            negative += 1
        else:
            status[i] = 0
            if ts[i] < wm:
                late += 1
    return top, late, too_late, negative


def admit(ts_ns: np.ndarray, size_nanos: np.ndarray, max_ts_ns: int, lateness_ns: int,
          horizon_ns: int) -> tuple[np.ndarray, np.ndarray, int, int, int, int]:
    """The live bars' accept/late/too-late decision per trade, in input order (see ``LiveBars``).

    Args:
        ts_ns: int64[n] venue times; size_nanos: int64[n].
        max_ts_ns: the instrument's newest venue time before these trades.
        lateness_ns: allowed lateness; horizon_ns: restate horizon.

    Returns:
        (int64[n] watermark after each trade; uint8[n] status: 0 accepted, 1 too late, 2 negative
        size; new max venue time; counts of late accepted, too late and negative trades).
    """
    n = len(ts_ns)
    watermark = np.empty(n, np.int64)
    status = np.empty(n, np.uint8)
    top, late, too_late, negative = _admit_kernel(_i64(ts_ns), _i64(size_nanos), np.int64(max_ts_ns),
                                                  np.int64(lateness_ns), np.int64(horizon_ns), watermark,
                                                  status)
    return watermark, status, int(top), late, too_late, negative
