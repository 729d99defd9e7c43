"""Absorption, creep and contraction scored through ``tapeflow signals detect`` on a simulated
market in overlap mode, from an evaluation seed drawn at random (printed), never the tuning seeds
(101, 102; docs/signals.md "Absorption, creep and contraction")."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq

from tapeflow.signals.score import score
from tests.signals.evaluation import S, evaluation_seed, simulate_and_detect

KINDS = ["absorption", "creep", "contraction"]


def test_absorption_creep_contraction_scores_on_an_evaluation_seed_in_overlap_mode(tmp_path, capsys):
    seed = evaluation_seed()
    with capsys.disabled():
        print(f"\nstealth signals evaluation seed: {seed} (crypto preset, overlap mode, "
              "2 instruments x 20 min, 12 episodes/kind/h)")
    summary, table = simulate_and_detect(tmp_path, seed, "crypto", 2, 20 * 60 * S, episodes_per_hour=12,
                                         overlap=True)
    report = score(pq.read_table(summary.episodes_path), table, kinds=KINDS)
    with capsys.disabled():
        print(f"seed {seed}\n{report.render()}")
    ab, cr, co = (report.kind(k) for k in KINDS)
    assert ab.episodes == cr.episodes == co.episodes == 8
    # floors below the worst evaluation seed measured (docs/signals.md: absorption P 0.55 R 0.58,
    # contraction P 0.50 R 0.50, ECE 0.17); 8 episodes per kind, so one miss moves recall by 0.125.
    # Creep is far from the goal (P and R 0.13-0.25): only that it runs and alerts is required
    assert ab.precision >= 0.3 and ab.recall >= 0.375, (ab.precision, ab.recall)
    assert co.precision >= 0.3 and co.recall >= 0.375, (co.precision, co.recall)
    assert cr.alerts > 0, (cr.precision, cr.recall)
    assert report.ece <= 0.3, report.ece
    # the composite runs with them and names its components; it has no truth of its own
    stealth = table.filter(pc.equal(table.column("kind"), "stealth"))
    assert all("components" in e for e in stealth.column("evidence").to_pylist())
