"""Institutional pressure and whales scored in overlap mode through ``tapeflow signals detect`` on a
simulated market from an evaluation seed drawn at random (printed), never the tuning seeds
(101, 102, 201, 202; docs/signals.md "Institutional pressure")."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from tapeflow.signals.score import score
from tests.signals.evaluation import S, evaluation_seed, simulate_and_detect


def test_institutional_and_whale_scores_in_overlap_mode(tmp_path, capsys):
    seed = evaluation_seed()
    with capsys.disabled():
        print(f"\ninstitutional evaluation seed: {seed} (equity, overlap, 2 instruments x 1 h, 6/kind/h)")
    summary, table = simulate_and_detect(tmp_path, seed, "equity", 2, 3600 * S, episodes_per_hour=6,
                                         overlap=True)
    truth = pq.read_table(summary.episodes_path)
    report = score(truth, table, kinds=["institutional", "whale"])
    inst_only = table.filter(np.array([k == "institutional" for k in table.column("kind").to_pylist()]))
    calibration = score(truth, inst_only, kinds=["institutional"])
    with capsys.disabled():
        print(f"seed {seed}\n{report.render()}\ninstitutional ECE {calibration.ece:.3f}")
    inst, wh = report.kind("institutional"), report.kind("whale")
    assert inst.episodes == 12
    # floors below the worst seed measured (docs/signals.md, eight 1 h evaluation seeds and the
    # test's draw 354407: P 0.5, R 0.25, latency 48 s, ECE 0.37): 12 episodes per run, so one
    # miss moves recall by 0.08 and a run's ECE (a constant confidence over 6-11 alerts) is noise
    assert inst.precision >= 0.4 and inst.recall >= 0.2, (inst.precision, inst.recall)
    assert inst.latency_median_ns <= 60 * S, "the goal: within 60 s of the decisive child"
    assert calibration.ece <= 0.45, calibration.ece
    # whales in overlap mode (docs/signals.md: sweeps through the planted makers' thin books):
    # a guard against regressions, far from the goal; worst measured P 0.058, R 0.25
    assert wh.precision >= 0.04 and wh.recall >= 0.15, (wh.precision, wh.recall)
    # one simulated day: the baseline is the day's own causal history
    evidence = [json.loads(e) for e in inst_only.column("evidence").to_pylist()]
    assert evidence and all(e["baseline"] == "own_day" for e in evidence)
