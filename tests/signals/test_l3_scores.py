"""Spoofing and iceberg detectors scored through ``tapeflow signals detect`` on a simulated market
from an evaluation seed drawn at random (printed), never the tuning seeds (101, 102; docs/signals.md)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from tapeflow.cli import main
from tapeflow.signals.score import score
from tapeflow.simulator import simulate

S = 1_000_000_000
TUNING_SEEDS = {101, 102, 201, 202}


def test_spoofing_and_iceberg_scores_on_an_evaluation_seed(tmp_path, capsys):
    seed = int(np.random.SeedSequence().entropy % 900_000) + 1000
    assert seed not in TUNING_SEEDS
    with capsys.disabled():
        print(f"\nL3 signals evaluation seed: {seed} (equity preset, 2 instruments x 2 h, 6 episodes/kind/h)")
    summary = simulate(seed, 2, 2 * 3600 * S, tmp_path, "equity", progress=False, episodes_per_hour=6)
    code = main(["signals", "detect", "--format", "sim", *map(str, summary.files),
                 "--out", str(tmp_path / "sig")])
    assert code == 0
    table = pq.read_table(tmp_path / "sig" / "signals.parquet")
    report = score(pq.read_table(summary.episodes_path), table, kinds=["spoofing", "iceberg"])
    with capsys.disabled():
        print(f"seed {seed}\n{report.render()}")
    # floors below the worst seed measured (spoofing R 0.79, 8420; docs/signals.md): one seed has
    # 24 episodes per kind, so one miss moves recall by 0.04; spoofing recall 0.7 is 17 of 24
    sp, ic = report.kind("spoofing"), report.kind("iceberg")
    assert sp.episodes == ic.episodes == 24
    assert sp.precision >= 0.8 and sp.recall >= 0.7, (sp.precision, sp.recall)
    assert sp.latency_median_ns <= 1 * S, "the goal: spoofing within 1 s of the genuine fill"
    assert ic.precision >= 0.8 and ic.recall >= 0.75, (ic.precision, ic.recall)
    assert report.ece <= 0.15, report.ece
