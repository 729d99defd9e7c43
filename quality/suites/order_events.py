"""L3 order events: schema, keys, codes, ranges, sequence, day, skew, stale intervals, baseline."""

from __future__ import annotations

import numpy as np

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.records import (
    ASK,
    BID,
    F_SNAPSHOT,
    L3_ADD,
    L3_CANCEL,
    L3_CLEAR,
    L3_FILL,
    L3_MODIFY,
    L3_NONE,
    L3_TRADE,
    NO_SIDE,
    ORDER_EVENT,
)

RECORD = ORDER_EVENT
CHECKS = (
    "schema",
    "not_null_keys",
    "action_codes",
    "side_codes",
    "price_range",
    "size_range",
    "sequence_monotonic",
    "sequence_gaps",
    "ts_within_day",
    "recv_skew",
    "stale_intervals",
    "rows_vs_baseline",
)


def plan(d: SuiteData) -> None:
    """Plan the order-event checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    actions = (L3_ADD, L3_CANCEL, L3_MODIFY, L3_CLEAR, L3_TRADE, L3_FILL, L3_NONE)
    checks.codes(d, "action_codes", "action", actions, "L3 action")
    checks.codes(d, "side_codes", "side", (BID, ASK, NO_SIDE), "order side")
    action = d.col("action")
    # clears and bare status rows carry no price; hidden trades may carry size only
    priced = np.isin(action, (L3_ADD, L3_MODIFY, L3_CANCEL, L3_TRADE, L3_FILL))
    traded = np.isin(action, (L3_TRADE, L3_FILL))
    price = d.col("price_nanos")
    checks.price_range(d, {"price_nanos": (price, priced, False), "trade_price_nanos": (price, traded, True)})
    sized = np.isin(action, (L3_ADD, L3_MODIFY, L3_TRADE, L3_FILL))
    checks.size_range(d, {"size_nanos": (d.col("size_nanos"), sized, 1)})
    venues = d.config.contiguous_sequence.get(d.dataset, frozenset())
    contiguous = bool(d.instruments) and all(v in venues for v, _ in d.instruments)
    # a snapshot replays resting orders with the sequence each was added under, not in order
    snapshot = (d.col("flags") & F_SNAPSHOT) != 0
    checks.sequence_checks(d, contiguous=contiguous, exclude=snapshot)
    # a snapshot row keeps its order's original (earlier) venue time: the capture's day holds it too
    checks.ts_within_day(d, derive.partition_ts(d.table), snapshot=snapshot)
    # snapshot rows replay old orders: their venue time is the order's, not the capture's
    checks.recv_skew(d, keep=~snapshot)
    checks.stale_intervals(d, d.col("ts_recv_ns"))
    checks.vs_baseline(d, "rows_vs_baseline", checks.totals_by_instrument(d.codes), "row_counts")
