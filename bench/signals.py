"""Signal detector kernels: events/s of each JAX window kernel beside its NumPy reference, same run.

Synthetic inputs shaped like the detectors' (``kernels.signals_windows``): trade-print sizes for
the rolling block baseline (the whale detector), 1 s flow bins for the parent-order windows, and
a 100 ms snapshot grid of 11 levels for the withdrawal band depths. The JAX figure is the steady
state after a warm-up call (compilation paid there, once per padded bucket); the references are
plain NumPy loops, timed on a smaller slice where they are slow (events/s stays comparable).
"""

from __future__ import annotations

import numpy as np

from bench import Report, median_time
from kernels.signals_windows import (
    band_depths,
    band_depths_ref,
    block_quantiles,
    block_quantiles_ref,
    flow_windows,
    flow_windows_ref,
)

PRINTS, BINS, GRID_ROWS, LEVELS = 200_000, 100_000, 50_000, 11


def _book(rng: np.random.Generator, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    touch = 100_000 + np.cumsum(rng.integers(-1, 2, g))
    gaps = rng.integers(1, 3, (g, LEVELS)).cumsum(axis=1) - 1
    prices = (touch[:, None] - gaps).astype(np.int64)
    sizes = rng.integers(1, 500, (g, LEVELS)).astype(np.float64)
    return prices, sizes, prices[:, 0].copy()


def run(report: Report) -> None:
    """Time each kernel (JAX) and its reference (NumPy) and add them to ``report``."""
    rng = np.random.default_rng(0)
    report.section("signal kernels: JAX (jit, padded buckets) vs NumPy reference")
    sizes = np.exp(rng.normal(4.6, 0.6, PRINTS))
    report.add("tapeflow block_quantiles (JAX)", PRINTS,
               median_time(lambda: block_quantiles(sizes, 125, 4, (0.5, 0.999))), ours=True)
    report.add("block_quantiles reference (NumPy)", PRINTS,
               median_time(lambda: block_quantiles_ref(sizes, 125, 4, (0.5, 0.999))), ours=False)
    total = rng.exponential(100, BINS)
    signed = total * rng.choice([-1, 1], BINS)
    report.add("tapeflow flow_windows (JAX)", BINS,
               median_time(lambda: flow_windows(signed, total, 60, 600)), ours=True)
    small = BINS // 20
    report.add("flow_windows reference (NumPy)", small,
               median_time(lambda: flow_windows_ref(signed[:small], total[:small], 60, 600)), ours=False)
    prices, depth, touch = _book(rng, GRID_ROWS)
    report.add("tapeflow band_depths (JAX)", GRID_ROWS,
               median_time(lambda: band_depths(prices, depth, touch, 1, 1, 10, 2)), ours=True)
    few = GRID_ROWS // 25
    report.add("band_depths reference (NumPy)", few,
               median_time(lambda: band_depths_ref(prices[:few], depth[:few], touch[:few], 1, 1, 10, 2)),
               ours=False)
    report.note("events: prints, 1 s bins, grid rows; references timed on a slice (flow 1/20, band 1/25)")
