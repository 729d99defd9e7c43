"""From ``training_examples`` tables to model inputs: causal transforms, standardization, windows.

A ``Segment`` is one contiguous stretch of the decision grid (one instrument-day, or one hour of it
when a walk-forward runs by hour). Its feature matrix keeps every grid row, so the temporal model's
window ``[t - T + 1, t]`` is always the previous grid rows of the same segment; rows are only
filtered (warmed up, two-sided book, label present) when examples are picked.

Model inputs (``MODEL_FEATURES``): the examples' features except the raw mid price (not stationary
across days), with the spread and microprice offset in basis points of the mid, order-flow and trade
flow through ``sign(x) log1p(|x|)`` (heavy tails), the past mid returns over each label horizon
(``mid_t / mid_{t-h} - 1``, known at ``t``) and ``past_label``: the label the last horizon earned
(the window ``(t - h, t]``, complete at ``t``; what the last-move baseline predicts). Standardization
uses the training rows only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tapeflow.errors import TapeflowError
from tapeflow.ml.book_inputs import book_input_names
from tapeflow.ml.examples import SECOND_NS, ExampleParams
from tapeflow.ml.signal_features import signal_feature_names

CLIP_SIGMA = 5.0


def model_features(p: ExampleParams) -> list[str]:
    """Model input columns, in matrix order."""
    return ["spread_bps", "microprice_offset_bps", "imbalance_l1", f"imbalance_l{p.levels}",
            *(f"ofi_{w}s" for w in p.ofi_windows_s), f"realized_vol_{p.vol_window_s}s",
            *(f"trade_flow_{w}s" for w in p.flow_windows_s), *signal_feature_names(p.signal_window_s),
            *(f"past_return_{h}s" for h in p.horizons_s),
            "last_mid_move", "last_mid_move_age_s", "past_smoothed_return", "past_label"]


def _slog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def past_returns(ts_ns: np.ndarray, mid: np.ndarray, horizon_s: int) -> np.ndarray:
    """``mid_t / mid_{t-h} - 1`` where the grid has a row exactly at ``t - h`` with a mid, else 0."""
    at = np.searchsorted(ts_ns, ts_ns - horizon_s * SECOND_NS)
    at_c = np.minimum(at, len(ts_ns) - 1)
    exact = (at < len(ts_ns)) & (ts_ns[at_c] == ts_ns - horizon_s * SECOND_NS)
    ok = exact & ~np.isnan(mid[at_c]) & ~np.isnan(mid)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, mid / mid[at_c] - 1.0, 0.0)


def last_mid_move(ts_ns: np.ndarray, mid: np.ndarray, window_s: int) -> tuple[np.ndarray, np.ndarray]:
    """The sign of the last mid change in ``(t - window_s, t]`` (between two consecutive grid rows with a
    mid) and its age ``log1p(seconds since)``; ``(0, log1p(window_s))`` when the mid did not change in
    the window. Reads rows in ``[t - window_s, t]`` only (so the live scorer's buffer suffices)."""
    n = len(mid)
    step = np.zeros(n)
    if n > 1:
        with np.errstate(invalid="ignore"):
            d = mid[1:] - mid[:-1]
        step[1:] = np.where(np.isnan(d), 0.0, np.sign(d))
    moved = step != 0
    last = np.maximum.accumulate(np.where(moved, np.arange(n), -1)) if n else np.zeros(0, np.int64)
    age = (ts_ns - ts_ns[np.maximum(last, 0)]) / SECOND_NS
    seen = (last >= 0) & (age < window_s)
    sign = np.where(seen, step[np.maximum(last, 0)], 0.0)
    return sign, np.log1p(np.where(seen, age, float(window_s)))


def classes(smoothed: np.ndarray, alpha: float) -> np.ndarray:
    """int64 classes of FI-2010 labels: 0 down (``< -alpha``), 1 flat, 2 up (``> alpha``), -1 where the
    smoothed return is NaN (no label); the rule ``training_examples`` writes ``label_<h>s`` with."""
    with np.errstate(invalid="ignore"):
        y = np.where(smoothed > alpha, 2, np.where(smoothed < -alpha, 0, 1))
    return np.where(np.isnan(smoothed), -1, y).astype(np.int64)


def past_labels(ts_ns: np.ndarray, y: np.ndarray, horizon_s: int) -> np.ndarray:
    """int64[n]: the class of the row exactly ``h`` earlier (its window ``(t - h, t]`` is complete at
    ``t``), -1 where that row is missing or unlabelled."""
    back = past_values(ts_ns, y.astype(np.float64), horizon_s)
    return np.where(np.isnan(back), -1, back).astype(np.int64)


def past_values(ts_ns: np.ndarray, values: np.ndarray, horizon_s: int) -> np.ndarray:
    """float64[n]: ``values`` of the row exactly ``h`` earlier (for the smoothed return: its window
    ``(t - h, t]`` is complete at ``t``), NaN where that row is missing."""
    back = np.searchsorted(ts_ns, ts_ns - horizon_s * SECOND_NS)
    back_c = np.minimum(back, len(ts_ns) - 1)
    exact = (back < len(ts_ns)) & (ts_ns[back_c] == ts_ns - horizon_s * SECOND_NS)
    return np.where(exact, values[back_c], np.nan)


def fit_alpha(smoothed_train: np.ndarray, flat_share: float) -> float:
    """The stationary threshold that makes ``flat_share`` of the training rows flat: the
    ``flat_share`` quantile of ``|smoothed return|`` over the (finite) training rows only (FI-2010 sets
    one per horizon so the classes are balanced-ish; 1/3 balances them when up and down are symmetric).

    Raises:
        TapeflowError: no finite training return, or ``flat_share`` outside ``(0, 1)``.
    """
    if not 0.0 < flat_share < 1.0:
        raise TapeflowError(f"flat_share must lie in (0, 1), got {flat_share}")
    r = np.abs(smoothed_train[np.isfinite(smoothed_train)])
    if not len(r):
        raise TapeflowError("no finite training return to choose alpha from")
    return float(np.quantile(r, flat_share))


@dataclass(frozen=True)
class Segment:
    """One contiguous stretch of one instrument's grid, ready for models.

    ``x`` float64[n, F] raw (untransformed scale, NaN where undefined); ``y`` int64[n] classes 0 down,
    1 flat, 2 up, -1 absent; ``usable`` bool[n]: warmed up, two-sided, label present.
    """

    name: str
    ts_ns: np.ndarray
    x: np.ndarray
    y: np.ndarray
    smoothed_return: np.ndarray
    past_label: np.ndarray  # int64[n]: the label the window (t - h, t] earned, -1 where unknown
    usable: np.ndarray
    book: np.ndarray | None = None  # float64[n, B]: raw book-level inputs (ExampleParams.book_levels)

    def slice(self, lo: int, hi: int, name: str) -> Segment:
        """Rows ``[lo, hi)`` as a segment of its own."""
        return Segment(name, *(a[lo:hi] for a in (self.ts_ns, self.x, self.y, self.smoothed_return,
                                                  self.past_label, self.usable)),
                       None if self.book is None else self.book[lo:hi])

    def relabel(self, alpha: float, horizon_s: int) -> Segment:
        """The same rows with labels at threshold ``alpha``: ``y``, ``past_label`` and the ``past_label``
        input (the last column) recomputed from the smoothed returns; features are untouched."""
        y = np.where(self.y >= 0, classes(self.smoothed_return, alpha), -1)
        past = past_labels(self.ts_ns, y, horizon_s)
        x = self.x.copy()
        x[:, -1] = np.where(past >= 0, past - 1, 0)
        return Segment(self.name, self.ts_ns, x, y, self.smoothed_return, past, self.usable, self.book)


def segment(examples: pa.Table, horizon_s: int, p: ExampleParams, name: str) -> Segment:
    """Model inputs of one ``training_examples`` table for the label at ``horizon_s``.

    Raises:
        TapeflowError: the horizon is not one of the table's label horizons.
    """
    if f"label_{horizon_s}s" not in examples.schema.names:
        raise TapeflowError(f"no label at horizon {horizon_s} s in the examples (have {p.horizons_s})")
    col = {n: examples.column(n).to_numpy(zero_copy_only=False) for n in examples.schema.names}
    ts, mid = col["ts_event_ns"], col["mid_price_nanos"]
    with np.errstate(invalid="ignore", divide="ignore"):
        feats = {
            "spread_bps": col["spread_nanos"] / mid * 1e4,
            "microprice_offset_bps": col["microprice_minus_mid_nanos"] / mid * 1e4,
        }
    feats["last_mid_move"], feats["last_mid_move_age_s"] = last_mid_move(ts, mid, p.vol_window_s)
    for name_ in model_features(p)[2:-4]:
        if name_.startswith("past_return_"):
            feats[name_] = past_returns(ts, mid, int(name_[len("past_return_"):-1]))
        elif name_.startswith(("ofi_", "trade_flow_")):
            feats[name_] = _slog(col[name_])
        else:
            feats[name_] = col[name_]
    label = col[f"label_{horizon_s}s"]
    present = ~np.isnan(label.astype(np.float64))
    y = np.where(present, np.nan_to_num(label.astype(np.float64)) + 1, -1).astype(np.int64)
    # the label of the row at t - h covers exactly (t - h, t]: known at t
    past = past_labels(ts, y, horizon_s)
    smoothed = col[f"smoothed_return_{horizon_s}s"].astype(np.float64)
    feats["past_smoothed_return"] = past_values(ts, smoothed, horizon_s)
    feats["past_label"] = np.where(past >= 0, past - 1, 0).astype(np.float64)
    x = np.stack([feats[n] for n in model_features(p)], axis=1).astype(np.float64)
    usable = col["warmed_up"].astype(bool) & col["two_sided"].astype(bool) & present
    book = None
    if p.book_levels:
        book = np.stack([col[n].astype(np.float64) for n in book_input_names(p.book_levels)], axis=1)
    return Segment(name, ts, x, y, smoothed, past, usable, book)


def split_by(seg: Segment, fold_ns: int) -> list[Segment]:
    """Cut a segment at multiples of ``fold_ns`` (UTC); empty pieces are dropped."""
    block = seg.ts_ns // fold_ns
    cuts = np.flatnonzero(np.diff(block)) + 1
    edges = [0, *cuts.tolist(), len(block)]
    pairs = zip(edges[:-1], edges[1:], strict=True)
    return [seg.slice(lo, hi, f"{seg.name}#{int(block[lo])}") for lo, hi in pairs if hi > lo]


@dataclass(frozen=True)
class Scaler:
    """Training-rows mean and standard deviation per feature."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        """Fit on the training rows (NaN ignored; a constant feature gets std 1)."""
        mean = np.nan_to_num(np.nanmean(x, axis=0)) if len(x) else np.zeros(x.shape[1])
        std = np.nan_to_num(np.nanstd(x, axis=0)) if len(x) else np.ones(x.shape[1])
        return cls(mean, np.where(std > 0, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """z-scores clipped to +-5 sigma, NaN -> 0 (the training mean); float32."""
        z = np.nan_to_num((x - self.mean) / self.std, nan=0.0)
        return np.clip(z, -CLIP_SIGMA, CLIP_SIGMA).astype(np.float32)


def book_block(segs: Sequence[Segment], kind: str = "deeplob") -> list[np.ndarray]:
    """The raw book-level inputs of each segment, for a model ``kind`` that reads them.

    Raises:
        TapeflowError: a segment was built from examples without them (``ExampleParams.book_levels`` 0).
    """
    missing = [s.name for s in segs if s.book is None]
    if missing:
        raise TapeflowError(f"the {kind} model reads raw book levels: build the examples with "
                            f"ExampleParams(book_levels=L) (none in {missing[0]})")
    return [s.book for s in segs]  # type: ignore[misc]


def windows(z: np.ndarray, rows: np.ndarray, steps: int) -> np.ndarray:
    """float32[len(rows), steps, F]: rows ``r - steps + 1 .. r`` of ``z``; before the segment's first
    row the first row repeats (the warm-up filter keeps picked rows far from it)."""
    idx = rows[:, None] + np.arange(-steps + 1, 1)[None, :]
    return z[np.maximum(idx, 0)]
