"""Absorption and stealth-accumulation windows: events/s of each JAX kernel beside its NumPy
reference, same run (``kernels.signals_stealth``); and the live signals stage's CPU per micro-batch,
detector by detector (absorption's figure beside the stage's budget), on simulated crypto minutes.

Synthetic inputs shaped like the detectors': a 100 ms book grid's dominant-level price, traded
volume and shown size per row (``held_volume``, 10 s window) and a 1 s mid with its event counts
(``range_windows``, 20 s window). JAX is timed in steady state after a warm-up call (compilation
paid there, once per padded bucket); the references are Python loops over rows, timed on a slice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import Goal, Report, median_time
from kernels.signals_stealth import held_volume, held_volume_ref, range_windows, range_windows_ref

GRID_ROWS, SAMPLES = 200_000, 50_000
# the stage replay the 47.8 ms absorption figure was first measured on (docs/signals.md)
PARTS_SEED, PARTS_MINUTES, PARTS_BATCH_EVENTS = 4242, 15, 2_500
ABSORPTION = Goal("live absorption, CPU per 2,500-event batch (budget: the whole stage at 70 % throughput)",
                  "ms", None, before="47.8 ms (s21, compiles included)",
                  higher_is_better=False)
FIGURES = (ABSORPTION,)


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
    _parts(report)


def _parts(report: Report) -> None:
    from bytewax.testing import TestingSink, TestingSource, run_main

    from flows.market import MarketSinks, build_market_flow
    from flows.sources import cut_batches

    minutes = PARTS_MINUTES
    decoded = _crypto_minutes(minutes)
    batches = list(cut_batches(decoded, PARTS_BATCH_EVENTS, None))
    n = len(batches)
    events = sum(t.num_rows for b in batches for t in b.values())
    symbol = next(t.column("symbol")[0].as_py() for b in batches for t in b.values() if t.num_rows)
    # the first replay pays every padded bucket's JAX compile (as the s21 figure did); the second,
    # a fresh stage in the same process, is the steady state
    (cold, cold_total), (warm, warm_total) = (_replay(batches, symbol) for _ in range(2))
    for label, spent, total in (("first replay, JAX compiles included", cold, cold_total),
                                ("second replay, steady state", warm, warm_total)):
        report.section(f"live signals stage, CPU per {PARTS_BATCH_EVENTS:,}-event batch by detector "
                       f"({minutes} simulated crypto minutes, seed {PARTS_SEED}): {label}")
        report.add("tapeflow signals stage, whole", events, total, ours=True,
                   note=f"{total / n * 1e3:,.1f} ms per batch")
        for name, sec in sorted(spent.items(), key=lambda kv: -kv[1]):
            report.add(f"tapeflow stage part: {name}", events, sec, ours=True,
                       note=f"{sec / n * 1e3:,.1f} ms per batch")

    def flow() -> None:
        run_main(build_market_flow(TestingSource(batches), MarketSinks(extra=(TestingSink([]),)), raw=False))

    without = median_time(flow)[0] / n * 1e3
    budget = without * (1 / 0.7 - 1)  # the stage may cost this much per batch and keep 70 % of the flow
    report.note(f"{n} batches; the market flow without the stage {without:,.1f} ms CPU per batch, so the "
                f"whole stage's budget at 70 % throughput is {budget:,.1f} ms per batch")
    report.figure(ABSORPTION.name, warm.get("absorption", 0.0) / n * 1e3, "ms", goal=round(budget, 2),
                  before=ABSORPTION.before, higher_is_better=False,
                  note=f"steady state; with the compiles {cold.get('absorption', 0.0) / n * 1e3:,.1f} ms; "
                       f"whole stage {warm_total / n * 1e3:,.1f} ms ({cold_total / n * 1e3:,.1f} cold)")


def _replay(batches: list, symbol: str) -> tuple[dict[str, float], float]:
    """One replay of ``batches`` through a fresh stage: process CPU seconds per part, and in all."""
    from tapeflow.signals.config import DEFAULT_PATH
    from tapeflow.signals.stream import LiveSignals, StreamingSignals

    spent: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - t
        return call

    stage = LiveSignals(DEFAULT_PATH)
    stage.stream = StreamingSignals("sim", symbol)
    for name, detector in stage.stream.detectors.items():
        detector.add = timed(name, detector.add)  # type: ignore[method-assign]
    stage.stream._whale = timed("whale", stage.stream._whale)  # type: ignore[method-assign]
    stage.stream._withdrawal = timed("withdrawal", stage.stream._withdrawal)  # type: ignore[method-assign]
    stage.book.apply = timed("book (100 ms grid)", stage.book.apply)  # type: ignore[method-assign]
    t0 = time.process_time()
    for b in batches:
        stage.apply("sim", symbol, b)
    stage.close()
    return spent, time.process_time() - t0


def _crypto_minutes(minutes: int) -> dict:
    import tempfile
    from pathlib import Path

    from tapeflow.simulator import simulate
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    with tempfile.TemporaryDirectory(prefix="tapeflow-bench-parts-") as tmp:
        files = simulate(PARTS_SEED, 1, minutes * 60 * 1_000_000_000, Path(tmp), "crypto", progress=False,
                         episodes_per_hour=12, overlap=True).files
        return merge(list(get_format("sim").decode(files)))
