"""A tick-time target: the direction of the next mid-price change (an alternative to fixed-time labels).

On a one-tick instrument most fixed-time windows see no mid change at all (LOBSTER AMZN: 96.8% of
the 10 s windows are flat at any ``alpha``), so a fixed-time label is mostly "flat". The tick-time
target asks what the next move will be instead: at decision time ``t``, the sign of the first change
of the mid between two consecutive grid rows after ``t`` (rows in ``(t, t + within_s]``): 2 up,
0 down, 1 flat when the mid does not change within ``within_s`` (so the label is known at
``t + within_s``, which the walk-forward's purge uses as the horizon). The persistence baseline's
input (``past_label``) becomes the sign of the last change at or before ``t`` within the same span
(``tapeflow.ml.dataset.last_mid_move``), the ``past_label`` model input likewise.

A spread-scaled threshold (round s27, for the raw-book model on AMZN, whose 12-tick median spread makes
a fixed 0.2 bp threshold a half-tick flicker): the FI-2010 label with ``alpha_t = k * spread_t /
mid_t`` (the row's own relative spread, known at ``t``) instead of one ``alpha``;
:func:`fit_spread_scale` picks ``k`` on training rows only so a share of them is flat.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tapeflow.errors import TapeflowError
from tapeflow.ml.dataset import Segment, last_mid_move
from tapeflow.ml.examples import SECOND_NS


def next_move(ts_ns: np.ndarray, mid: np.ndarray, within_s: int) -> tuple[np.ndarray, np.ndarray]:
    """``(classes int64[n], relative move float64[n])`` of the first mid change in ``(t, t + within_s]``.

    Classes 0 down, 1 flat (no change in the span), 2 up, -1 where unknown: ``mid_t`` undefined, or
    no change yet and the span reaches past the last row. The move is ``mid_after / mid_before - 1``
    of that change (0 when flat, NaN when unknown).
    """
    n = len(ts_ns)
    y = np.full(n, -1, np.int64)
    move = np.full(n, np.nan)
    if n < 2:
        return y, move
    with np.errstate(invalid="ignore", divide="ignore"):
        step = mid[1:] / mid[:-1] - 1.0
    changed = np.isfinite(step) & (step != 0)
    # for each row i, the first j >= i with a change between rows j and j + 1
    idx = np.where(changed, np.arange(n - 1), n)
    nxt = np.minimum.accumulate(idx[::-1])[::-1]
    nxt = np.r_[nxt, n]
    when = np.where(nxt < n - 1, ts_ns[np.minimum(nxt + 1, n - 1)], np.iinfo(np.int64).max)
    horizon = ts_ns + within_s * SECOND_NS
    hit = when <= horizon
    flat = ~hit & (horizon <= ts_ns[-1])
    sign = np.sign(step[np.minimum(nxt, n - 2)])
    defined = np.isfinite(mid)
    y = np.where(defined & hit, np.where(sign > 0, 2, 0), np.where(defined & flat, 1, -1)).astype(np.int64)
    move = np.where(defined & hit, step[np.minimum(nxt, n - 2)], np.where(defined & flat, 0.0, np.nan))
    return y, move


def next_move_segment(examples: pa.Table, base: Segment, within_s: int) -> Segment:
    """``base`` (a segment of ``examples``, any horizon) with the tick-time target of :func:`next_move`.

    Raises:
        TapeflowError: ``base`` is not a segment of these examples.
    """
    ts = examples.column("ts_event_ns").to_numpy()
    if len(ts) != len(base.ts_ns) or not np.array_equal(ts, base.ts_ns):
        raise TapeflowError("next_move_segment needs the segment built from these examples")
    mid = examples.column("mid_price_nanos").to_numpy(zero_copy_only=False).astype(np.float64)
    y, move = next_move(ts, mid, within_s)
    last, _ = last_mid_move(ts, mid, within_s)
    past = (last + 1).astype(np.int64)
    x = base.x.copy()
    x[:, -1] = last
    usable = (examples.column("warmed_up").to_numpy(zero_copy_only=False).astype(bool)
              & examples.column("two_sided").to_numpy(zero_copy_only=False).astype(bool) & (y >= 0))
    return Segment(base.name, ts, x, y, move, past, usable, base.book)  # deeplob reads the book too


def fit_spread_scale(seg: Segment, spread_col: int, flat_share: float) -> float:
    """``k`` such that ``flat_share`` of ``seg``'s usable rows have ``|smoothed return| <= k * spread /
    mid`` (``spread_col``: the ``spread_bps`` column of ``seg.x``). Fit it on training rows only.

    Raises:
        TapeflowError: no usable row with a finite ratio, or ``flat_share`` outside ``(0, 1)``.
    """
    if not 0.0 < flat_share < 1.0:
        raise TapeflowError(f"flat_share must lie in (0, 1), got {flat_share}")
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(seg.smoothed_return) / (seg.x[:, spread_col] / 1e4)
    ratio = ratio[seg.usable & np.isfinite(ratio)]
    if not len(ratio):
        raise TapeflowError(f"{seg.name}: no usable row to fit the spread scale on")
    return float(np.quantile(ratio, flat_share))


def spread_scaled_segment(seg: Segment, spread_col: int, k: float, horizon_s: int) -> Segment:
    """``seg`` relabelled at ``alpha_t = k * spread_bps_t / 1e4`` (labels, past labels and the
    ``past_label`` input, :meth:`Segment.relabel`; rows without a spread are flat there, and they are
    not usable: one-sided)."""
    return seg.relabel(k * seg.x[:, spread_col] / 1e4, horizon_s)  # type: ignore[arg-type]
