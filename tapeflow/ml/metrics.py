"""Classification metrics for the up/flat/down labels, with bootstrap intervals over time blocks.

Classes are ``0..K-1`` (``tapeflow.ml.dataset`` maps down/flat/up = -1/0/1 to 0/1/2). Intervals
resample whole blocks (hours by default) with replacement, because neighbouring 1 s examples share
most of their label windows: resampling rows would pretend to far more independent evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOUR_NS = 3_600_000_000_000
PROBA_FLOOR = 1e-15


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """int64[K, K]: row = true class, column = predicted class."""
    return np.bincount(y_true.astype(np.int64) * n_classes + y_pred.astype(np.int64),
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean over classes of ``2 tp / (2 tp + fp + fn)``; a class never true nor predicted
    scores 0 (sklearn's ``zero_division=0``), so predicting one class everywhere is punished."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


def accuracy(cm: np.ndarray) -> float:
    """Share of rows on the diagonal (NaN without rows)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def matthews(cm: np.ndarray) -> float:
    """Multiclass Matthews correlation (Gorodkin 2004), 0 where it is undefined (one class only)."""
    c = cm.astype(np.float64)
    s, correct = c.sum(), np.trace(c)
    t, p = c.sum(1), c.sum(0)
    num = correct * s - t @ p
    den = np.sqrt(s * s - p @ p) * np.sqrt(s * s - t @ t)
    return float(num / den) if den > 0 else 0.0


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean ``-log p[y]`` with probabilities floored at 1e-15 (as sklearn clips)."""
    if len(y_true) == 0:
        return float("nan")
    picked = proba[np.arange(len(y_true)), y_true.astype(np.int64)]
    return float(-np.mean(np.log(np.maximum(picked, PROBA_FLOOR))))


@dataclass(frozen=True)
class Scores:
    """One model's out-of-sample scores; ``*_ci`` are 95% bootstrap intervals over time blocks."""

    n: int
    macro_f1: float
    accuracy: float
    log_loss: float
    mcc: float
    confusion: np.ndarray
    macro_f1_ci: tuple[float, float]
    mcc_ci: tuple[float, float]
    blocks: int


def score(y_true: np.ndarray, proba: np.ndarray, ts_ns: np.ndarray, *, block_ns: int = HOUR_NS,
          n_boot: int = 500, seed: int = 0, pred: np.ndarray | None = None) -> Scores:
    """Every metric of one model over its test rows.

    Args:
        y_true: int[n] true classes.
        proba: float[n, K] predicted probabilities (log loss).
        ts_ns: int64[n] decision times; rows are grouped into ``block_ns`` blocks for the intervals.
        block_ns: bootstrap block length (1 hour by default).
        n_boot: bootstrap resamples.
        seed: the resampling generator's seed.
        pred: int[n] hard predictions; their argmax of ``proba`` when None (a baseline's rule
            predicts on its own).
    """
    k = proba.shape[1]
    pred = proba.argmax(1) if pred is None else pred
    cm = confusion(y_true, pred, k)
    block = ts_ns // block_ns
    ids, inverse = np.unique(block, return_inverse=True)
    # per-block confusion matrices: a resample is a sum of them, no row-level work per draw
    per = np.zeros((len(ids), k, k), np.int64)
    np.add.at(per, (inverse, y_true.astype(np.int64), pred), 1)
    rng = np.random.default_rng(seed)
    f1s, mccs = [], []
    if len(ids) > 1:
        for _ in range(n_boot):
            pick = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))
            boot = np.tensordot(pick, per, axes=1)
            f1s.append(macro_f1(boot))
            mccs.append(matthews(boot))

    def interval(xs: list[float]) -> tuple[float, float]:
        if not xs:
            return float("nan"), float("nan")
        lo, hi = np.percentile(xs, [2.5, 97.5])
        return float(lo), float(hi)

    return Scores(len(y_true), macro_f1(cm), accuracy(cm), log_loss(y_true, proba), matthews(cm), cm,
                  interval(f1s), interval(mccs), len(ids))
