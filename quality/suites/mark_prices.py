"""Mark prices: schema, keys, price range, day."""

from __future__ import annotations

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.derivatives import MARK_PRICE

RECORD = MARK_PRICE
CHECKS = ("schema", "not_null_keys", "price_range", "ts_within_day")


def plan(d: SuiteData) -> None:
    """Plan the mark-price checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    mark = d.col("mark_price_nanos")
    # a zero mark (an expired Deribit option) and a negative one (a future spread) are real: judged
    # are the positive marks, never banded (one partition mixes instruments of any price level)
    checks.price_range(d, {"mark_price_nanos": (mark, mark > 0, False)})
    checks.ts_within_day(d, derive.partition_ts(d.table))
