"""Open interest: schema, keys, size range, day."""

from __future__ import annotations

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.derivatives import OPEN_INTEREST
from tapeflow.schemas.records import UNDEF_PRICE

RECORD = OPEN_INTEREST
CHECKS = ("schema", "not_null_keys", "size_range", "ts_within_day")


def plan(d: SuiteData) -> None:
    """Plan the open-interest checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    oi, value = d.col("open_interest_nanos"), d.col("open_interest_value_nanos")
    # a contract nobody holds has zero open interest
    checks.size_range(
        d,
        {
            "open_interest_nanos": (oi, oi == oi, 0),
            "open_interest_value_nanos": (value, value != UNDEF_PRICE, 0),
        },
    )
    checks.ts_within_day(d, derive.partition_ts(d.table))
