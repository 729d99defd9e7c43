"""The model-vs-baseline table of a walk-forward run, as Markdown and as JSON-ready dicts."""

from __future__ import annotations

from typing import Any

from tapeflow.ml.walkforward import BASELINES, WalkForwardResult


def _ci(lo_hi: tuple[float, float]) -> str:
    lo, hi = lo_hi
    return "n/a" if lo != lo else f"[{lo:.3f}, {hi:.3f}]"


def best_baseline(result: WalkForwardResult) -> tuple[str, float]:
    """The baseline with the highest pooled macro-F1 and that score."""
    name = max(BASELINES, key=lambda n: result.scores[n].macro_f1)
    return name, result.scores[name].macro_f1


def verdict(result: WalkForwardResult) -> str:
    """One line per model: beats every baseline in macro-F1 or not, by how much."""
    base, base_f1 = best_baseline(result)
    lines = []
    for model in result.config.models:
        f1 = result.scores[model].macro_f1
        word = "beats" if f1 > base_f1 else "does NOT beat"
        lines.append(f"{model} {word} the best baseline ({base}, {base_f1:.3f}) "
                     f"by {f1 - base_f1:+.3f} macro-F1")
    return "\n".join(lines)


def render(result: WalkForwardResult, title: str = "") -> str:
    """Markdown: the protocol, the pooled table, the verdicts, per-fold macro-F1 and confusion matrices."""
    cfg = result.config
    first = next(iter(result.scores.values()))
    out = [f"### {title}" if title else "",
           f"horizon {cfg.horizon_s} s, {len(result.folds)} test folds, train on the previous "
           f"{cfg.train_folds} fold(s) (last {cfg.val_fraction:.0%} validates), seed {cfg.seed}, "
           f"{first.n} test rows in {first.blocks} bootstrap blocks of {cfg.block_ns / 3.6e12:g} h"
           + ("" if cfg.flat_share is None else f"; labels at each fold's training alpha "
              f"(flat share {cfg.flat_share:g} of its training rows)"), "",
           "| model | macro-F1 | 95% CI | accuracy | log loss | MCC | MCC 95% CI |",
           "|---|---|---|---|---|---|---|"]
    for name, s in result.scores.items():
        kind = " (baseline)" if name in BASELINES else ""
        out.append(f"| {name}{kind} | {s.macro_f1:.3f} | {_ci(s.macro_f1_ci)} | {s.accuracy:.3f} | "
                   f"{s.log_loss:.3f} | {s.mcc:.3f} | {_ci(s.mcc_ci)} |")
    out += ["", verdict(result), "", "per fold macro-F1 (rows train/val/test):", ""]
    names = list(result.scores)
    out.append("| fold | rows | alpha (bp) | " + " | ".join(names) + " |")
    out.append("|---|---|---|" + "---|" * len(names))
    for f in result.folds:
        alpha = "table" if f.alpha is None else f"{f.alpha * 1e4:.3f}"
        out.append(f"| {f.name} | {f.n_train}/{f.n_val}/{f.n_test} | {alpha} | "
                   + " | ".join(f"{f.macro_f1[n]:.3f}" for n in names) + " |")
    out += ["", "confusion matrices (rows true down/flat/up, columns predicted):", ""]
    for name, s in result.scores.items():
        out.append(f"- {name}: {s.confusion.tolist()}")
    return "\n".join(out) + "\n"


def to_json(result: WalkForwardResult) -> dict[str, Any]:
    """The scores and folds as plain JSON values."""
    return {
        "horizon_s": result.config.horizon_s, "train_folds": result.config.train_folds,
        "seed": result.config.seed,
        "scores": {n: {"n": s.n, "macro_f1": s.macro_f1, "macro_f1_ci": list(s.macro_f1_ci),
                       "accuracy": s.accuracy, "log_loss": s.log_loss, "mcc": s.mcc, "mcc_ci": list(s.mcc_ci),
                       "confusion": s.confusion.tolist(), "blocks": s.blocks}
                   for n, s in result.scores.items()},
        "flat_share": result.config.flat_share,
        "folds": [{"name": f.name, "n_train": f.n_train, "n_val": f.n_val, "n_test": f.n_test,
                   "alpha": f.alpha, "macro_f1": f.macro_f1} for f in result.folds],
    }


def summary(result: WalkForwardResult | None) -> dict[str, Any]:
    """Materialization metadata: the best model, the best baseline, the margin and every score."""
    if result is None:
        return {"status": "not trained: needs an earlier day and this day with enough labelled rows"}
    base, base_f1 = best_baseline(result)
    best = max(result.config.models, key=lambda m: result.scores[m].macro_f1)
    f1 = result.scores[best].macro_f1
    return {"status": "trained", "best_model": best, "macro_f1": round(f1, 4), "best_baseline": base,
            "baseline_macro_f1": round(base_f1, 4), "margin_macro_f1": round(f1 - base_f1, 4),
            "scores": to_json(result)["scores"]}
