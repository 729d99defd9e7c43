"""Insurance-fund stress levels (the ``insurance_stress`` record): schema, keys, level code, drawdown
against peak and balance, level order, day."""

from __future__ import annotations

import numpy as np

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.records import INSURANCE_STRESS

RECORD = INSURANCE_STRESS
CHECKS = ("schema", "not_null_keys", "level_code", "drawdown_range", "level_order", "ts_within_day")
_LEVELS = (0, 1, 2, 3)


def plan(d: SuiteData) -> None:
    """Plan the insurance-stress checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d, ("asset",))
    level = d.col("level").astype(np.int64)
    checks.flag_false(d, "level_code", "level is 0 (calm), 1 (watch), 2 (alert) or 3 (critical)",
                      ~np.isin(level, _LEVELS), show=("level",))
    # decimal128 nanos (a pool may pass int64): exact Python ints, as the detector computes them
    balance, peak = (np.array([_int(v) for v in d.col(c)], dtype=object)
                     for c in ("balance_nanos", "peak_nanos"))
    drawdown = d.col("drawdown")
    up = (peak > 0).astype(bool)
    want = np.array([(p - b) / p if p > 0 else np.nan for p, b in zip(peak, balance, strict=True)],
                    dtype=np.float64)
    wrong = (peak < balance).astype(bool) | (balance < 0).astype(bool)
    bad = np.where(up, wrong | ~np.isclose(drawdown, want, rtol=0, atol=1e-12),
                   ~np.isnan(drawdown) | (level != 0))
    checks.flag_false(d, "drawdown_range", "0 <= balance <= peak and drawdown = (peak - balance) / peak "
                      "(so within [0, 1]); NaN drawdown and level 0 while the peak is not above zero", bad,
                      show=("balance_nanos", "peak_nanos", "drawdown", "level"))
    checks.flag_false(d, "level_order", "a deeper drawdown never has a lower level (whatever the "
                      "thresholds)", _out_of_order(np.where(np.isnan(drawdown), -1.0, drawdown), level),
                      show=("drawdown", "level"))
    checks.ts_within_day(d, derive.partition_ts(d.table))


def _int(v: object) -> int:
    # a null balance fails not_null/schema elsewhere; here it reads as 0 (peak 0: drawdown NaN)
    return 0 if v is None else int(v)


def _out_of_order(drawdown: np.ndarray, level: np.ndarray) -> np.ndarray:
    # each row against the highest level of the rows with a strictly smaller drawdown
    bad = np.zeros(len(level), dtype=bool)
    if not len(level):
        return bad
    order = np.argsort(drawdown, kind="stable")
    ds, ls = drawdown[order], level[order]
    top = np.maximum.accumulate(ls)
    first = np.searchsorted(ds, ds, side="left")
    prior = np.where(first > 0, top[np.maximum(first - 1, 0)], 0)
    bad[order] = ls < prior
    return bad
