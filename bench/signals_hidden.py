"""Hidden-liquidity kernels: events/s of each JAX kernel beside its NumPy reference, same run.

Synthetic inputs shaped like the detectors' (``kernels.signals_hidden``): prints judged against a
100 ms grid of 11 levels (hidden executions), and the per-level refill accounting of the same grid
(the L2 iceberg, one row of look-ahead). The JAX figure is the steady state after a warm-up call;
the references are plain NumPy loops, timed on a slice (events/s stays comparable).
"""

from __future__ import annotations

import numpy as np

from bench import Report, median_time
from kernels.signals_hidden import hidden_flags, hidden_flags_ref, level_refills, level_refills_ref

PRINTS, GRID_ROWS, LEVELS = 200_000, 50_000, 11


def _side(rng: np.random.Generator, touch: np.ndarray, sign: int) -> tuple[np.ndarray, np.ndarray]:
    gaps = rng.integers(1, 3, (len(touch), LEVELS)).cumsum(axis=1) - 1
    return (touch[:, None] - sign * gaps).astype(np.int64), rng.integers(1, 500, (len(touch), LEVELS)) * 1.0


def run(report: Report) -> None:
    """Time each kernel (JAX) and its reference (NumPy) and add them to ``report``."""
    rng = np.random.default_rng(0)
    report.section("hidden-liquidity kernels: JAX (jit, padded buckets) vs NumPy reference")
    mid = 100_000 + np.cumsum(rng.integers(-1, 2, GRID_ROWS))
    bid_p, bid_s = _side(rng, mid, 1)
    ask_p, ask_s = _side(rng, mid + rng.integers(1, 4, GRID_ROWS), -1)
    before = np.sort(rng.integers(0, GRID_ROWS - 1, PRINTS))
    after = before + 1
    price = mid[before] + rng.integers(-2, 4, PRINTS)
    report.add("tapeflow hidden_flags (JAX)", PRINTS,
               median_time(lambda: hidden_flags(price, before, after, bid_p, bid_s, ask_p, ask_s)), ours=True)
    few = PRINTS // 20
    report.add("hidden_flags reference (NumPy)", few,
               median_time(lambda: hidden_flags_ref(price[:few], before[:few], after[:few], bid_p, bid_s,
                                                    ask_p, ask_s)), ours=False)
    traded = rng.integers(0, 3, (GRID_ROWS, LEVELS)) * 100.0 * (rng.uniform(size=(GRID_ROWS, LEVELS)) < 0.05)
    report.add("tapeflow level_refills (JAX)", GRID_ROWS,
               median_time(lambda: level_refills(bid_p, bid_s, traded, 1)), ours=True)
    rows = GRID_ROWS // 25
    report.add("level_refills reference (NumPy)", rows,
               median_time(lambda: level_refills_ref(bid_p[:rows], bid_s[:rows], traded[:rows], 1)),
               ours=False)
    report.note("events: prints, grid rows; references timed on a slice (prints 1/20, rows 1/25)")
