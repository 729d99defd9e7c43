"""The out-of-sample model-vs-baseline table of docs/models.md (issue 12): walk-forward by day.

Inputs:

* simulated equity days: ``SIM_DAYS`` consecutive dates, each its own seed (``SIM_SEED + d``), each
  ``SIM_SPAN_NS`` of 1 s grid; train on the previous 3 days, test on the next (quick: fewer, shorter);
* LOBSTER AMZN 2012-06-21 (one real day, 6.5 h): walk-forward by hour, the only way one day allows;
* Databento ES MBO: the 2023-12-24 file holds the start-of-day snapshot only and 2023-12-25 two hours,
  so by 15 minutes;
* the Binance BTCUSDT capture: 6 minutes, by 2 minutes at the 1 s horizon (too little to conclude).

``TAPEFLOW_BENCH_MODELS=sim,amzn,es,btc`` (any subset; all by default) runs part of it, e.g. one dataset
at a time on a loaded machine.

Seeds of the simulator are fixed here and were never used to choose a model setting (the defaults of
``WalkForwardConfig`` / ``TrainConfig`` were set on the kernel tests' synthetic rules). The figures are
the best model's macro-F1 margin over the best baseline (goal: above 0). Each table is printed in full
as a note; ``python -m bench --only models`` reproduces them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench import Goal, Report
from tapeflow.ml.evaluate import evaluate, folds, load_examples
from tapeflow.ml.examples import ExampleParams
from tapeflow.ml.report import best_baseline, render
from tapeflow.ml.walkforward import WalkForwardConfig, WalkForwardResult

S = 1_000_000_000
DAY_NS = 86_400 * S
SIM_SEED, SIM_DAYS, SIM_SPAN_NS = 81_523, 6, 30 * 60 * S  # fresh seeds of 2026-12-07 (docs/models.md)
SIM_START_NS = 1_718_236_800 * S + 14 * 3_600 * S  # 2024-06-13 14:00 UTC, then one day per file

FIGURES = (
    Goal("models: macro-F1 margin over the best baseline, simulated equity days, 10 s", "F1", 0.0),
    Goal("models: macro-F1 margin over the best baseline, simulated equity days, 1 s", "F1", 0.0),
    Goal("models: macro-F1 margin over the best baseline, LOBSTER AMZN by hour, 10 s", "F1", 0.0),
    Goal("models: macro-F1 margin over the best baseline, ES MBO by 15 min, 10 s", "F1", 0.0),
    Goal("models: macro-F1 margin over the best baseline, Binance BTCUSDT by 2 min, 1 s", "F1", 0.0),
)


def _margin(result: WalkForwardResult) -> float:
    _, base = best_baseline(result)
    return max(result.scores[m].macro_f1 for m in result.config.models) - base


def _run(report: Report, fmt: str, paths: list[Path], horizons: list[tuple[Goal, int]],
         fold_ns: int | None, cfg: dict, title: str) -> None:
    params = ExampleParams()
    examples = load_examples(fmt, paths, params)
    for g, horizon in horizons:
        loaded = folds(examples, params, horizon, fold_ns, log=report.note)
        results = evaluate(loaded, params, WalkForwardConfig(horizon_s=horizon, **cfg))
        if not results:
            report.note(f"{title}: no instrument has two folds")
            continue
        for inst, result in results.items():
            report.note(render(result, f"{title}, {inst}, horizon {horizon} s"))
            report.record(g, _margin(result), note=f"{inst}: {len(result.folds)} test folds")


def _parts() -> set[str]:
    wanted = {p.strip() for p in os.environ.get("TAPEFLOW_BENCH_MODELS", "").split(",") if p.strip()}
    return wanted or {"sim", "amzn", "es", "btc"}


def run(report: Report) -> None:
    """Simulate the days, evaluate every input, record the margins and print the tables."""
    report.section("models: out-of-sample macro-F1, models vs naive baselines (walk-forward)")
    parts = _parts()
    if "sim" in parts:
        _simulated(report)
    _real(report, parts)


def _simulated(report: Report) -> None:
    days, span = (4, 15 * 60 * S) if report.quick else (SIM_DAYS, SIM_SPAN_NS)
    from tapeflow.simulator import simulate

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for d in range(days):
            summary = simulate(SIM_SEED + d, 1, span, Path(tmp) / f"day{d}", "equity",
                               start_ns=SIM_START_NS + d * DAY_NS, progress=False)
            files += [Path(f) for f in summary.files if str(f).endswith(".csv.gz")]
        _run(report, "sim", files, [(FIGURES[0], 10), (FIGURES[1], 1)], None,
             {"block_ns": 5 * 60 * S}, f"simulated equity, {days} days x {span // (60 * S)} min")


def _real(report: Report, parts: set[str]) -> None:
    if not parts & {"amzn", "es", "btc"}:
        return
    root = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data"))
    amzn = (root / "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_1"
            / "AMZN_2012-06-21_34200000_57600000_message_1.csv")
    es = sorted((root / "databento/glbx").glob("esh4-glbx-mdp3-*.mbo.dbn.zst"))
    btc = root / "binance/usdm_btcusdt_20240808.gz"
    if not amzn.exists():
        report.skip(f"no real data at {root}")
        return
    if "amzn" in parts:
        _run(report, "lobster", [amzn], [(FIGURES[2], 10)], 3_600 * S, {},
             "LOBSTER AMZN 2012-06-21, by hour")
    if "es" in parts:
        _run(report, "dbn", es, [(FIGURES[3], 10)], 15 * 60 * S,
             {"train_folds": 3, "block_ns": 15 * 60 * S}, "Databento ES MBO, by 15 min")
    if "btc" in parts:
        _run(report, "binance", [btc], [(FIGURES[4], 1)], 2 * 60 * S,
             {"train_folds": 1, "block_ns": 60 * S}, "Binance BTCUSDT 6 min, by 2 min")
