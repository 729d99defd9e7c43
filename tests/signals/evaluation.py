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
