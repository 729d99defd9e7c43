"""tapeflow.book.l3: per-instrument replay and book_snapshot rows on demand and on a time grid."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.book.l3 import l3_book_snapshots, replay_l3
from tapeflow.errors import BookError
from tapeflow.schemas.records import F_LAST, F_MAYBE_BAD_BOOK, F_SNAPSHOT, ORDER_EVENT, UNDEF_PRICE

SEC = 1_000_000_000
PX = 1_000_000_000  # one price unit in nanos


def _events(rows: list[tuple]) -> pa.Table:
    """(ts_s, symbol, order_id, action, side, price, size, flags) -> an order_event table."""
    cols = {name: [] for name in ORDER_EVENT.column_names}
    for seq, (ts_s, symbol, oid, action, side, price, size, flags) in enumerate(rows):
        for name, value in (("ts_event_ns", int(ts_s * SEC)), ("ts_recv_ns", int(ts_s * SEC)), ("venue", "X"),
                            ("symbol", symbol), ("sequence", seq), ("order_id", oid), ("action", ord(action)),
                            ("side", ord(side)), ("price_nanos", price * PX), ("size_nanos", size * SEC),
                            ("flags", flags)):
            cols[name].append(value)
    return ORDER_EVENT.table(cols)


SNAP_LAST = F_SNAPSHOT | F_LAST
ROWS = [
    (1.0, "AAA", 1, "A", "B", 100, 5, F_SNAPSHOT),
    (1.0, "AAA", 2, "A", "A", 102, 4, SNAP_LAST),
    (1.2, "BBB", 7, "A", "B", 50, 1, F_LAST),     # BBB never gets a snapshot: not valid
    (1.5, "AAA", 3, "A", "B", 101, 2, F_LAST),
    (2.2, "AAA", 3, "C", "B", 101, 2, F_LAST),
    (2.9, "AAA", 4, "A", "A", 99, 9, 0),          # first half of an event published at 3.1 s
    (3.1, "AAA", 4, "C", "A", 99, 9, F_LAST),
    (3.5, "BBB", 8, "A", "A", 51, 3, F_LAST),
]


def test_time_grid_reads_the_last_published_book_per_instrument() -> None:
    snaps = l3_book_snapshots(_events(ROWS), levels=2, interval_ns=SEC).to_pylist()
    aaa = [s for s in snaps if s["symbol"] == "AAA"]
    bbb = [s for s in snaps if s["symbol"] == "BBB"]
    # AAA published at 1.0, 1.5, 2.2, 3.1 s -> grid 1 s .. 4 s
    assert [s["ts_event_ns"] // SEC for s in aaa] == [1, 2, 3, 4]
    # the levels that exist, best first, at most 2: never padded
    assert [s["bid_price_nanos"] for s in aaa] == [[100 * PX], [101 * PX, 100 * PX], [100 * PX], [100 * PX]]
    # at 3 s the event begun at 2.9 s is not published yet: its ask at 99 must not show
    assert aaa[2]["ask_price_nanos"] == [102 * PX] and aaa[2]["sequence"] == 4
    assert [s["flags"] for s in aaa] == [0, 0, 0, 0]
    assert aaa[1]["bid_size_nanos"] == [2 * SEC, 5 * SEC] and aaa[1]["levels"] == 2
    # BBB: published at 1.2 and 3.5 s -> grid 2 s .. 4 s, never synced
    assert [s["ts_event_ns"] // SEC for s in bbb] == [2, 3, 4]
    assert all(s["flags"] == F_MAYBE_BAD_BOOK for s in bbb)
    assert bbb[-1]["ask_price_nanos"] == [51 * PX] and bbb[0]["ask_size_nanos"] == []
    assert bbb[0]["bid_price_nanos"] == [50 * PX] and bbb[0]["bid_size_nanos"] == [SEC]


def test_event_snapshots_one_per_published_row() -> None:
    events = _events(ROWS)
    snaps = l3_book_snapshots(events, levels=1)
    flags = events.column("flags").to_numpy()
    assert snaps.num_rows == int(np.count_nonzero(flags & F_LAST)) == 6
    aaa = [s for s in snaps.to_pylist() if s["symbol"] == "AAA"]
    assert [s["sequence"] for s in aaa] == [1, 3, 4, 6]
    assert [s["ask_price_nanos"][0] for s in aaa] == [102 * PX] * 4


def test_replay_backends_agree_and_count_anomalies() -> None:
    rows = [r for r in ROWS if r[1] == "AAA"] + [(4.0, "AAA", 99, "C", "B", 1, 1, F_LAST)]
    events = _events(rows)
    fast = replay_l3(events, levels=2, snapshot_rows=np.array([1, 5]))
    slow = replay_l3(events, levels=2, snapshot_rows=np.array([1, 5]), backend="reference")
    for name in slow.bbo:
        np.testing.assert_array_equal(fast.bbo[name], slow.bbo[name])
    for name in slow.snaps:
        np.testing.assert_array_equal(fast.snaps[name], slow.snaps[name])
    want = {"unknown_order": 1, "size_underflow": 0, "duplicate_add": 0, "bad_event": 0}
    assert fast.anomaly_counts == want
    assert fast.published.tolist() == [False, True, True, True, False, True, True]
    assert fast.snaps["snap_bid_px"][1].tolist() == [100 * PX, UNDEF_PRICE]


def test_bad_requests_raise() -> None:
    with pytest.raises(BookError, match="interval_ns must be positive, got 0"):
        l3_book_snapshots(_events(ROWS), levels=1, interval_ns=0)
    with pytest.raises(BookError, match="order_event"):
        replay_l3(pa.table({"x": [1]}))
