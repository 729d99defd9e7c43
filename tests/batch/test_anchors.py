"""Which kept vendor book rows anchor a book rebuild (tapeflow.batch.anchors)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from tapeflow.batch.anchors import anchor_slices
from tapeflow.batch.targets import Target
from tapeflow.schemas.batch import VENDOR_BOOK_SNAPSHOT
from tapeflow.storage.writer import write

DAY_NS = 1_340_236_800 * 1_000_000_000  # 2012-06-21 00:00 UTC


def _vendor_rows(venue: str, symbol: str, n: int) -> pa.Table:
    rows = [{"ts_event_ns": DAY_NS + 50_000_000_000_000 + i, "ts_recv_ns": DAY_NS + 50_000_000_000_000 + i,
             "venue": venue, "symbol": symbol, "sequence": i, "levels": 1, "bid_price_nanos": [100],
             "bid_size_nanos": [1], "ask_price_nanos": [101], "ask_size_nanos": [1], "flags": 0}
            for i in range(n)]
    return pa.Table.from_pylist(rows, schema=VENDOR_BOOK_SNAPSHOT.arrow_schema())


def test_lobster_days_are_anchored_to_their_kept_vendor_rows(tmp_path: Path) -> None:
    write(VENDOR_BOOK_SNAPSHOT, _vendor_rows("lobster", "AAPL", 3), tmp_path)
    day = Target("2012-06-21", "lobster", "AAPL")
    per_day = anchor_slices(tmp_path, [day.previous(), day])
    assert [sum(t.num_rows for t in slices) for slices in per_day] == [0, 3]


def test_another_vendors_book_never_anchors(tmp_path: Path) -> None:
    """An MBP-10 file beside an MBO file is another feed: the MBO book is not anchored to it."""
    write(VENDOR_BOOK_SNAPSHOT, _vendor_rows("GLBX.MDP3", "ESH4", 3), tmp_path)
    day = Target("2012-06-21", "GLBX.MDP3", "ESH4")
    assert anchor_slices(tmp_path, [day.previous(), day]) == []
