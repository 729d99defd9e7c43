"""Shared by the score tests: an evaluation seed drawn at random (never a tuning seed), and a
simulated market run through ``tapeflow signals detect`` (the command a user runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.cli import main
from tapeflow.simulator import SimSummary, simulate

S = 1_000_000_000
TUNING_SEEDS = frozenset({101, 102, 201, 202})  # the development seeds (docs/signals.md)


def evaluation_seed() -> int:
    """A fresh seed per run, never one the thresholds were tuned on."""
    seed = int(np.random.SeedSequence().entropy % 900_000) + 1000
    assert seed not in TUNING_SEEDS
    return seed


def simulate_and_detect(out: Path, seed: int, preset: str, instruments: int, duration_ns: int, *,
                        episodes_per_hour: int, overlap: bool = False) -> tuple[SimSummary, pa.Table]:
    """Simulate, then ``tapeflow signals detect --format sim`` over the files: (summary, signal rows)."""
    summary = simulate(seed, instruments, duration_ns, out, preset, progress=False,
                       episodes_per_hour=episodes_per_hour, overlap=overlap)
    code = main(["signals", "detect", "--format", "sim", *map(str, summary.files), "--out", str(out / "sig")])
    assert code == 0
    return summary, pq.read_table(out / "sig" / "signals.parquet")


def level_view_detect(out: Path, seed: int, preset: str, instruments: int, duration_ns: int, *,
                      episodes_per_hour: int, overlap: bool = False) -> tuple[SimSummary, pa.Table]:
    """Simulate, then run ``detect_tables`` on the market's level view alone: the book rebuilt on
    the thresholds' grid and the trades, no instrument marked as having order ids (the route a
    price-level venue's input takes, so the L2 variants report): (summary, signal rows)."""
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.schemas.records import TRADE
    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.signals.detect import detect_tables, grid_and_levels
    from tapeflow.wire.capture import merge

    summary = simulate(seed, instruments, duration_ns, out, preset, progress=False,
                       episodes_per_hour=episodes_per_hour, overlap=overlap)
    thresholds = load(DEFAULT_PATH)
    grid_ns, levels = grid_and_levels(thresholds)
    chunks: list = []
    snapshots, _ = snapshots_for_format("sim", list(summary.files), levels=levels, interval_ns=grid_ns,
                                        on_chunk=chunks.append)
    trades = merge(chunks)[TRADE.name].select(
        ["ts_event_ns", "ts_recv_ns", "venue", "symbol", "price_nanos", "size_nanos", "aggressor_side"])
    return summary, detect_tables(trades, snapshots, thresholds)
