"""Time bars from trades: OHLCV, VWAP, trade count and aggressor volumes, exact int64.

Pure arrays (numpy + numba). Prices and sizes are int64 fixed-point (1e-9 units); nothing
passes through a float. The VWAP numerator ``sum(price * size)`` does not fit 64 bits
(60_000 USD * 1 BTC is already 6e31 in nano-units squared), so it is accumulated in 128 bits
(two uint64 words); as long as a bar's volume fits int64 the 128-bit sum cannot overflow, since
each ``|price| < 2**63`` and ``sum(size) < 2**63``.

Bucketing rule: a trade belongs to bar ``floor((ts_ns - origin_ns) / interval_ns)``; bars are
keyed by (group, bucket) and only buckets with at least one trade produce a bar (as Databento's
OHLCV). Within a bar, open and close are the first and last trades in input order, so pass the
trades in arrival order.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from kernels.codes import ASK as SELL
from kernels.codes import BID as BUY

_MASK32 = np.uint64(0xFFFFFFFF)


class Bars(NamedTuple):
    """Bars, one row per non-empty (group, bucket), sorted by group then bucket. All int64[k]."""

    group: np.ndarray  # the caller's group id (e.g. index of venue/symbol)
    open_ns: np.ndarray  # bucket start, ns
    open_price_nanos: np.ndarray
    high_price_nanos: np.ndarray
    low_price_nanos: np.ndarray
    close_price_nanos: np.ndarray
    volume_nanos: np.ndarray
    vwap_price_nanos: (
        np.ndarray
    )  # round(sum(price*size) / volume), halves away from zero; first price if volume 0
    trade_count: np.ndarray
    buy_volume_nanos: np.ndarray
    sell_volume_nanos: np.ndarray
    order: np.ndarray  # int64[n]: input rows in bar order (rows of bar j are order[starts[j]:starts[j+1]])
    starts: np.ndarray  # int64[k]: offset of each bar's first row in ``order``


def bucket_start(ts_ns: np.ndarray, interval_ns: int, origin_ns: int = 0) -> np.ndarray:
    """Start of the bucket each timestamp falls in (floor division, correct for negatives)."""
    if interval_ns <= 0:
        raise ValueError(f"interval_ns must be positive, was {interval_ns}")
    ts = np.asarray(ts_ns, dtype=np.int64)
    return (ts - origin_ns) // interval_ns * interval_ns + origin_ns


def time_bars(
    group: np.ndarray,
    ts_ns: np.ndarray,
    price_nanos: np.ndarray,
    size_nanos: np.ndarray,
    aggressor_side: np.ndarray,
    interval_ns: int,
    *,
    origin_ns: int = 0,
) -> Bars:
    """Aggregate trades into time bars.

    Args:
        group: int64[n] group id per trade (bars never mix groups).
        ts_ns: int64[n] trade time, ns (the bucketing clock).
        price_nanos: int64[n] trade price, 1e-9 units.
        size_nanos: int64[n] traded quantity, 1e-9 units, >= 0.
        aggressor_side: uint8[n] ``B`` buyer-initiated, ``A`` seller-initiated, anything else unknown.
        interval_ns: bar length, ns.
        origin_ns: bucket alignment (0: aligned to the UNIX epoch, so 1d bars are UTC days).

    Raises:
        ValueError: a negative size, inputs of different lengths, or a bar volume beyond int64.
    """
    group = np.asarray(group, dtype=np.int64)
    price = np.asarray(price_nanos, dtype=np.int64)
    size = np.asarray(size_nanos, dtype=np.int64)
    side = np.asarray(aggressor_side, dtype=np.uint8)
    n = group.shape[0]
    if not (len(ts_ns) == price.shape[0] == size.shape[0] == side.shape[0] == n):
        raise ValueError("time_bars: inputs of different lengths")
    if n and size.min() < 0:
        raise ValueError(f"time_bars: negative size {int(size.min())} at row {int(size.argmin())}")
    bucket = bucket_start(ts_ns, interval_ns, origin_ns)
    order = np.lexsort((bucket, group)).astype(np.int64)  # stable: input order kept within a bar
    g, b = group[order], bucket[order]
    if n:
        new = np.empty(n, dtype=bool)
        new[0] = True
        new[1:] = (g[1:] != g[:-1]) | (b[1:] != b[:-1])
        starts = np.nonzero(new)[0].astype(np.int64)
    else:
        starts = np.zeros(0, np.int64)
    p, s, sd = price[order], size[order], side[order]
    if not n:
        empty = np.zeros(0, np.int64)
        return Bars(
            empty, empty, empty, empty, empty, empty, empty, empty, empty, empty, empty, order, starts
        )
    ends = np.append(starts[1:], n)
    volume = _checked_sum(s, starts)
    vwap = _vwap(p, s, starts, ends)
    return Bars(
        group=g[starts],
        open_ns=b[starts],
        open_price_nanos=p[starts],
        high_price_nanos=np.maximum.reduceat(p, starts),
        low_price_nanos=np.minimum.reduceat(p, starts),
        close_price_nanos=p[ends - 1],
        volume_nanos=volume,
        vwap_price_nanos=vwap,
        trade_count=ends - starts,
        buy_volume_nanos=_checked_sum(np.where(sd == BUY, s, 0), starts),
        sell_volume_nanos=_checked_sum(np.where(sd == SELL, s, 0), starts),
        order=order,
        starts=starts,
    )


def _checked_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    total = np.add.reduceat(values, starts)
    # Non-negative addends: a wrapped int64 sum shows as a total below the largest addend.
    if (total < np.maximum.reduceat(values, starts)).any():
        raise ValueError("time_bars: a bar's volume exceeds int64 nanos")
    return total


@numba.njit(cache=True)
def _mul_64x64(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    a_lo, a_hi = a & _MASK32, a >> np.uint64(32)
    b_lo, b_hi = b & _MASK32, b >> np.uint64(32)
    ll = a_lo * b_lo
    lh = a_lo * b_hi
    hl = a_hi * b_lo
    hh = a_hi * b_hi
    mid = (ll >> np.uint64(32)) + (lh & _MASK32) + (hl & _MASK32)
    lo = (ll & _MASK32) | ((mid & _MASK32) << np.uint64(32))
    hi = hh + (lh >> np.uint64(32)) + (hl >> np.uint64(32)) + (mid >> np.uint64(32))
    return hi, lo


@numba.njit(cache=True)
def _add_128(
    hi: np.uint64, lo: np.uint64, add_hi: np.uint64, add_lo: np.uint64
) -> tuple[np.uint64, np.uint64]:
    new_lo = lo + add_lo
    carry = np.uint64(1) if new_lo < lo else np.uint64(0)
    return hi + add_hi + carry, new_lo


@numba.njit(cache=True)
def _sub_128(
    hi: np.uint64, lo: np.uint64, sub_hi: np.uint64, sub_lo: np.uint64
) -> tuple[np.uint64, np.uint64]:
    borrow = np.uint64(1) if lo < sub_lo else np.uint64(0)
    return hi - sub_hi - borrow, lo - sub_lo


@numba.njit(cache=True)
def _divmod_128_64(hi: np.uint64, lo: np.uint64, d: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64]:
    # Restoring long division, one bit at a time; d < 2**63 so the remainder never overflows.
    q_hi = np.uint64(0)
    q_lo = np.uint64(0)
    r = np.uint64(0)
    for i in range(127, -1, -1):
        bit = (hi >> np.uint64(i - 64)) & np.uint64(1) if i >= 64 else (lo >> np.uint64(i)) & np.uint64(1)
        r = (r << np.uint64(1)) | bit
        if r >= d:
            r -= d
            if i >= 64:
                q_hi |= np.uint64(1) << np.uint64(i - 64)
            else:
                q_lo |= np.uint64(1) << np.uint64(i)
    return q_hi, q_lo, r


@numba.njit(cache=True)
def _vwap_kernel(
    price: np.ndarray, size: np.ndarray, starts: np.ndarray, ends: np.ndarray, out: np.ndarray
) -> None:
    for j in range(starts.shape[0]):
        pos_hi = np.uint64(0)
        pos_lo = np.uint64(0)
        neg_hi = np.uint64(0)
        neg_lo = np.uint64(0)
        vol = np.int64(0)
        for i in range(starts[j], ends[j]):
            p = price[i]
            s = np.uint64(size[i])
            vol += size[i]
            if p >= 0:
                h, lo = _mul_64x64(np.uint64(p), s)
                pos_hi, pos_lo = _add_128(pos_hi, pos_lo, h, lo)
            else:
                h, lo = _mul_64x64(np.uint64(-p), s)
                neg_hi, neg_lo = _add_128(neg_hi, neg_lo, h, lo)
        if vol == 0:
            out[j] = price[starts[j]]
            continue
        negative = neg_hi > pos_hi or (neg_hi == pos_hi and neg_lo > pos_lo)
        if negative:
            num_hi, num_lo = _sub_128(neg_hi, neg_lo, pos_hi, pos_lo)
        else:
            num_hi, num_lo = _sub_128(pos_hi, pos_lo, neg_hi, neg_lo)
        d = np.uint64(vol)
        q_hi, q_lo, r = _divmod_128_64(num_hi, num_lo, d)
        q = np.int64(q_lo)  # |vwap| <= max |price| < 2**63, so q_hi is 0
        if r >= d - r:  # remainder at least half: round the magnitude up (halves away from zero)
            q += 1
        out[j] = -q if negative else q


def rounded_vwap(notional: int, volume_nanos: int, open_price_nanos: int) -> int:
    """VWAP from an exact notional, rounded as :func:`time_bars` does (halves away from zero)."""
    if volume_nanos == 0:
        return open_price_nanos
    q, r = divmod(abs(notional), volume_nanos)
    q += 1 if 2 * r >= volume_nanos else 0
    return q if notional >= 0 else -q


def _vwap(price: np.ndarray, size: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    out = np.empty(starts.shape[0], dtype=np.int64)
    _vwap_kernel(price, size, starts, ends, out)
    return out


def time_bars_reference(
    group: np.ndarray,
    ts_ns: np.ndarray,
    price_nanos: np.ndarray,
    size_nanos: np.ndarray,
    aggressor_side: np.ndarray,
    interval_ns: int,
    *,
    origin_ns: int = 0,
) -> dict[tuple[int, int], tuple]:
    """Slow, obviously-correct bars with Python integers, for tests.

    Returns:
        (group, open_ns) -> (open, high, low, close, volume, vwap, count, buy_volume, sell_volume).
    """
    acc: dict[tuple[int, int], list] = {}
    for gid, ts, p, s, sd in zip(
        np.asarray(group).tolist(),
        np.asarray(ts_ns).tolist(),
        np.asarray(price_nanos).tolist(),
        np.asarray(size_nanos).tolist(),
        np.asarray(aggressor_side).tolist(),
        strict=True,
    ):
        key = (gid, (ts - origin_ns) // interval_ns * interval_ns + origin_ns)
        if key not in acc:
            acc[key] = [p, p, p, p, 0, 0, 0, 0, 0]
        a = acc[key]
        a[1], a[2], a[3] = max(a[1], p), min(a[2], p), p
        a[4] += s
        a[5] += p * s
        a[6] += 1
        a[7] += s if sd == BUY else 0
        a[8] += s if sd == SELL else 0
    out = {}
    for key, (o, h, lo, c, vol, notional, count, buy, sell) in acc.items():
        if vol:
            q, r = divmod(abs(notional), vol)
            q += 1 if 2 * r >= vol else 0
            vwap = q if notional >= 0 else -q
        else:
            vwap = o
        out[key] = (o, h, lo, c, vol, vwap, count, buy, sell)
    return out
