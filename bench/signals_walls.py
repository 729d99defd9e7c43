"""Wall and spike kernels: grid rows/s of each JAX kernel beside its NumPy reference, same run.

Synthetic inputs shaped like the detectors' (``kernels.signals_walls``): a 100 ms snapshot grid of
11 levels per side with large orders that stand for a while (``wall_runs``), and per-row largest
aggressor prints (``window_max``, the spike detector's sweep over its 300 ms window). The JAX
figure is the steady state after a warm-up call (compilation paid there, once per padded bucket);
the references are plain NumPy loops over rows, timed on a slice.
"""

from __future__ import annotations

import numpy as np

from bench import Report, median_time
from kernels.signals_walls import wall_runs, wall_runs_ref, window_max, window_max_ref

GRID_ROWS, LEVELS = 50_000, 11


def run(report: Report) -> None:
    """Time each kernel (JAX) and its reference (NumPy) and add them to ``report``."""
    rng = np.random.default_rng(0)
    report.section("wall and spike kernels: JAX (jit, padded buckets) vs NumPy reference")
    touch = 100_000 + np.cumsum(rng.integers(-1, 2, GRID_ROWS))
    prices = (touch[:, None] - np.arange(LEVELS)[None, :]).astype(np.int64)
    sizes = rng.integers(1, 500, (GRID_ROWS, LEVELS)).astype(np.float64)
    for start in rng.integers(0, GRID_ROWS - 600, GRID_ROWS // 1000):
        sizes[start:start + 600, int(rng.integers(1, 4))] += 10_000
    threshold = np.full(GRID_ROWS, 5_000.0)
    report.add("tapeflow wall_runs (JAX)", GRID_ROWS,
               median_time(lambda: wall_runs(prices, sizes, threshold)), ours=True)
    few = GRID_ROWS // 10
    report.add("wall_runs reference (NumPy)", few,
               median_time(lambda: wall_runs_ref(prices[:few], sizes[:few], threshold[:few])), ours=False)
    prints = rng.exponential(100, GRID_ROWS) * (rng.uniform(size=GRID_ROWS) < 0.3)
    report.add("tapeflow window_max (JAX)", GRID_ROWS, median_time(lambda: window_max(prints, 3)), ours=True)
    report.add("window_max reference (NumPy)", few, median_time(lambda: window_max_ref(prints[:few], 3)),
               ours=False)
    report.note("events: grid rows of one book side; references timed on a tenth of the rows")
