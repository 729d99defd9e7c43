"""L2 spoofing kernels: events/s of each JAX kernel beside its NumPy reference, same run.

Synthetic inputs shaped like the detector's (``kernels.signals_spoofing_l2``): one side of a
100 ms grid of 11 levels (``level_jumps``: each row's growth per level), and candidate layers
followed over 30 rows (``first_fall``: 3 s of look-ahead). The JAX figure is the steady state
after a warm-up call; the references are plain NumPy loops, timed on a slice.
"""

from __future__ import annotations

import numpy as np

from bench import Report, median_time
from kernels.signals_spoofing_l2 import first_fall, first_fall_ref, level_jumps, level_jumps_ref

GRID_ROWS, LEVELS, CANDIDATES, WINDOW = 50_000, 11, 5_000, 30


def run(report: Report) -> None:
    """Time each kernel (JAX) and its reference (NumPy) and add them to ``report``."""
    rng = np.random.default_rng(0)
    report.section("L2 spoofing kernels: JAX (jit, padded buckets) vs NumPy reference")
    mid = 100_000 + np.cumsum(rng.integers(-1, 2, GRID_ROWS))
    prices = (mid[:, None] - (rng.integers(1, 3, (GRID_ROWS, LEVELS)).cumsum(axis=1) - 1)).astype(np.int64)
    sizes = rng.integers(1, 500, (GRID_ROWS, LEVELS)) * 1.0
    report.add("tapeflow level_jumps (JAX)", GRID_ROWS, median_time(lambda: level_jumps(prices, sizes)),
               ours=True)
    rows = GRID_ROWS // 25
    report.add("level_jumps reference (NumPy)", rows,
               median_time(lambda: level_jumps_ref(prices[:rows], sizes[:rows])), ours=False)
    cand = np.sort(rng.integers(0, GRID_ROWS - 1, CANDIDATES))
    level = rng.integers(0, LEVELS, CANDIDATES)
    price, at_most = prices[cand, level], sizes[cand, level] / 2
    report.add("tapeflow first_fall (JAX)", CANDIDATES,
               median_time(lambda: first_fall(prices, sizes, cand, price, at_most, WINDOW)), ours=True)
    few = CANDIDATES // 10
    report.add("first_fall reference (NumPy)", few,
               median_time(lambda: first_fall_ref(prices, sizes, cand[:few], price[:few], at_most[:few],
                                                  WINDOW)),
               ours=False)
    report.note("events: grid rows (level_jumps), candidate layers (first_fall); references timed on a "
                "slice (rows 1/25, candidates 1/10)")
