"""Institutional pressure and whales scored in overlap mode through ``tapeflow signals detect`` on a
simulated market from an evaluation seed drawn at random (printed), never the tuning seeds
(101, 102, 201, 202; docs/signals.md "Institutional pressure")."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from tapeflow.signals.score import score
from tests.signals.evaluation import S, assert_calibrated, assert_rate


def test_institutional_and_whale_scores_in_overlap_mode(equity_overlap_day, capsys):
    seed, summary = equity_overlap_day.seed, equity_overlap_day.summary
    with capsys.disabled():
        print(f"\ninstitutional evaluation seed: {seed} (equity, overlap, 2 instruments x 2 h, 6/kind/h; "
              "the run's shared overlap day)")
    # 24 episodes: with 12 (one hour) one miss moved recall by 0.08 and no bound that lets one
    # seed's noise through could fail
    table = equity_overlap_day.signals()
    truth = pq.read_table(summary.episodes_path)
    report = score(truth, table, kinds=["institutional", "whale"])
    inst_only = table.filter(np.array([k == "institutional" for k in table.column("kind").to_pylist()]))
    calibration = score(truth, inst_only, kinds=["institutional"])
    with capsys.disabled():
        print(f"seed {seed}\n{report.render()}\ninstitutional ECE {calibration.ece:.3f}")
    inst, wh = report.kind("institutional"), report.kind("whale")
    assert inst.episodes == 24
    # claims below the pooled rates of random seeds (docs/signals.md): P 0.84, R 0.53
    assert_rate("institutional precision", inst.hits, inst.alerts, 0.65)
    assert_rate("institutional recall", inst.hits, inst.episodes, 0.4)
    # the goal is 60 s from the decisive child, met pooled; a seed's median ranged 25-55 s over
    # 19 2 h seeds and up to 60.4 s on 1 h seeds, so the test guards a regression at 75 s
    assert inst.latency_median_ns <= 75 * S, inst.latency_median_ns
    # a seed's hits vary beyond binomial noise around the constant confidence (0.868): on 11 seeds
    # of 2026-12-07, 136 of 160 alerts hit, chi-square 21.2 on 10 dof, intra-seed correlation 0.083
    # (false alerts come in clusters per simulated market). Judged as independent alerts the check
    # failed on ~2% of seeds (at 7 hits of 15; seed 360476 had 9 of 15, ECE 0.268): the noise
    # allowed is beta-binomial at 0.08 (then ~0.04% of seeds fail, at 3 hits of 15)
    assert_calibrated(calibration, 0.3, rho=0.08)
    # whales in overlap mode (docs/signals.md: sweeps through the planted makers' thin books):
    # a guard against regressions, far from the goal. On the s27 simulator (whale parents trade in
    # full) 4 fresh 2 h seeds gave P 0.243 (46 of 189), R 0.479 (46 of 96; the s26 thresholds
    # 0.521): recall's claim is under its 99.9 % lower bound 0.32 (was 0.45 on the s26 simulator)
    assert_rate("whale precision", wh.hits, wh.alerts, 0.1)
    assert_rate("whale recall", wh.hits, wh.episodes, 0.3)
    # one simulated day: the baseline is the day's own causal history
    evidence = [json.loads(e) for e in inst_only.column("evidence").to_pylist()]
    assert evidence and all(e["baseline"] == "own_day" for e in evidence)
