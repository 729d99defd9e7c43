"""Re-anchoring an L3 book to the vendor's own book (made-up LOBSTER-shaped rows, no real data)."""

from __future__ import annotations

import pyarrow as pa

from kernels.codes import ASK, BID, F_LAST, L3_ADD, L3_CANCEL, UNDEF_PRICE
from tapeflow.book.stage import BookStage
from tapeflow.schemas.records import BOOK_SNAPSHOT, ORDER_EVENT

T0 = 1_340_285_400_000_000_000

# message i: (order id, action, side, price, size); vendor row i: the level-1 book after it
# (bid px, bid size, ask px, ask size), as LOBSTER's orderbook file gives it
MESSAGES = [(1, L3_ADD, BID, 101, 1),      # the ask at 110 x 7 was there before the file starts
            (1, L3_CANCEL, BID, 101, 1),   # the bid level beyond the window shows: 100 x 5
            (99, L3_CANCEL, ASK, 110, 3),  # an order the file never added leaves 4 at 110
            (2, L3_ADD, ASK, 109, 2)]      # a plain add the rebuild gets right alone
VENDOR = [(101, 1, 110, 7), (100, 5, 110, 4 + 3), (100, 5, 110, 4), (100, 5, 109, 2)]


def _events() -> pa.Table:
    n = len(MESSAGES)
    return ORDER_EVENT.table({
        "ts_event_ns": [T0 + i for i in range(n)], "ts_recv_ns": [T0 + i for i in range(n)],
        "venue": ["lobster"] * n, "symbol": ["X"] * n, "sequence": list(range(n)),
        "order_id": [m[0] for m in MESSAGES], "action": [m[1] for m in MESSAGES],
        "side": [m[2] for m in MESSAGES], "price_nanos": [m[3] for m in MESSAGES],
        "size_nanos": [m[4] for m in MESSAGES], "flags": [F_LAST] * n})


def _vendor() -> pa.Table:
    n = len(VENDOR)
    return BOOK_SNAPSHOT.table({
        "ts_event_ns": [T0 + i for i in range(n)], "ts_recv_ns": [T0 + i for i in range(n)],
        "venue": ["lobster"] * n, "symbol": ["X"] * n, "sequence": list(range(n)), "levels": [1] * n,
        "bid_price_nanos": [[v[0]] for v in VENDOR], "bid_size_nanos": [[v[1]] for v in VENDOR],
        "ask_price_nanos": [[v[2]] for v in VENDOR], "ask_size_nanos": [[v[3]] for v in VENDOR],
        "flags": [0] * n})


def _tops(snaps: pa.Table) -> list[tuple[int, int, int, int]]:
    cols = [snaps.column(c).to_pylist() for c in ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos",
                                                   "ask_size_nanos")]
    return [tuple(c[i][0] if c[i] else UNDEF_PRICE for c in cols) for i in range(snaps.num_rows)]


def test_vendor_rows_seed_and_reanchor_the_book() -> None:
    alone = BookStage("l3", 1, None, quotes="none").replay({ORDER_EVENT.name: _events()})["book_snapshot"]
    assert _tops(alone) != VENDOR  # the message rows alone miss what came before and beyond the window
    stage = BookStage("l3", 1, None, quotes="none")
    snaps = stage.replay({ORDER_EVENT.name: _events(), BOOK_SNAPSHOT.name: _vendor()})["book_snapshot"]
    assert _tops(snaps) == VENDOR
    assert not any(f & 4 for f in snaps.column("flags").to_pylist())
    # row 0: ask seeded; row 1: bid; row 2: ask (the unknown order's cancel); row 3 agreed
    assert stage.reanchors() == {("lobster", "X"): 3}


def test_vendor_rows_late_by_a_batch_give_the_same_rows() -> None:
    """The live cut: a message's vendor row may come in the batch after it (the message is held
    back till then). The first batch brings the first vendor row: before any, nothing says the
    instrument has any (the flow's batches of a LOBSTER pair hold both)."""
    whole = BookStage("l3", 1, None).replay({ORDER_EVENT.name: _events(), BOOK_SNAPSHOT.name: _vendor()})
    stage = BookStage("l3", 1, None)
    events, vendor = _events(), _vendor()
    parts = []
    for i in range(events.num_rows + 1):
        batch = {}
        if i < events.num_rows:
            batch[ORDER_EVENT.name] = events.slice(i, 1)
        if i == 0:
            batch[BOOK_SNAPSHOT.name] = vendor.slice(0, 1)
        elif i > 1:
            batch[BOOK_SNAPSHOT.name] = vendor.slice(i - 1, 1)
        parts.append(stage.apply(batch))
    parts.append(stage.close())
    for name in ("book_snapshot", "quote"):
        got = pa.concat_tables([p[name] for p in parts])
        assert got.equals(whole[name]), name
    assert _tops(whole["book_snapshot"]) == VENDOR
