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


def options_step(root: Path, seed: int = 7, minutes: int = 60) -> None:
    """The ``make demo`` act: simulate a BTC chain, print the surface the kernels recover beside the
    true one (ATM IV, 25-delta RR and BF per expiry, medians over the one-minute snapshots), then the
    cross-strike detector's alerts scored against the planted flows."""
    import numpy as np
    import pyarrow.parquet as pq

    from tapeflow.options.surface import summary as surface_summary
    from tapeflow.options.surface import surfaces
    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.signals.cross_strike import detect_paths
    from tapeflow.signals.score import read_truth, score

    print(f"\n== options: a simulated BTC option chain ({minutes} min, seed {seed}), its implied-volatility "
          "surface and the cross-strike detector", flush=True)
    t0 = time.perf_counter()
    out = root / "sim-options"
    sim = simulate_options(seed, minutes * 60_000_000_000, out, overlap=True)
    table = surfaces(pq.read_table(sim.tickers_path))
    print(f"   {sim.tickers:,} option tickers, {sim.trades:,} trades, {sim.episodes} planted episodes in "
          f"{time.perf_counter() - t0:.1f} s -> {sim.tickers_path.parent}")
    print(f"   {surface_summary(table)}")
    print(f"   {'expiry':>8} {'days':>5}   {'ATM IV':>13}   {'RR25':>15}   {'BF25':>15}   (recovered / true)")
    df = table.to_pandas()
    for expiry, rows in df.groupby("expiry_ns"):
        t_years = float(rows.t_years.median())
        atm, rr, bf = sim.surface.truth(t_years)
        got = [float(np.nanmedian(rows[c])) for c in ("atm_iv", "rr25", "bf25")]
        name = next(x.symbol for x in sim.listings if x.expiry_ns == expiry).split("-")[1]
        print(f"   {name:>8} {t_years * 365:5.1f}   {got[0]:.4f}/{atm:.4f}   {got[1]:+.4f}/{rr:+.4f}   "
              f"{got[2]:+.4f}/{bf:+.4f}")
    alerts = detect_paths([out / "options"], load(DEFAULT_PATH))
    pq.write_table(alerts, root / "signals-options.parquet")
    report = score(read_truth(sim.episodes_path), alerts, kinds=["cross_strike"])
    print(f"   cross-strike: {alerts.num_rows} alerts -> {root / 'signals-options.parquet'}")
    print("\n".join(f"   {line}" for line in report.render().splitlines()))
