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

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tapeflow.errors import TapeflowError
from tapeflow.ml.examples import SECOND_NS, ExampleParams

CLIP_SIGMA = 5.0


def model_features(p: ExampleParams) -> list[str]:
    """Model input columns, in matrix order."""
    return ["spread_bps", "microprice_offset_bps", "imbalance_l1", f"imbalance_l{p.levels}",
            *(f"ofi_{w}s" for w in p.ofi_windows_s), f"realized_vol_{p.vol_window_s}s",
            *(f"trade_flow_{w}s" for w in p.flow_windows_s), *(f"past_return_{h}s" for h in p.horizons_s),
            "past_label"]


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

    def slice(self, lo: int, hi: int, name: str) -> Segment:
        """Rows ``[lo, hi)`` as a segment of its own."""
        return Segment(name, *(a[lo:hi] for a in (self.ts_ns, self.x, self.y, self.smoothed_return,
                                                  self.past_label, self.usable)))


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
    for name_ in model_features(p)[2:-1]:
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
    back = np.searchsorted(ts, ts - horizon_s * SECOND_NS)
    back_c = np.minimum(back, len(ts) - 1)
    exact = (back < len(ts)) & (ts[back_c] == ts - horizon_s * SECOND_NS)
    past = np.where(exact, y[back_c], -1)
    feats["past_label"] = np.where(past >= 0, past - 1, 0).astype(np.float64)
    x = np.stack([feats[n] for n in model_features(p)], axis=1).astype(np.float64)
    usable = col["warmed_up"].astype(bool) & col["two_sided"].astype(bool) & present
    return Segment(name, ts, x, y, col[f"smoothed_return_{horizon_s}s"].astype(np.float64), past, usable)


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


def windows(z: np.ndarray, rows: np.ndarray, steps: int) -> np.ndarray:
    """float32[len(rows), steps, F]: rows ``r - steps + 1 .. r`` of ``z``; before the segment's first
    row the first row repeats (the warm-up filter keeps picked rows far from it)."""
    idx = rows[:, None] + np.arange(-steps + 1, 1)[None, :]
    return z[np.maximum(idx, 0)]
