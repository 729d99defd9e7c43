"""The live metrics' per-sample fold: pending per-instant sums handed to the grid samples in one call.

Pure arrays (numpy + numba). ``LiveMetrics`` keeps, per instrument, what its quotes and trades left
per grid instant (instants in rising order, an instant possibly repeated across batches) and calls
:func:`sample_flows` when snapshots become final, so no Python runs per sample. The realized
volatility sums squared returns with :func:`fsum`, CPython's ``math.fsum`` (Shewchuk's exact sum
with its half-even correction), so the value does not depend on how the quotes were batched.
"""

from __future__ import annotations

import numba
import numpy as np

_PARTIALS = 80  # non-overlapping partials of float64 numbers: at most ~40 (2,098 exponent bits / 53)


@numba.njit(cache=True)
def _fsum(values: np.ndarray, lo_row: int, hi_row: int, p: np.ndarray) -> float:
    # CPython's math_fsum (Modules/mathmodule.c) for values[lo_row:hi_row]
    n = 0
    special = 0.0
    for k in range(lo_row, hi_row):
        x = values[k]
        i = 0
        for j in range(n):
            y = p[j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                p[i] = lo
                i += 1
            x = hi
        n = i
        if x != 0.0:
            if not np.isfinite(x):
                # an inf or nan summand, or an overflow of finite ones (CPython raises; inf here)
                special += values[k] if not np.isfinite(values[k]) else x
                n = 0
            else:
                p[n] = x
                n += 1
    if special != 0.0 or np.isnan(special):
        return special
    hi = 0.0
    lo = 0.0
    if n > 0:
        n -= 1
        hi = p[n]
        while n > 0:
            x = hi
            n -= 1
            y = p[n]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if n > 0 and ((lo < 0.0 and p[n - 1] < 0.0) or (lo > 0.0 and p[n - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    return hi


def fsum(values: np.ndarray) -> float:
    """``math.fsum`` of a float64 array, in compiled code (bit for bit the same result)."""
    return float(_fsum(np.ascontiguousarray(values, np.float64), 0, len(values), np.empty(_PARTIALS)))


@numba.njit(cache=True)
def _sample_kernel(samples: np.ndarray, ofi_k: np.ndarray, ofi_v: np.ndarray, sq_k: np.ndarray,
                   sq_v: np.ndarray, bad_k: np.ndarray, bad_any: np.ndarray, bad_last: np.ndarray,
                   flow_k: np.ndarray, flow_v: np.ndarray, state: np.ndarray, ofi: np.ndarray,
                   cvd: np.ndarray, rv: np.ndarray, bad: np.ndarray, used: np.ndarray) -> None:
    p = np.empty(_PARTIALS, np.float64)
    quote_bad, has_day, cvd_day, cvd_nanos = state[0] != 0, state[1] != 0, state[2], state[3]
    jo = jq = jb = jf = 0
    for i in range(samples.shape[0]):
        g = samples[i]
        total = np.int64(0)
        while jo < ofi_k.shape[0] and ofi_k[jo] <= g:
            total += ofi_v[jo]
            jo += 1
        ofi[i] = total
        q0 = jq
        while jq < sq_k.shape[0] and sq_k[jq] <= g:
            jq += 1
        rv[i] = np.sqrt(_fsum(sq_v, q0, jq, p)) if jq > q0 else np.nan
        flagged = quote_bad
        while jb < bad_k.shape[0] and bad_k[jb] <= g:
            flagged = flagged or bad_any[jb]
            quote_bad = bad_last[jb]
            jb += 1
        bad[i] = flagged
        while jf < flow_k.shape[0] and flow_k[jf] <= g:
            day = (flow_k[jf] - 1) // 86_400_000_000_000
            if not has_day or day != cvd_day:
                has_day, cvd_day, cvd_nanos = True, day, np.int64(0)
            cvd_nanos += flow_v[jf]
            jf += 1
        cvd[i] = cvd_nanos if has_day and cvd_day == (g - 1) // 86_400_000_000_000 else 0
    state[0], state[1], state[2], state[3] = quote_bad, has_day, cvd_day, cvd_nanos
    used[0], used[1], used[2], used[3] = jo, jq, jb, jf


def sample_flows(samples: np.ndarray, ofi: tuple[np.ndarray, np.ndarray], sq: tuple[np.ndarray, np.ndarray],
                 bad: tuple[np.ndarray, np.ndarray, np.ndarray], flow: tuple[np.ndarray, np.ndarray],
                 state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hand every pending instant up to each sample to it, as :func:`tapeflow.derived.metrics.metrics`.

    A sample ``g`` takes the instants in ``(previous sample, g]``; the streams' instants rise
    (an instant may repeat: its parts add up).

    Args:
        samples: int64[n] grid instants, rising.
        ofi: (int64 instants, int64 summed OFI) per quote run.
        sq: (int64 instants, float64 squared log mid returns) per return.
        bad: (int64 instants, bool any quote of the run bad, bool its last quote bad).
        flow: (int64 instants, int64 signed trade volume) per trade run.
        state: int64[4] carried from sample to sample, updated in place: the quote in effect was
            bad, a CVD day is set, that day (``(instant - 1) // day``), its running CVD.

    Returns:
        (int64[n] OFI, int64[n] CVD, float64[n] realized volatility (NaN: no return),
        bool[n] a bad quote in effect or in the sample, int64[4] how many items of ofi, sq, bad,
        flow the samples took).
    """
    n = len(samples)
    out_ofi = np.empty(n, np.int64)
    out_cvd = np.empty(n, np.int64)
    out_rv = np.empty(n, np.float64)
    out_bad = np.empty(n, np.bool_)
    used = np.zeros(4, np.int64)
    _sample_kernel(samples, *ofi, *sq, *bad, *flow, state, out_ofi, out_cvd, out_rv, out_bad, used)
    return out_ofi, out_cvd, out_rv, out_bad, used
