"""The refractory step of the condition-based detectors (absorption, creep, contraction)."""

from __future__ import annotations

import numpy as np


def one_per_run(ok: np.ndarray, ts: np.ndarray, refractory_ns: int) -> np.ndarray:
    """Rows that open an alert: per run of rows where ``ok`` holds, the first at least
    ``refractory_ns`` after the last alert (a condition that holds on past a refractory period
    started by an earlier run still alerts once; a run alerts at most once)."""
    rows = np.flatnonzero(ok)
    if not len(rows):
        return rows
    run = np.cumsum(np.r_[True, np.diff(rows) > 1])
    keep, last, done = [], None, 0
    for i, r in enumerate(rows.tolist()):
        if run[i] == done:
            continue
        if last is None or ts[r] - last >= refractory_ns:
            keep.append(r)
            last, done = int(ts[r]), int(run[i])
    return np.asarray(keep, np.int64)
