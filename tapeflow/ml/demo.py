"""The demo's models act: walk-forward over simulated days, the model-vs-baseline table, and the first
champion in the registry (``make demo``; docs/models.md).

Small on purpose (well under a minute on two cores): four simulated equity days of a few minutes,
flat models only, the 1 s horizon (where the models beat the baselines in the bench's table). The
full protocol with the TCN and longer days is ``python -m bench --only models``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

DAYS = 4
MINUTES = 6
SEED = 52977  # the bench's fresh simulated days (docs/models.md), shorter
DAY_NS = 86_400 * 1_000_000_000
START_NS = 1_704_153_660 * 1_000_000_000  # 2024-01-02 00:01 UTC


def _row(name: str, s: object) -> str:
    lo, hi = s.macro_f1_ci  # type: ignore[attr-defined]
    ci = "n/a" if lo != lo else f"[{lo:.3f}, {hi:.3f}]"
    return (f"   {name:<11} {s.macro_f1:>8.3f} {ci:>16} {s.accuracy:>8.3f} "  # type: ignore[attr-defined]
            f"{s.mcc:>7.3f}")  # type: ignore[attr-defined]


def models_step(root: Path) -> None:
    """Simulate the days, print the out-of-sample table, register and promote a champion."""
    from kernels.ml_train import TrainConfig
    from tapeflow.ml.artifact import train_artifact
    from tapeflow.ml.dataset import model_features, segment
    from tapeflow.ml.evaluate import examples_for_file
    from tapeflow.ml.examples import ExampleParams
    from tapeflow.ml.promotion import without_champion
    from tapeflow.ml.registry import Registry, default_root, model_name
    from tapeflow.ml.report import best_baseline
    from tapeflow.ml.walkforward import BASELINES, WalkForwardConfig, walk_forward
    from tapeflow.simulator import simulate

    print(f"\n== models: {DAYS} simulated equity days of {MINUTES} min, walk-forward by day (train on the "
          "days before, test on the next), horizon 1 s", flush=True)
    t0 = time.perf_counter()
    params = ExampleParams()
    segs, instrument = [], ""
    for d in range(DAYS):
        summary = simulate(SEED + d, 1, MINUTES * 60_000_000_000, root / "sim-models", preset="equity",
                           progress=False, start_ns=START_NS + d * DAY_NS)
        for path in sorted(summary.files)[-1:]:
            ((instrument, table),) = examples_for_file("sim", path, params)
            segs.append(segment(table, 1, params, f"day{d + 1}"))
    cfg = WalkForwardConfig(horizon_s=1, train_folds=3, models=("logreg", "mlp"), seed=0,
                            block_ns=60_000_000_000, train=TrainConfig(max_steps=600))
    result = walk_forward(segs, model_features(params), cfg)
    n = next(iter(result.scores.values())).n
    print(f"   {instrument}: {len(result.folds)} test days, {n:,} test rows, 95% intervals over 1-minute "
          f"blocks ({time.perf_counter() - t0:.1f} s)")
    print(f"   {'':<11} {'macro-F1':>8} {'95% interval':>16} {'accuracy':>8} {'MCC':>7}")
    for name in (*cfg.models, *BASELINES):
        print(_row(name, result.scores[name]))
    base, base_f1 = best_baseline(result)
    best = max(cfg.models, key=lambda m: result.scores[m].macro_f1)
    margin = result.scores[best].macro_f1 - base_f1
    verdict = "beats" if margin > 0 else "does NOT beat"
    print(f"   best model {best} {verdict} the best baseline ({base}) by {margin:+.3f} macro-F1 "
          f"(small demo days: see docs/models.md for the full table)")

    venue, symbol = instrument.split("/", 1)
    registry = Registry(default_root(root / "lake"))
    name = model_name(venue, symbol, 1)
    art = train_artifact(segs[-3:], params, best, cfg)
    version = registry.register(name, art, metrics={"val_macro_f1": art.val_macro_f1},
                                training_partitions=[s.name for s in segs[-3:]], held_out="none (demo)",
                                comparison=without_champion("no_champion"))
    registry.promote(name, version)
    usable = int(np.sum([s.usable.sum() for s in segs[-3:]]))
    print(f"   registry: {name} v{version} ({best}, {usable:,} rows of the last 3 days) is the champion "
          f"in {registry.root} ({time.perf_counter() - t0:.1f} s in all)")
