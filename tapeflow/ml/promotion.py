"""The promotion rule: a challenger replaces the champion only if it beats it on the same held-out
window by a stated margin.

Both models score the same held-out rows (a day neither was trained on). The difference in macro-F1
(challenger minus champion) gets a 95% interval from a *paired* block bootstrap: each resample draws
whole time blocks (1 h by default, as every interval in ``tapeflow.ml.metrics``) and scores both
models on the same draw, so the interval is that of the difference, not of two separate scores. The
challenger is promoted when

* there is no champion yet (``no_champion``); or
* the difference is at least ``margin`` (default 0.01 macro-F1) **and** the lower end of its interval
  is above 0 (``beats_champion``).

Otherwise it stays a registered, non-promoted version: ``within_margin`` (difference below the
margin), ``not_significant`` (difference at least the margin, interval reaching 0) or
``champion_unscored``: the champion could not be scored on the held-out window (its inputs could not
be rebuilt there; ``detail`` says why). A challenger is never promoted over a champion it was not
compared with (before s27 a champion of another feature schema was replaced unseen,
``schema_changed``; registry versions of that time still carry that decision).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tapeflow.ml.metrics import HOUR_NS, macro_f1

DEFAULT_MARGIN = 0.01
REASONS = ("no_champion", "beats_champion", "within_margin", "not_significant", "champion_unscored")


@dataclass(frozen=True)
class Comparison:
    """Challenger vs champion on one held-out window, and the decision."""

    promote: bool
    reason: str                       # one of REASONS
    margin: float
    n: int = 0
    blocks: int = 0
    challenger_f1: float = float("nan")
    champion_f1: float = float("nan")
    delta: float = float("nan")       # challenger - champion macro-F1
    delta_ci: tuple[float, float] = (float("nan"), float("nan"))
    challenger_ci: tuple[float, float] = (float("nan"), float("nan"))
    champion_ci: tuple[float, float] = (float("nan"), float("nan"))
    detail: str = ""                  # champion_unscored: why the champion could not be scored

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (rounded) for metadata and registry tags."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, float):
                out[k] = round(v, 4) if v == v else None
            elif isinstance(v, tuple):
                out[k] = [round(x, 4) if x == x else None for x in v]
        if not self.detail:
            del out["detail"]
        return out


def without_champion(reason: str, margin: float = DEFAULT_MARGIN, challenger_f1: float = float("nan")
                     ) -> Comparison:
    """The decision when there is no champion to compare with (``no_champion``): promote."""
    if reason != "no_champion":
        raise ValueError(f"reason {reason!r} needs a comparison (only no_champion promotes without one)")
    return Comparison(True, reason, margin, challenger_f1=challenger_f1)


def unscored(detail: str, margin: float = DEFAULT_MARGIN, challenger_f1: float = float("nan")) -> Comparison:
    """The decision when the champion cannot be scored on the held-out window: keep it (the challenger
    is registered, not promoted), saying why in ``detail``."""
    return Comparison(False, "champion_unscored", margin, challenger_f1=challenger_f1, detail=detail)


def _interval(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    lo, hi = np.percentile(xs, [2.5, 97.5])
    return float(lo), float(hi)


def compare(y_true: np.ndarray, challenger: np.ndarray, champion: np.ndarray, ts_ns: np.ndarray, *,
            margin: float = DEFAULT_MARGIN, block_ns: int = HOUR_NS, n_boot: int = 500,
            seed: int = 0) -> Comparison:
    """Apply the rule to two models' class predictions on the same held-out rows.

    Args:
        y_true: int[n] true classes 0..2.
        challenger: int[n] the challenger's classes.
        champion: int[n] the champion's classes.
        ts_ns: int64[n] decision times (bootstrap blocks of ``block_ns``).
        margin: the macro-F1 difference the challenger must reach.
        block_ns: bootstrap block length.
        n_boot: resamples.
        seed: the resampling generator's seed.
    """
    if not (len(y_true) == len(challenger) == len(champion) == len(ts_ns)):
        raise ValueError("y_true, challenger, champion and ts_ns need one entry per held-out row")
    k = 3
    ids, inverse = np.unique(ts_ns // block_ns, return_inverse=True)
    per = np.zeros((2, len(ids), k, k), np.int64)
    for m, pred in enumerate((challenger, champion)):
        np.add.at(per[m], (inverse, y_true.astype(np.int64), pred.astype(np.int64)), 1)
    f1_c, f1_k = macro_f1(per[0].sum(0)), macro_f1(per[1].sum(0))
    rng = np.random.default_rng(seed)
    deltas, cs, ks = [], [], []
    if len(ids) > 1:
        for _ in range(n_boot):
            pick = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))
            a, b = macro_f1(np.tensordot(pick, per[0], axes=1)), macro_f1(np.tensordot(pick, per[1], axes=1))
            deltas.append(a - b)
            cs.append(a)
            ks.append(b)
    delta = f1_c - f1_k
    lo_hi = _interval(deltas)
    if delta < margin:
        promote, reason = False, "within_margin"
    elif not lo_hi[0] > 0:  # NaN (a single block: no interval) is not evidence either
        promote, reason = False, "not_significant"
    else:
        promote, reason = True, "beats_champion"
    return Comparison(promote, reason, margin, len(y_true), len(ids), f1_c, f1_k, delta, lo_hi,
                      _interval(cs), _interval(ks))

