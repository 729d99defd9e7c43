"""Index prices: schema, keys, price range, day."""

from __future__ import annotations

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.derivatives import INDEX_PRICE

RECORD = INDEX_PRICE
CHECKS = ("schema", "not_null_keys", "price_range", "ts_within_day")


def plan(d: SuiteData) -> None:
    """Plan the index-price checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    index = d.col("index_price_nanos")
    checks.price_range(d, {"index_price_nanos": (index, index == index, False)})
    checks.ts_within_day(d, derive.partition_ts(d.table))
