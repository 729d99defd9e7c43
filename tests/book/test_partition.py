"""tapeflow.book.partition: the books of one instrument-day from its lake partitions (the Dagster
``book`` assets' domain logic)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.book.partition import arrival_order, maybe_bad_rows, rebuild_partition
from tapeflow.book.stage import BookStage
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, ORDER_EVENT, QUOTE
from tests.book.test_shape import SEC, _l2, _l3


def _day_split(table: pa.Table, cut_ns: int) -> list[pa.Table]:
    """Two 'day' partitions split by venue time, as the lake files them (each in capture order)."""
    ts = table["ts_event_ns"].to_numpy()
    return [table.filter(pa.array(ts < cut_ns)), table.filter(pa.array(ts >= cut_ns))]


def test_arrival_order_merges_days_back_into_capture_order() -> None:
    table = _l2()
    # a row stamped on the second venue day but captured before a row of the first: it files
    # under day 2; the four rows of the first event share a capture time and keep their order
    ts_event = table["ts_event_ns"].to_numpy().copy()
    ts_event[4] = 9 * SEC
    shuffled = table.set_column(0, "ts_event_ns", pa.array(ts_event))
    days = _day_split(shuffled, 5 * SEC)
    assert days[1].num_rows == 1
    merged = arrival_order(BOOK_DELTA, days)
    assert days[0]["sequence"].to_pylist() == [0, 1, 2, 3, 5]
    assert merged["sequence"].to_pylist() == list(range(table.num_rows))
    assert arrival_order(BOOK_DELTA, [BOOK_DELTA.empty_table()] * 2).num_rows == 0


def test_arrival_order_equals_a_stable_sort_of_both_days() -> None:
    """Sorting only the window between midnight's crossers gives the rows a full stable sort gives."""
    rng = np.random.default_rng(5)
    base = pa.concat_tables([_l2()] * (400 // _l2().num_rows + 1)).slice(0, 400)
    for crossers in (0, 1, 37):
        recv = np.sort(rng.integers(0, 1_000, 400)) * SEC  # ties: rows of one event share a capture
        table = base.set_column(base.column_names.index("ts_recv_ns"), "ts_recv_ns", pa.array(recv))
        table = table.set_column(table.column_names.index("sequence"), "sequence", pa.array(np.arange(400)))
        # rows near midnight filed under the other venue day, both ways
        day_two = np.arange(400) >= 200
        flip = rng.choice(np.arange(150, 250), crossers, replace=False)
        day_two[flip] = ~day_two[flip]
        days = [table.filter(pa.array(~day_two)), table.filter(pa.array(day_two))]
        both = pa.concat_tables(days)
        expected = both.take(pc.sort_indices(both, [("ts_recv_ns", "ascending")]))
        merged = arrival_order(BOOK_DELTA, days)
        assert merged.equals(expected)
        assert (np.diff(merged["ts_recv_ns"].to_numpy()) >= 0).all()


def test_rebuild_partition_is_the_book_stage_over_both_days() -> None:
    for table, record in ((_l3(), ORDER_EVENT), (_l2(), BOOK_DELTA)):
        days = _day_split(table, 3 * SEC)
        other = BOOK_DELTA if record is ORDER_EVENT else ORDER_EVENT
        empty = [other.empty_table()] * 2
        events, deltas = (days, empty) if record is ORDER_EVENT else (empty, days)
        snaps, quotes = rebuild_partition(events, deltas, levels=3, interval_ns=SEC)
        want = BookStage(record is ORDER_EVENT and "l3" or "l2", 3, SEC).replay({record.name: table})
        assert snaps.equals(want[BOOK_SNAPSHOT.name]) and snaps.num_rows == 4
        assert quotes.equals(want[QUOTE.name]) and quotes.num_rows == 3


def test_l3_wins_when_a_venue_yields_both() -> None:
    # the L2 rows of the same instrument (an aggregation of its order events) are ignored
    events, deltas = _l3("X"), _l2("X")
    snaps, _ = rebuild_partition([events], [deltas], levels=3, interval_ns=SEC)
    assert snaps.equals(BookStage("l3", 3, SEC).replay({ORDER_EVENT.name: events})[BOOK_SNAPSHOT.name])


def test_maybe_bad_rows_counts_the_flagged_rows() -> None:
    table = _l2().slice(4)  # diffs without their snapshot: every published row is RESYNC
    snaps, quotes = rebuild_partition([ORDER_EVENT.empty_table()], [table], levels=3, interval_ns=SEC)
    assert maybe_bad_rows(snaps) == snaps.num_rows == 2
    assert maybe_bad_rows(quotes) == quotes.num_rows == 2
    assert maybe_bad_rows(BOOK_SNAPSHOT.empty_table()) == 0
    assert np.all(snaps["flags"].to_numpy() != 0)
