"""Activity bars: which bar each trade falls in when bars close on a trade count, volume or notional.

Pure arrays (numpy + numba). A bar closes at the first trade that brings its running total to the
threshold or beyond; that trade stays whole in the bar it closes (no split), and the next trade
opens a new bar from zero. Totals are kept in 128 bits, so a notional (price * size, 1e-18 units)
cannot overflow.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.bars import _add_128, _mul_64x64

TICK, VOLUME, NOTIONAL = 0, 1, 2
_SCALE = np.uint64(1_000_000_000)


@numba.njit(cache=True)
def _bar_ids_kernel(group: np.ndarray, price: np.ndarray, size: np.ndarray, mode: int, threshold: np.int64,
                    n_groups: int, out: np.ndarray) -> None:
    acc_hi = np.zeros(n_groups, np.uint64)
    acc_lo = np.zeros(n_groups, np.uint64)
    bar = np.zeros(n_groups, np.int64)
    if mode == NOTIONAL:
        t_hi, t_lo = _mul_64x64(np.uint64(threshold), _SCALE)
    else:
        t_hi, t_lo = np.uint64(0), np.uint64(threshold)
    for i in range(group.shape[0]):
        g = group[i]
        out[i] = bar[g]
        if mode == TICK:
            w_hi, w_lo = np.uint64(0), np.uint64(1)
        elif mode == VOLUME:
            w_hi, w_lo = np.uint64(0), np.uint64(size[i])
        else:
            p = price[i]
            w_hi, w_lo = _mul_64x64(np.uint64(p if p >= 0 else -p), np.uint64(size[i]))
        h, lo = _add_128(acc_hi[g], acc_lo[g], w_hi, w_lo)
        if h > t_hi or (h == t_hi and lo >= t_lo):
            bar[g] += 1
            acc_hi[g] = np.uint64(0)
            acc_lo[g] = np.uint64(0)
        else:
            acc_hi[g] = h
            acc_lo[g] = lo


def threshold_bar_ids(group: np.ndarray, price_nanos: np.ndarray, size_nanos: np.ndarray, mode: int,
                      threshold: int) -> np.ndarray:
    """Number of the bar each trade belongs to, counted per group from 0, in input order.

    Args:
        group: int64[n] group id per trade (0 .. groups-1; bars never mix groups).
        price_nanos: int64[n] trade price, 1e-9 units (its magnitude counts for notional bars).
        size_nanos: int64[n] traded quantity, 1e-9 units, >= 0.
        mode: ``TICK`` (each trade weighs 1), ``VOLUME`` (size) or ``NOTIONAL`` (|price| * size).
        threshold: trades, size nanos, or notional nanos (price currency, 1e-9 units) per bar, > 0.

    Raises:
        ValueError: a non-positive threshold, an unknown mode, a negative size, or unequal lengths.
    """
    if threshold <= 0 or threshold >= 2**63:
        raise ValueError(f"threshold_bar_ids: threshold must be in 1..2**63-1, was {threshold}")
    if mode not in (TICK, VOLUME, NOTIONAL):
        raise ValueError(f"threshold_bar_ids: unknown mode {mode}")
    group = np.ascontiguousarray(group, np.int64)
    price = np.ascontiguousarray(price_nanos, np.int64)
    size = np.ascontiguousarray(size_nanos, np.int64)
    if not (group.shape == price.shape == size.shape):
        raise ValueError("threshold_bar_ids: inputs of different lengths")
    if len(size) and size.min() < 0:
        raise ValueError(f"threshold_bar_ids: negative size {int(size.min())} at row {int(size.argmin())}")
    out = np.empty(len(group), np.int64)
    n_groups = int(group.max()) + 1 if len(group) else 0
    _bar_ids_kernel(group, price, size, mode, np.int64(threshold), n_groups, out)
    return out


def threshold_bar_ids_reference(group: list[int], price_nanos: list[int], size_nanos: list[int], mode: int,
                                threshold: int) -> list[int]:
    """Plain-Python bar numbers with unbounded integers, for tests."""
    acc: dict[int, int] = {}
    bar: dict[int, int] = {}
    limit = threshold * 1_000_000_000 if mode == NOTIONAL else threshold
    out = []
    for g, p, s in zip(group, price_nanos, size_nanos, strict=True):
        out.append(bar.get(g, 0))
        w = 1 if mode == TICK else s if mode == VOLUME else abs(p) * s
        acc[g] = acc.get(g, 0) + w
        if acc[g] >= limit:
            bar[g] = bar.get(g, 0) + 1
            acc[g] = 0
    return out
