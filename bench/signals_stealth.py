"""Absorption and stealth-accumulation windows: events/s of each JAX kernel beside its NumPy
reference, same run (``kernels.signals_stealth``).

Synthetic inputs shaped like the detectors': a 100 ms book grid's dominant-level price, traded
volume and shown size per row (``held_volume``, 10 s window) and a 1 s mid with its event counts
(``range_windows``, 20 s window). JAX is timed in steady state after a warm-up call (compilation
paid there, once per padded bucket); the references are Python loops over rows, timed on a slice.
"""

from __future__ import annotations

import numpy as np

from bench import Report, median_time
from kernels.signals_stealth import held_volume, held_volume_ref, range_windows, range_windows_ref

GRID_ROWS, SAMPLES = 200_000, 50_000


def run(report: Report) -> None:
    """Time each kernel (JAX) and its reference (NumPy) and add them to ``report``."""
    rng = np.random.default_rng(0)
    report.section("stealth signal kernels: JAX (jit, padded buckets) vs NumPy reference")
    touch = 100_000 + np.cumsum(rng.random(GRID_ROWS) < 0.05)
    vol = rng.exponential(50, GRID_ROWS) * (rng.random(GRID_ROWS) < 0.2)
    shown = rng.exponential(100, GRID_ROWS)
    report.add("tapeflow held_volume (JAX)", GRID_ROWS,
               median_time(lambda: held_volume(touch, vol, shown, 100)), ours=True)
    few = GRID_ROWS // 20
    report.add("held_volume reference (NumPy)", few,
               median_time(lambda: held_volume_ref(touch[:few], vol[:few], shown[:few], 100)), ours=False)
    mid = np.cumsum(rng.normal(0, 2, SAMPLES))
    events = rng.poisson(100, SAMPLES).astype(np.float64)
    report.add("tapeflow range_windows (JAX)", SAMPLES,
               median_time(lambda: range_windows(mid, events, 20)), ours=True)
    small = SAMPLES // 10
    report.add("range_windows reference (NumPy)", small,
               median_time(lambda: range_windows_ref(mid[:small], events[:small], 20)), ours=False)
    report.note("events: grid rows (held_volume), 1 s samples (range_windows); references timed on a "
                "slice (1/20, 1/10)")
