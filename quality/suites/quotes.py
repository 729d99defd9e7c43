"""Quotes (BBO): schema, keys, ranges, crossed book, sequence, day, skew, stale intervals, baseline."""

from __future__ import annotations

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.records import F_MAYBE_BAD_BOOK, QUOTE, UNDEF_PRICE

RECORD = QUOTE
CHECKS = (
    "schema",
    "not_null_keys",
    "price_range",
    "size_range",
    "crossed_book",
    "sequence_monotonic",
    "ts_within_day",
    "recv_skew",
    "stale_intervals",
    "rows_vs_baseline",
)


def plan(d: SuiteData) -> None:
    """Plan the quote checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    bid, ask = d.col("bid_price_nanos"), d.col("ask_price_nanos")
    has_bid, has_ask = bid != UNDEF_PRICE, ask != UNDEF_PRICE
    checks.price_range(d, {"bid_price_nanos": (bid, has_bid, True), "ask_price_nanos": (ask, has_ask, True)})
    checks.size_range(d, {"bid_size_nanos": (d.col("bid_size_nanos"), has_bid, 1),
                          "ask_size_nanos": (d.col("ask_size_nanos"), has_ask, 1)})
    checks.crossed_book(d, bid, ask, d.col("ts_recv_ns"))
    # quotes are derived from the book: gaps show as F_MAYBE_BAD_BOOK there, and in book_deltas. A
    # rebuilt BBO is flagged F_MAYBE_BAD_BOOK while its book waits for a snapshot, on diffs newer than
    # the snapshot that then re-anchors it: that step back is the resync, not disorder, so flagged
    # rows are left out of the chain (clean rows still must never step back)
    maybe_bad = (d.col("flags") & F_MAYBE_BAD_BOOK) != 0
    checks.sequence_checks(d, contiguous=False, gaps=False, exclude=maybe_bad)
    checks.ts_within_day(d, derive.partition_ts(d.table))
    checks.recv_skew(d)
    checks.stale_intervals(d, d.col("ts_recv_ns"))
    checks.vs_baseline(d, "rows_vs_baseline", checks.totals_by_instrument(d.codes), "row_counts")
