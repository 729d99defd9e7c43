"""Signal detector kernels: events/s of each JAX window kernel beside its NumPy reference, same run.

Synthetic inputs shaped like the detectors' (``kernels.signals_windows``): trade-print sizes for
the rolling block baseline (the whale detector), 1 s flow bins for the parent-order windows, and
a 100 ms snapshot grid of 11 levels for the withdrawal band depths. The JAX figure is the steady
state after a warm-up call (compilation paid there, once per padded bucket); the references are
plain NumPy loops, timed on a smaller slice where they are slow (events/s stays comparable).

The live signals stage (``tapeflow.signals.stream.LiveSignals``) is timed in the market flow:
12 simulated equity minutes cut in 5,000-event micro-batches, the flow with and without the stage
(median CPU of 3 after a warm-up); the issue's goal is a throughput with signals of at least 70 %
of the throughput without. ``bench.signals_latency`` then replays the same minutes at 100,000
events/s for the event-to-signal p99 (goal <= 5 ms).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

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
STAGE_SEED, STAGE_SPAN_NS, STAGE_BATCH_EVENTS = 7311, 12 * 60 * 1_000_000_000, 5_000


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
    _stage(report)
    from bench import signals_latency

    signals_latency.run(report)


@functools.cache
def simulated_minutes() -> dict:
    """The decoded simulated equity minutes both stage benches replay (simulated once per process)."""
    from tapeflow.simulator import simulate
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    with tempfile.TemporaryDirectory(prefix="tapeflow-bench-signals-") as tmp:
        files = simulate(STAGE_SEED, 1, STAGE_SPAN_NS, Path(tmp), "equity", progress=False,
                         episodes_per_hour=12).files
        return merge(list(get_format("sim").decode(files)))


def _stage(report: Report) -> None:
    from bench.signals_latency import _binance

    report.section("live signals stage in the market flow (12 simulated equity minutes)")
    _share(report, simulated_minutes(), "12 simulated equity minutes",
           before="20.5 % (24 ms CPU per batch; whale, withdrawal only)")
    real = _binance()
    report.section("live signals stage in the market flow (Binance USD-M BTCUSDT capture)")
    if real is None:
        report.note("skipped: the Binance capture is not under TAPEFLOW_REAL_DATA")
        return
    _share(report, real, "the Binance USD-M capture (whale, withdrawal: L2)", before="")


def _share(report: Report, decoded: dict, label: str, *, before: str) -> None:
    from bytewax.testing import TestingSink, TestingSource, run_main

    from flows.market import MarketSinks, build_market_flow, signals_stage
    from flows.sources import cut_batches
    from tapeflow.signals.config import DEFAULT_PATH

    batches = list(cut_batches(decoded, STAGE_BATCH_EVENTS, None))
    events = sum(t.num_rows for b in batches for t in b.values())

    def flow(signals: bool) -> None:
        sinks = MarketSinks(extra=(TestingSink([]),))
        run_main(build_market_flow(TestingSource(batches), sinks, raw=False,
                                   new_signals=signals_stage(DEFAULT_PATH) if signals else None))

    without = median_time(lambda: flow(False))
    with_stage = median_time(lambda: flow(True))
    report.add("market flow without the signals stage", events, without, ours=True)
    report.add("market flow with the signals stage (whale, withdrawal, spoofing, iceberg)", events,
               with_stage, ours=True)
    per_batch_ms = (with_stage[0] - without[0]) / len(batches) * 1e3
    report.note(f"{len(batches)} micro-batches of up to {STAGE_BATCH_EVENTS:,} events: the stage costs "
                f"{per_batch_ms:,.1f} ms CPU per batch")
    report.figure(f"market flow throughput with the signals stage, share of without: {label}",
                  100 * without[0] / with_stage[0], "%", goal=70, before=before,
                  note=f"{per_batch_ms:,.1f} ms CPU per {STAGE_BATCH_EVENTS:,}-event batch; "
                       "median CPU of 3 after a warm-up")
