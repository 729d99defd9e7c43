"""Drift checks that ask for retraining: feature PSI and live performance decay.

* **Feature PSI** (population stability index): per model input, the recent window's rows are binned
  at the training window's deciles and ``PSI = sum_b (a_b - e_b) ln(a_b / e_b)`` over bins (shares
  floored at 1e-4 so an empty bin stays finite). The usual reading: below 0.1 stable, 0.1-0.25 a
  moderate shift, above 0.25 a major one; :data:`PSI_THRESHOLD` is 0.25 on the worst feature.
* **Performance decay**: the champion's live ``prediction`` rows joined with the labels that later
  became known; a live macro-F1 more than :data:`MAX_F1_DROP` (0.10) below the champion's held-out
  macro-F1 decays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import TapeflowError
from tapeflow.ml.book_inputs import book_input_names
from tapeflow.ml.dataset import Segment, classes, model_features, segment
from tapeflow.ml.metrics import confusion, macro_f1
from tapeflow.schemas.ml import NO_LABEL

if TYPE_CHECKING:
    from tapeflow.ml.artifact import ModelArtifact

PSI_THRESHOLD = 0.25
MAX_F1_DROP = 0.10
BINS = 10
SHARE_FLOOR = 1e-4
MIN_ROWS = 120  # fewer usable rows than two minutes of the grid: no verdict


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = BINS) -> float:
    """PSI of ``actual`` against ``expected`` (1-D, NaN ignored), bins at ``expected``'s quantiles.

    A discrete feature gets one bin per distinct decile edge, so a constant one scores 0.
    """
    e = expected[~np.isnan(expected)]
    a = actual[~np.isnan(actual)]
    if not len(e) or not len(a):
        return 0.0
    edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    e_share = np.bincount(np.searchsorted(edges, e, side="right"), minlength=len(edges) + 1) / len(e)
    a_share = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1) / len(a)
    e_share, a_share = np.maximum(e_share, SHARE_FLOOR), np.maximum(a_share, SHARE_FLOOR)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


@dataclass(frozen=True)
class DriftReport:
    """PSI per feature of the recent window against the training window, and the verdict."""

    psi: dict[str, float]
    threshold: float
    train_rows: int
    recent_rows: int

    @property
    def worst(self) -> tuple[str, float]:
        """The feature with the highest PSI and its value."""
        name = max(self.psi, key=lambda n: self.psi[n])
        return name, self.psi[name]

    @property
    def drifted(self) -> bool:
        """The worst feature's PSI is above the threshold (and both windows have enough rows)."""
        enough = self.train_rows >= MIN_ROWS and self.recent_rows >= MIN_ROWS
        return enough and self.worst[1] > self.threshold


def _usable_x(segs: Sequence[Segment]) -> np.ndarray:
    parts = [s.x[s.usable] for s in segs]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def feature_drift(train: Sequence[Segment], recent: Sequence[Segment], names: Sequence[str],
                  threshold: float = PSI_THRESHOLD) -> DriftReport:
    """PSI of every model input (``names``, the columns of ``Segment.x``) over the usable rows."""
    xt, xr = _usable_x(train), _usable_x(recent)
    values = {n: round(psi(xt[:, i], xr[:, i]), 4) if len(xt) and len(xr) else 0.0
              for i, n in enumerate(names)}
    return DriftReport(values, threshold, len(xt), len(xr))


def drift_check(champion: ModelArtifact, train: Sequence[pa.Table], recent: Sequence[pa.Table],
                threshold: float = PSI_THRESHOLD) -> DriftReport:
    """Feature PSI of the ``recent`` examples against the champion's training days ``train``, over
    the inputs the champion reads: the engineered model inputs, and for a champion that reads raw book
    levels (``deeplob``: ``params.book_levels`` > 0) those too, per level and side the distance from
    the mid in ticks and ``log1p`` of the size, and the mid's change in ticks
    (``tapeflow.ml.book_inputs``; the tables must then hold them: ``tapeflow.ml.rows.lake_examples``
    with the champion's ``params`` joins them from the lake's ``book_snapshot`` rows).

    Raises:
        TapeflowError: a book-level champion's tables lack the raw book inputs.
    """
    p, h = champion.params, champion.horizon_s
    names = [*model_features(p), *book_input_names(p.book_levels)]
    missing = [n for n in book_input_names(p.book_levels)
               if any(n not in t.schema.names for t in [*train, *recent] if t.num_rows)]
    if missing:
        raise TapeflowError(f"the champion reads {len(book_input_names(p.book_levels))} raw book inputs "
                            f"({missing[0]}, ...) the examples lack: build them with its params "
                            "(tapeflow.ml.rows.lake_examples joins them from book_snapshots)")

    def segs(tables: Sequence[pa.Table], name: str) -> list[Segment]:
        out = [segment(t, h, p, name) for t in tables if t.num_rows]
        return [replace(s, x=np.hstack([s.x, s.book])) if s.book is not None else s for s in out]

    return feature_drift(segs(train, "train"), segs(recent, "recent"), names, threshold)


@dataclass(frozen=True)
class Decay:
    """The champion's live macro-F1 against its held-out one."""

    live_f1: float
    reference_f1: float
    rows: int
    max_drop: float

    @property
    def decayed(self) -> bool:
        """Enough labelled live rows and a drop of more than ``max_drop``."""
        return self.rows >= MIN_ROWS and self.reference_f1 - self.live_f1 > self.max_drop


def performance_decay(y_true: np.ndarray, pred: np.ndarray, reference_f1: float,
                      max_drop: float = MAX_F1_DROP) -> Decay:
    """Live macro-F1 of ``pred`` (classes 0..2) against the labels ``y_true`` that became known."""
    f1 = macro_f1(confusion(y_true, pred)) if len(y_true) else float("nan")
    return Decay(f1, reference_f1, len(y_true), max_drop)


def live_decay(predictions: pa.Table, examples: pa.Table, version: int, horizon_s: int, reference_f1: float,
               max_drop: float = MAX_F1_DROP, alpha: float | None = None) -> Decay:
    """:func:`performance_decay` of one version's ``prediction`` rows against the labels of the same
    grid instants in the day's ``training_example`` rows (rows whose label is not known are left out);
    ``alpha``: the model's own label threshold (``ModelArtifact.label_alpha``), the labels recomputed
    from the smoothed returns at it."""
    mine = predictions.filter(pc.and_(pc.equal(predictions.column("model_version"), version),
                                      pc.equal(predictions.column("horizon_s"), horizon_s)))
    smoothed_col = [f"smoothed_return_{horizon_s}s"] if alpha is not None else []
    label = examples.select(["ts_event_ns", f"label_{horizon_s}s", *smoothed_col])
    joined = mine.select(["ts_event_ns", "predicted"]).join(label, "ts_event_ns", join_type="inner")
    y = joined.column(f"label_{horizon_s}s").to_numpy(zero_copy_only=False)
    if alpha is not None:
        smoothed = joined.column(f"smoothed_return_{horizon_s}s").to_numpy(zero_copy_only=False)
        y = np.where(y != NO_LABEL, classes(smoothed.astype(np.float64), alpha) - 1, NO_LABEL)
    pred = joined.column("predicted").to_numpy(zero_copy_only=False)
    known = y != NO_LABEL
    return performance_decay(y[known].astype(np.int64) + 1, pred[known].astype(np.int64) + 1, reference_f1,
                             max_drop)
