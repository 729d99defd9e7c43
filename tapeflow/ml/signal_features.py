"""Signal scores as model features: the detectors' ``signal`` rows summed causally on the decision grid.

A ``signal`` row (``tapeflow.signals``) is known once both its venue time (``ts_event_ns``, when the
evidence completed) and its capture time (``ts_recv_ns``, when the last input of the evidence
arrived) have passed: its **known instant** is ``max(ts_event_ns, ts_recv_ns)``. A window's feature at
decision time ``t`` reads only signal rows whose known instant is ``<= t`` (so their event time is
``<= t`` too), and only those in ``(t - w, t]``:

* ``signal_<kind>_<w>s`` for each kind of :data:`FEATURED_KINDS`: the sum over that kind's rows of
  ``direction * confidence``, ``direction`` the row's ``side`` (+1 bid/buy, -1 ask/sell) or +1 where
  the kind has no side (0: then the column counts calibrated alerts);
* ``signal_any_<w>s``: the sum of every row's ``confidence`` (all kinds, unsigned: alert activity).

Rows of kinds outside :data:`FEATURED_KINDS` (the derivatives and options producers) count in
``signal_any`` only. The sums are prefix-sum differences over rows sorted by known instant, so rows
known after ``t`` never change the feature at ``t`` (``tests/ml/test_signal_features.py``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tapeflow.errors import TapeflowError
from tapeflow.schemas.records import SIGNAL

# the kinds the batch detectors emit (tapeflow.signals.detect.BATCH_NAMES), in a fixed column order
FEATURED_KINDS = ("whale", "spoofing", "iceberg", "hidden", "absorption", "withdrawal", "wall", "spike",
                  "institutional", "creep", "contraction", "stealth")


def signal_feature_names(window_s: int) -> list[str]:
    """The signal columns for a trailing window of ``window_s`` seconds (none when 0)."""
    if window_s <= 0:
        return []
    return [*(f"signal_{k}_{window_s}s" for k in FEATURED_KINDS), f"signal_any_{window_s}s"]


def known_ns(signals: pa.Table) -> np.ndarray:
    """int64[n]: the instant each row is known, ``max(ts_event_ns, ts_recv_ns)``."""
    return np.maximum(signals.column("ts_event_ns").to_numpy(), signals.column("ts_recv_ns").to_numpy())


def signal_features(grid_ns: np.ndarray, signals: pa.Table | None, window_s: int) -> dict[str, np.ndarray]:
    """float64 columns of :func:`signal_feature_names` on ``grid_ns`` from one instrument's ``signal`` rows.

    Args:
        grid_ns: int64[n] decision instants, increasing.
        signals: ``signal`` rows of the instrument (any order; None or empty: every column 0).
        window_s: trailing window in seconds (> 0).

    Raises:
        TapeflowError: ``signals`` is not a ``signal`` table, or a confidence is not finite.
    """
    if window_s <= 0:
        raise TapeflowError(f"signal window must be positive, got {window_s} s")
    names = signal_feature_names(window_s)
    if signals is None or signals.num_rows == 0:
        return {n: np.zeros(len(grid_ns)) for n in names}
    if not set(SIGNAL.column_names) <= set(signals.schema.names):
        raise TapeflowError("signal features need a signal table (tapeflow.signals rows)")
    conf = signals.column("confidence").to_numpy(zero_copy_only=False).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(conf))
    if len(bad):
        raise TapeflowError(f"signal confidence was {conf[bad[0]]} at row {int(bad[0])}")
    known = known_ns(signals)
    order = np.argsort(known, kind="stable")
    known, conf = known[order], conf[order]
    kind = np.asarray(signals.column("kind").to_pylist(), dtype=object)[order]
    side = signals.column("side").fill_null(0).to_numpy().astype(np.float64)[order]
    direction = np.where(side == 0, 1.0, np.sign(side))
    w_ns = window_s * 1_000_000_000
    out = {n: _window_sums(grid_ns, known, np.where(kind == k, direction * conf, 0.0), w_ns)
           for n, k in zip(names, FEATURED_KINDS, strict=False)}
    out[names[-1]] = _window_sums(grid_ns, known, conf, w_ns)
    return out


def _window_sums(grid: np.ndarray, instants: np.ndarray, values: np.ndarray, window_ns: int) -> np.ndarray:
    prefix = np.concatenate([[0.0], np.cumsum(values)])
    hi = np.searchsorted(instants, grid, side="right")
    lo = np.searchsorted(instants, grid - window_ns, side="right")
    return prefix[hi] - prefix[lo]
