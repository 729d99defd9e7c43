"""Funding rates: schema, keys, rate range, funding time order, settled code, day."""

from __future__ import annotations

import numpy as np

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.derivatives import FUNDING_RATE

RECORD = FUNDING_RATE
CHECKS = ("schema", "not_null_keys", "rate_range", "funding_time_order", "settled_code", "ts_within_day")
# Venues cap a funding period's rate at a few percent (Binance paid -3.75% in 2019, its cap then);
# a rate of 10% or more is a decimal read in the wrong place, not a market.
MAX_ABS_RATE = 0.1


def plan(d: SuiteData) -> None:
    """Plan the funding-rate checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    rate, predicted = d.col("funding_rate"), d.col("predicted_rate")
    when, ts, settled = d.col("funding_time_ns"), d.col("ts_event_ns"), d.col("settled")
    missing = np.isnan(rate)
    checks.flag_false(
        d,
        "rate_range",
        f"|funding_rate| and |predicted_rate| < {MAX_ABS_RATE}; a row without a rate "
        "carries a predicted rate or a funding time",
        (~missing & (np.abs(np.nan_to_num(rate)) >= MAX_ABS_RATE))
        | (np.abs(np.nan_to_num(predicted)) >= MAX_ABS_RATE)
        | (missing & np.isnan(predicted) & (when < 0)),
        show=("funding_rate", "predicted_rate", "funding_time_ns"),
    )
    checks.flag_false(
        d,
        "funding_time_order",
        "a settled rate is stamped with its funding time; a live estimate's funding "
        "time is not before the estimate",
        np.where(settled == 1, when != ts, (when >= 0) & (ts >= 0) & (when < ts)),
        show=("ts_event_ns", "funding_time_ns", "settled"),
    )
    checks.flag_false(d, "settled_code", "settled is 0 or 1", settled > 1, show=("settled",))
    checks.ts_within_day(d, derive.partition_ts(d.table))
