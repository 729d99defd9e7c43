"""Insurance funds: schema, keys (with the asset), balance range, day."""

from __future__ import annotations

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.derivatives import INSURANCE_FUND

RECORD = INSURANCE_FUND
CHECKS = ("schema", "not_null_keys", "size_range", "ts_within_day")


def plan(d: SuiteData) -> None:
    """Plan the insurance-fund checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d, ("asset",))
    balance = d.col("balance_nanos")
    checks.size_range(d, {"balance_nanos": (balance, balance == balance, 0)})
    checks.ts_within_day(d, derive.partition_ts(d.table))
