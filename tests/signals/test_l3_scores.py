"""Spoofing and iceberg detectors scored through ``tapeflow signals detect`` on a simulated market
from an evaluation seed drawn at random (printed), never the tuning seeds (101, 102; docs/signals.md)."""

from __future__ import annotations

import pyarrow.parquet as pq

from tapeflow.signals.score import score
from tests.signals.evaluation import S, evaluation_seed, simulate_and_detect


def test_spoofing_and_iceberg_scores_on_an_evaluation_seed(tmp_path, capsys):
    seed = evaluation_seed()
    with capsys.disabled():
        print(f"\nL3 signals evaluation seed: {seed} (equity preset, 2 instruments x 2 h, 6 episodes/kind/h)")
    summary, table = simulate_and_detect(tmp_path, seed, "equity", 2, 2 * 3600 * S, episodes_per_hour=6)
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
