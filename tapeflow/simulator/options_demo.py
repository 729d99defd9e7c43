"""``tapeflow simulate --options`` and the options act of ``make demo``: a simulated chain, the surface
the pricing kernels recover from it beside the true one, and the cross-strike detector's score."""

from __future__ import annotations

import time
from pathlib import Path

from tapeflow.simulator.options import simulate_options


def run_cli(seed: int, duration_ns: int, out_dir: Path, *, overlap: bool = False) -> int:
    """Simulate one option chain and print what was written (``tapeflow simulate --options``)."""
    started = time.perf_counter()
    summary = simulate_options(seed, duration_ns, out_dir, overlap=overlap)
    s = summary.surface
    print(f"simulate --options: {summary.underlying}, {len(summary.listings)} options, "
          f"{duration_ns / 60e9:.0f} min (seed {seed}) in {time.perf_counter() - started:.1f} s; surface "
          f"ATM {s.atm_short:.3f} -> {s.atm_long:.3f}, skew {s.skew:+.3f}, curvature {s.curvature:.3f}")
    print(f"  {summary.tickers_path}  ({summary.tickers:,} option tickers)")
    print(f"  {summary.trades_path}  ({summary.trades:,} trades)")
    print(f"  {summary.quotes_path}  (quotes)")
    layout = "overlapping" if overlap else "disjoint"
    print(f"  {summary.episodes_path}  ({summary.episodes} planted episodes, {layout}"
          f"{f'; {summary.not_planted} did not fit' if summary.not_planted else ''})")
    return 0
