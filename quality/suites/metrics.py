"""Book metrics: schema, keys, prices, crossed book, depth and imbalance ranges, day, stale, baseline."""

from __future__ import annotations

import numpy as np

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.records import METRIC, UNDEF_PRICE

RECORD = METRIC
CHECKS = (
    "schema",
    "not_null_keys",
    "price_range",
    "crossed_book",
    "size_range",
    "imbalance_range",
    "ts_within_day",
    "stale_intervals",
    "rows_vs_baseline",
)


def plan(d: SuiteData) -> None:
    """Plan the metric checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d, ("interval",))
    mid, micro, spread = d.col("mid_price_nanos"), d.col("microprice_nanos"), d.col("spread_nanos")
    two_sided = (mid != UNDEF_PRICE) & (spread != UNDEF_PRICE)
    checks.price_range(d, {"mid_price_nanos": (mid, two_sided, True),
                           "microprice_nanos": (micro, two_sided, True)})
    d.put("spread", spread)
    checks.crossed_rows(d, two_sided & (spread <= 0), two_sided, d.col("ts_recv_ns"),
                        "spread_nanos > 0 where both sides exist"
                        f" (crossed rate <= {d.config.crossed_rate_max})",
                        show=("spread",))
    every = np.ones(d.table.num_rows, bool)
    checks.size_range(d, {"bid_depth_nanos": (d.col("bid_depth_nanos"), every, 0),
                          "ask_depth_nanos": (d.col("ask_depth_nanos"), every, 0)})
    imbalance = d.put("imbalance", d.col("imbalance"))
    d.add(checks.Check("imbalance_range", "imbalance within [-1, 1] (NaN on an empty book)", "derived",
                       [checks.Expect("ExpectColumnValuesToBeBetween",
                                      {"column": imbalance, "min_value": -1.0, "max_value": 1.0})],
                       show=("imbalance",)))
    checks.ts_within_day(d, derive.partition_ts(d.table))
    checks.stale_intervals(d, d.col("ts_event_ns"))
    checks.vs_baseline(d, "rows_vs_baseline", checks.totals_by_instrument(d.codes), "row_counts")
