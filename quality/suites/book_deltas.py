"""L2 book deltas: schema, keys, codes, ranges, sequence, day, skew, stale intervals, baseline."""

from __future__ import annotations

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.records import (
    ASK,
    BID,
    BOOK_DELTA,
    F_SNAPSHOT,
    F_SUPERSEDED,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    NO_SIDE,
)

RECORD = BOOK_DELTA
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
    """Plan the book-delta checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    checks.codes(d, "action_codes", "action", (L2_SET, L2_DELETE, L2_CLEAR), "L2 action")
    checks.codes(d, "side_codes", "side", (BID, ASK, NO_SIDE), "level side")
    action, flags = d.col("action"), d.col("flags")
    level = action != L2_CLEAR
    checks.price_range(d, {"price_nanos": (d.col("price_nanos"), level, False)})
    # a set carries the level's new absolute size (> 0); a delete may carry 0
    checks.size_range(d, {"set_size_nanos": (d.col("size_nanos"), action == L2_SET, 1),
                          "delete_size_nanos": (d.col("size_nanos"), action == L2_DELETE, 0)})
    # rows already contained in a snapshot, and the snapshot itself, re-anchor the chain: the
    # venue numbers them from the snapshot's own counter
    replayed = (flags & (F_SUPERSEDED | F_SNAPSHOT)) != 0
    checks.sequence_checks(d, contiguous=False, exclude=replayed)
    # a snapshot row may keep an earlier venue time: the capture's day holds it too
    snapshot = (flags & F_SNAPSHOT) != 0
    checks.ts_within_day(d, derive.partition_ts(d.table), snapshot=snapshot)
    checks.recv_skew(d, keep=~replayed)
    checks.stale_intervals(d, d.col("ts_recv_ns"))
    checks.vs_baseline(d, "rows_vs_baseline", checks.totals_by_instrument(d.codes), "row_counts")
