"""BOOK_SNAPSHOT has one list shape for every book: the levels that exist, best first, at most N.

An L2 book and an L3 book holding the same levels give the same lists, live or batch; a book
with fewer levels than N gives shorter lists (an empty side an empty list), never UNDEF_PRICE or
zero-size padding.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tapeflow.book.l2 import book_snapshots
from tapeflow.book.l3 import l3_book_snapshots
from tapeflow.book.stage import BookStage
from tapeflow.schemas.records import (
    ASK,
    BID,
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    F_LAST,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    L3_ADD,
    L3_CANCEL,
    NO_SIDE,
    ORDER_EVENT,
    UNDEF_PRICE,
)

SEC = 1_000_000_000
PX = 1_000_000_000
LISTS = ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")

# the same book told twice: (ts_s, side, price, size) levels after a snapshot, then changes
# t=1.0 snapshot: bids 100 x 5, 99 x 2; ask 102 x 4. t=2.5: ask 102 goes. t=3.5: bid 101 x 1 comes.
_L2_ROWS = [  # ts_s, side, action, price, size, flags
    (1.0, NO_SIDE, L2_CLEAR, 0, 0, F_SNAPSHOT),
    (1.0, BID, L2_SET, 100, 5, F_SNAPSHOT),
    (1.0, BID, L2_SET, 99, 2, F_SNAPSHOT),
    (1.0, ASK, L2_SET, 102, 4, F_SNAPSHOT | F_LAST),
    (2.5, ASK, L2_DELETE, 102, 0, F_LAST),
    (3.5, BID, L2_SET, 101, 1, F_LAST),
]
_L3_ROWS = [  # ts_s, order_id, action, side, price, size, flags
    (1.0, 1, L3_ADD, BID, 100, 3, F_SNAPSHOT),
    (1.0, 2, L3_ADD, BID, 100, 2, F_SNAPSHOT),
    (1.0, 3, L3_ADD, BID, 99, 2, F_SNAPSHOT),
    (1.0, 4, L3_ADD, ASK, 102, 4, F_SNAPSHOT | F_LAST),
    (2.5, 4, L3_CANCEL, ASK, 102, 4, F_LAST),
    (3.5, 5, L3_ADD, BID, 101, 1, F_LAST),
]


def _l2(symbol: str = "L2") -> pa.Table:
    cols = list(zip(*_L2_ROWS, strict=True))
    ts = [int(t * SEC) for t in cols[0]]
    return BOOK_DELTA.table({"ts_event_ns": ts, "ts_recv_ns": ts, "sequence": range(len(ts)), "side": cols[1],
                             "action": cols[2], "price_nanos": [p * PX for p in cols[3]],
                             "size_nanos": [s * SEC for s in cols[4]], "flags": cols[5]},
                            constants={"venue": "v", "symbol": symbol})


def _l3(symbol: str = "L3") -> pa.Table:
    cols = list(zip(*_L3_ROWS, strict=True))
    ts = [int(t * SEC) for t in cols[0]]
    return ORDER_EVENT.table({"ts_event_ns": ts, "ts_recv_ns": ts, "sequence": range(len(ts)),
                              "order_id": cols[1], "action": cols[2], "side": cols[3],
                              "price_nanos": [p * PX for p in cols[4]],
                              "size_nanos": [s * SEC for s in cols[5]], "flags": cols[6]},
                             constants={"venue": "v", "symbol": symbol})


def _lists(snaps: pa.Table) -> list[tuple]:
    return [tuple(row[c] for c in LISTS) for row in snaps.select(list(LISTS)).to_pylist()]


def _assert_shape_rule(snaps: pa.Table) -> None:
    """Every row: at most ``levels`` levels a side, sizes beside prices, no padding, best first."""
    for row in snaps.to_pylist():
        for side, descending in (("bid", True), ("ask", False)):
            px, sz = row[f"{side}_price_nanos"], row[f"{side}_size_nanos"]
            assert len(px) == len(sz) <= row["levels"], row
            assert UNDEF_PRICE not in px and all(s > 0 for s in sz), row
            assert px == sorted(px, reverse=descending) and len(set(px)) == len(px), row


def test_l2_and_l3_books_of_the_same_levels_give_the_same_lists() -> None:
    for interval_ns in (SEC, None):
        l2 = book_snapshots(_l2(), levels=5, interval_ns=interval_ns)
        l3 = l3_book_snapshots(_l3(), levels=5, interval_ns=interval_ns)
        assert l2.num_rows == l3.num_rows >= 3
        assert _lists(l2) == _lists(l3)
        _assert_shape_rule(l2)
        _assert_shape_rule(l3)


def test_fewer_levels_than_asked_give_shorter_lists_and_an_empty_side_an_empty_list() -> None:
    snaps = l3_book_snapshots(_l3(), levels=5, interval_ns=SEC)
    assert snaps.column("ts_event_ns").to_pylist() == [1 * SEC, 2 * SEC, 3 * SEC, 4 * SEC]
    assert _lists(snaps) == [
        ([100 * PX, 99 * PX], [5 * SEC, 2 * SEC], [102 * PX], [4 * SEC]),
        ([100 * PX, 99 * PX], [5 * SEC, 2 * SEC], [102 * PX], [4 * SEC]),
        ([100 * PX, 99 * PX], [5 * SEC, 2 * SEC], [], []),
        ([101 * PX, 100 * PX, 99 * PX], [SEC, 5 * SEC, 2 * SEC], [], []),
    ]
    # at most N: a depth of 2 keeps the best two
    top2 = l3_book_snapshots(_l3(), levels=2, interval_ns=SEC)
    assert _lists(top2)[-1] == ([101 * PX, 100 * PX], [SEC, 5 * SEC], [], [])
    assert set(top2.column("levels").to_pylist()) == {2}


def test_padded_and_unpadded_rows_never_mix_live_or_batch() -> None:
    """One stage, an L2 and an L3 instrument, fed one row at a time: one shape throughout."""
    tables = {ORDER_EVENT.name: _l3("A"), BOOK_DELTA.name: _l2("B")}
    stage = BookStage("auto", levels=4, interval_ns=SEC)
    parts = [stage.apply({k: t.slice(i, 1) for k, t in tables.items()}) for i in range(len(_L2_ROWS))]
    live = pa.concat_tables([p[BOOK_SNAPSHOT.name] for p in parts] + [stage.close()[BOOK_SNAPSHOT.name]])
    batch = BookStage("auto", levels=4, interval_ns=SEC).replay(tables)[BOOK_SNAPSHOT.name]
    assert set(live.column("symbol").to_pylist()) == {"A", "B"}
    _assert_shape_rule(live)
    _assert_shape_rule(batch)
    by_symbol = {s: _lists(batch.filter(pa.compute.equal(batch["symbol"], s))) for s in ("A", "B")}
    assert by_symbol["A"] == by_symbol["B"]
    order = np.lexsort((live["ts_event_ns"].to_numpy(), live["symbol"].to_numpy(zero_copy_only=False)))
    assert live.take(pa.array(order)).equals(batch)
