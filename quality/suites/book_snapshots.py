"""Book snapshots: schema, keys, ranges, crossed book, level order, day, stale intervals, baseline."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.records import BOOK_SNAPSHOT, UNDEF_PRICE

RECORD = BOOK_SNAPSHOT
CHECKS = (
    "schema",
    "not_null_keys",
    "price_range",
    "crossed_book",
    "levels_sorted",
    "ts_within_day",
    "stale_intervals",
    "rows_vs_baseline",
)


def plan(d: SuiteData) -> None:
    """Plan the snapshot checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    bid = derive.best_of(d.table.column("bid_price_nanos"))
    ask = derive.best_of(d.table.column("ask_price_nanos"))
    checks.price_range(d, {"best_bid_price_nanos": (bid, bid != UNDEF_PRICE, True),
                           "best_ask_price_nanos": (ask, ask != UNDEF_PRICE, True)})
    # ts_recv_ns: capture time of the last event applied, i.e. when the state shown came to be
    checks.crossed_book(d, bid, ask, d.col("ts_recv_ns"))
    unsorted = _unsorted(d.table.column("bid_price_nanos"), descending=True)
    unsorted |= _unsorted(d.table.column("ask_price_nanos"), descending=False)
    for sizes in ("bid_size_nanos", "ask_size_nanos"):
        unsorted |= _negative_sizes(d.table.column(sizes))
    checks.flag_false(d, "levels_sorted", "bid levels strictly falling and ask levels strictly rising from"
                      " the best, every size positive", unsorted)
    checks.ts_within_day(d, derive.partition_ts(d.table))
    # a snapshot grid carries the book forward: a stale book is one whose last change is old
    age = np.maximum(d.col("ts_event_ns") - d.col("ts_recv_ns"), 0)
    checks.stale_intervals(d, d.col("ts_event_ns"), age_ns=age)
    checks.vs_baseline(d, "rows_vs_baseline", checks.totals_by_instrument(d.codes), "row_counts")


def _flat(lists: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    arr = lists.combine_chunks()
    offsets = arr.offsets.to_numpy()
    values = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    row = np.repeat(np.arange(len(arr)), np.diff(offsets))
    return values, row


def _unsorted(lists: pa.ChunkedArray, *, descending: bool) -> np.ndarray:
    """Rows whose levels are not strictly ordered away from the best price."""
    values, row = _flat(lists)
    bad = np.zeros(len(lists), bool)
    if len(values) > 1:
        same_row = row[1:] == row[:-1]
        step = values[1:] - values[:-1]
        wrong = same_row & ((step >= 0) if descending else (step <= 0))
        bad[row[1:][wrong]] = True
    return bad


def _negative_sizes(lists: pa.ChunkedArray) -> np.ndarray:
    values, row = _flat(lists)
    bad = np.zeros(len(lists), bool)
    bad[row[values <= 0]] = True
    return bad
