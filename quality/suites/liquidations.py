"""Liquidations: schema, keys, side code, price range, size range, day."""

from __future__ import annotations

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.derivatives import LIQUIDATION
from tapeflow.schemas.records import ASK, BID

RECORD = LIQUIDATION
CHECKS = ("schema", "not_null_keys", "side_code", "price_range", "size_range", "ts_within_day")


def plan(d: SuiteData) -> None:
    """Plan the liquidation checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    checks.codes(d, "side_code", "side", (BID, ASK), "the liquidation order buys or sells")
    price, size = d.col("price_nanos"), d.col("size_nanos")
    checks.price_range(d, {"price_nanos": (price, price == price, False)})
    checks.size_range(d, {"size_nanos": (size, size == size, 1)})
    checks.ts_within_day(d, derive.partition_ts(d.table))
