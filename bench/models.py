"""The out-of-sample model-vs-baseline table of docs/models.md (issue 12): walk-forward by day.

Inputs:

* simulated equity days: ``SIM_DAYS`` consecutive dates, each its own seed (``SIM_SEED + d``), each
  ``SIM_SPAN_NS`` of 1 s grid; train on the previous 3 days, test on the next (quick: fewer, shorter);
* LOBSTER AMZN 2012-06-21 (one real day, 6.5 h): walk-forward by hour, the only way one day allows;
* Databento ES MBO: the 2023-12-24 file holds the start-of-day snapshot only and 2023-12-25 two hours,
  so by 15 minutes;
* the Binance BTCUSDT capture: 6 minutes, by 2 minutes at the 1 s horizon (too little to conclude).

``TAPEFLOW_BENCH_MODELS=sim,amzn,es,btc`` (any subset; all by default) runs part of it, e.g. one dataset
at a time on a loaded machine; ``amzn_labels`` (not in the default set) adds the AMZN labelling study:
the 60 s fixed-time label and the tick-time target (``tapeflow.ml.labels``: the next mid
change within 60 s), each walk-forward by hour like the 10 s row; ``amzn_targets`` (not in the
default set either) is the s27 raw-book study: the kinds of ``TAPEFLOW_BENCH_KINDS`` (``deeplob`` when
unset) trained as in the s26 diagnosis (learning rate 3e-4, weight decay 1e-2, evaluation every 10
steps, patience 10) on the 10 s label with a spread-scaled threshold (``tapeflow.ml.labels.
spread_scaled_segment``: ``k`` fitted on the first fold, 09:30-10:00, which is never tested, for a
third of its rows flat) and on the tick-time target, baselines on the same labels.

``TAPEFLOW_BENCH_SIGNALS=60`` builds the examples with signal-score features (``ExampleParams.
signal_window_s``; every batch detector runs over each file) and scores every row twice on the same
examples, folds and seeds: without the signal inputs and with them ("before/after"), both tables
printed. ``TAPEFLOW_BENCH_SIM_SEED=N`` replaces the simulated days' first seed (fresh seeds);
``TAPEFLOW_BENCH_KINDS=logreg,mlp`` trains only those models (a loaded machine);
``TAPEFLOW_BENCH_KINDS=logreg,mlp,tcn,deeplob`` adds the raw-book model (the examples then carry the
raw book levels, ``ExampleParams.book_levels`` = 10, which the other kinds do not read).

Seeds of the simulator are fixed here and were never used to choose a model setting (the defaults of
``WalkForwardConfig`` / ``TrainConfig`` were set on the kernel tests' synthetic rules). The figures are
the best model's macro-F1 margin over the best baseline (goal: above 0). Each table is printed in full
as a note; ``python -m bench --only models`` reproduces them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from bench import Goal, Report
from kernels.ml_train import TrainConfig
from tapeflow.ml.dataset import model_features, segment, split_by
from tapeflow.ml.evaluate import MIN_USABLE_ROWS, Loaded, evaluate, folds, load_examples
from tapeflow.ml.examples import ExampleParams
from tapeflow.ml.labels import fit_spread_scale, next_move_segment, spread_scaled_segment
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


def _kinds() -> dict:
    kinds = tuple(k.strip() for k in os.environ.get("TAPEFLOW_BENCH_KINDS", "").split(",") if k.strip())
    return {"models": kinds} if kinds else {}


def _signal_window() -> int:
    return int(os.environ.get("TAPEFLOW_BENCH_SIGNALS", "0") or 0)


def _book_levels() -> int:
    return 10 if "deeplob" in _kinds().get("models", ()) else 0


def _variants() -> list[tuple[str, ExampleParams]]:
    """``(suffix, params)``: the bench's dataset, and with ``TAPEFLOW_BENCH_SIGNALS`` it plus signals."""
    window = _signal_window()
    out = [("", ExampleParams(book_levels=_book_levels()))]
    with_signals = ExampleParams(signal_window_s=window, book_levels=_book_levels())
    return out + [(", with signal features", with_signals)] if window else out


def _load(fmt: str, paths: list[Path]) -> list:
    params = ExampleParams(signal_window_s=_signal_window(), book_levels=_book_levels())
    return load_examples(fmt, paths, params)


def _record(report: Report, g: Goal, suffix: str, loaded: Loaded, params: ExampleParams,
            cfg: WalkForwardConfig, title: str) -> None:
    results = evaluate(loaded, params, cfg)
    if not results:
        report.note(f"{title}: no instrument has two folds")
    for inst, result in results.items():
        text = render(result, f"{title}{suffix}, {inst}, horizon {cfg.horizon_s} s")
        report.note(text)
        print(text, file=sys.stderr, flush=True)  # progress: the report prints at the end
        report.figure(g.name + suffix, _margin(result), g.unit, goal=g.goal, before=g.before,
                      note=f"{inst}: {len(result.folds)} test folds")


def _run(report: Report, fmt: str, paths: list[Path], horizons: list[tuple[Goal, int]],
         fold_ns: int | None, cfg: dict, title: str, examples: list | None = None) -> None:
    examples = examples if examples is not None else _load(fmt, paths)
    for g, horizon in horizons:
        for suffix, params in _variants():
            loaded = folds(examples, params, horizon, fold_ns, log=report.note)
            wf = WalkForwardConfig(horizon_s=horizon, **cfg, **_kinds())
            _record(report, g, suffix, loaded, params, wf, title)


def _tick_time(report: Report, examples: list, within_s: int, fold_ns: int, title: str) -> None:
    """The tick-time target (next mid change within ``within_s``) on every variant's inputs."""
    g = Goal(f"models: macro-F1 margin over the best baseline, {title}, next mid change within {within_s} s",
             "F1", 0.0)
    for suffix, params in _variants():
        segments: dict[str, list] = {}
        for inst, _, table in examples:
            seg = next_move_segment(table, segment(table, 10, params, inst), within_s)
            for piece in split_by(seg, fold_ns):
                if int(piece.usable.sum()) >= MIN_USABLE_ROWS:
                    segments.setdefault(inst, []).append(piece)
        wf = WalkForwardConfig(horizon_s=within_s, **_kinds())
        _record(report, g, suffix, Loaded(segments, []), params, wf,
                f"{title}, tick time")


S26_TRAIN = TrainConfig(learning_rate=3e-4, weight_decay=1e-2, eval_every=10, patience=10)


def _raw_book_targets(report: Report, table_of: list, fold_ns: int, title: str) -> None:
    """The s27 raw-book study on AMZN (module docstring): spread-scaled 10 s labels, tick time."""
    params = ExampleParams(book_levels=10)
    kinds = _kinds().get("models", ("deeplob",))
    names = model_features(params)
    sp = names.index("spread_bps")
    [(inst, _, table)] = table_of
    seg = segment(table, 10, params, inst)
    pieces = [p for p in split_by(seg, fold_ns) if int(p.usable.sum()) >= MIN_USABLE_ROWS]
    k = fit_spread_scale(pieces[0], sp, 1 / 3)
    report.note(f"{title}: spread scale k = {k:.4f} (fold 0, a third of its rows flat)")
    targets = {"10 s, spread-scaled threshold": ([spread_scaled_segment(p, sp, k, 10) for p in pieces], 10)}
    tick = next_move_segment(table, seg, 60)
    targets["next mid change within 60 s"] = (
        [p for p in split_by(tick, fold_ns) if int(p.usable.sum()) >= MIN_USABLE_ROWS], 60)
    for name, (segs, horizon) in targets.items():
        g = Goal(f"models: macro-F1 margin over the best baseline, {title}, raw book, {name}", "F1", 0.0)
        wf = WalkForwardConfig(horizon_s=horizon, models=kinds, train=S26_TRAIN)
        _record(report, g, "", Loaded({inst: segs}, []), params, wf, f"{title}, raw book, {name}")


def _parts() -> set[str]:
    wanted = {p.strip() for p in os.environ.get("TAPEFLOW_BENCH_MODELS", "").split(",") if p.strip()}
    return wanted or {"sim", "amzn", "es", "btc"}


def _sim_seed() -> int:
    return int(os.environ.get("TAPEFLOW_BENCH_SIM_SEED", "") or SIM_SEED)


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
            summary = simulate(_sim_seed() + d, 1, span, Path(tmp) / f"day{d}", "equity",
                               start_ns=SIM_START_NS + d * DAY_NS, progress=False)
            files += [Path(f) for f in summary.files if str(f).endswith(".csv.gz")]
        _run(report, "sim", files, [(FIGURES[0], 10), (FIGURES[1], 1)], None,
             {"block_ns": 5 * 60 * S}, f"simulated equity, {days} days x {span // (60 * S)} min, seed "
             f"{_sim_seed()}+d")


def _real(report: Report, parts: set[str]) -> None:
    if not parts & {"amzn", "amzn_labels", "amzn_targets", "es", "btc"}:
        return
    root = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data"))
    amzn = (root / "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_1"
            / "AMZN_2012-06-21_34200000_57600000_message_1.csv")
    # the orderbook file seeds and re-anchors the L3 book (without it the rebuilt book crosses)
    amzn_pair = [amzn, amzn.with_name(amzn.name.replace("_message_", "_orderbook_"))]
    es = sorted((root / "databento/glbx").glob("esh4-glbx-mdp3-*.mbo.dbn.zst"))
    btc = root / "binance/usdm_btcusdt_20240808.gz"
    if not amzn.exists():
        report.skip(f"no real data at {root}")
        return
    if parts & {"amzn", "amzn_labels", "amzn_targets"}:
        title = "LOBSTER AMZN 2012-06-21, by hour"
        examples = _load("lobster", amzn_pair)
        if "amzn" in parts:
            _run(report, "lobster", amzn_pair, [(FIGURES[2], 10)], 3_600 * S, {}, title, examples)
        if "amzn_targets" in parts:
            _raw_book_targets(report, load_examples("lobster", amzn_pair, ExampleParams(book_levels=10)),
                              3_600 * S, title)
        if "amzn_labels" in parts:
            goals = [(Goal(f"models: macro-F1 margin over the best baseline, {title}, {h} s", "F1", 0.0), h)
                     for h in (60,)]
            _tick_time(report, examples, 60, 3_600 * S, title)
            _run(report, "lobster", amzn_pair, goals, 3_600 * S, {}, title, examples)
    if "es" in parts:
        _run(report, "dbn", es, [(FIGURES[3], 10)], 15 * 60 * S,
             {"train_folds": 3, "block_ns": 15 * 60 * S}, "Databento ES MBO, by 15 min")
    if "btc" in parts:
        _run(report, "binance", [btc], [(FIGURES[4], 1)], 2 * 60 * S,
             {"train_folds": 1, "block_ns": 60 * S}, "Binance BTCUSDT 6 min, by 2 min")
