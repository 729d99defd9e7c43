"""Open-interest change on an instrument's grid (the ``open_interest_change`` record): schema, keys,
open interest range, the change and percentage recomputed exactly, the change against the row one
window earlier, grid order, day."""

from __future__ import annotations

import numpy as np

from quality import checks, derive
from quality.checks import SuiteData
from quality.suites.derivative_basis import grid_order
from tapeflow.schemas.derivatives import OPEN_INTEREST_CHANGE
from tapeflow.schemas.records import UNDEF_PRICE

RECORD = OPEN_INTEREST_CHANGE
CHECKS = ("schema", "not_null_keys", "size_range", "change_formula", "change_vs_rows", "grid_order",
          "ts_within_day")


def plan(d: SuiteData) -> None:
    """Plan the open-interest-change checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d, ("interval", "window_ns"))
    oi, change, pct = d.col("open_interest_nanos"), d.col("change_nanos"), d.col("change_pct")
    window = d.col("window_ns")
    checks.size_range(d, {"open_interest_nanos": (oi, oi != UNDEF_PRICE, 0)})
    has_oi, has_ch = oi != UNDEF_PRICE, change != UNDEF_PRICE
    # the start of the window is the row's OI less its change (exact int64), the percentage that
    # start's ratio with the derivation's float operations: equal bit for bit
    then = np.where(has_ch, oi - np.where(has_ch, change, 0), 0)
    pct_ok = has_ch & (then != 0)
    want = np.where(pct_ok, np.where(has_ch, change, 0) / np.where(pct_ok, then, 1) * 100.0, np.nan)
    same = (pct == want) | (np.isnan(pct) & np.isnan(want))
    checks.flag_false(d, "change_formula", "window_ns > 0; a change only with an open interest; "
                      "change_pct = change / (OI - change) * 100 exactly, NaN without a change or "
                      "from a zero start", (window <= 0) | (has_ch & ~has_oi) | (then < 0) | ~same,
                      show=("open_interest_nanos", "change_nanos", "change_pct", "window_ns"))
    bad, skip = _vs_rows(d, oi, change, window)
    checks.flag_false(d, "change_vs_rows", "change_nanos = this row's open interest - that of the "
                      "instrument's row window_ns earlier, exactly; absent exactly when either is "
                      "(rows whose earlier row is not in the partition are not judged)", bad, skip=skip,
                      show=("ts_event_ns", "open_interest_nanos", "change_nanos"))
    grid_order(d)
    checks.ts_within_day(d, derive.partition_ts(d.table))


def _vs_rows(d: SuiteData, oi: np.ndarray, change: np.ndarray,
             window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ts = d.col("ts_event_ns")
    bad = np.zeros(len(ts), dtype=bool)
    skip = np.ones(len(ts), dtype=bool)
    for code in range(len(d.instruments)):
        rows = np.flatnonzero(d.codes == code)
        order = rows[np.argsort(ts[rows], kind="stable")]
        sts = ts[order]
        at = np.searchsorted(sts, ts[rows] - window[rows], side="left")
        # (a window not above zero is change_formula's fault: not judged here)
        found = ((at < len(sts)) & (sts[np.minimum(at, len(sts) - 1)] == ts[rows] - window[rows])
                 & (window[rows] > 0))
        earlier = order[np.minimum(at, len(sts) - 1)]
        then = oi[earlier]
        both = (oi[rows] != UNDEF_PRICE) & (then != UNDEF_PRICE)
        has_ch = change[rows] != UNDEF_PRICE
        wrong = (has_ch != both) | (has_ch & (change[rows] != oi[rows] - then))
        bad[rows] = found & wrong
        skip[rows] = ~found
    return bad, skip
