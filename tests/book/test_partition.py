"""tapeflow.book.partition: the books of one instrument-day from its lake partitions (the Dagster
``book`` assets' domain logic)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.book.partition import (
    arrival_order,
    arrival_slices,
    maybe_bad_rows,
    rebuild_partition,
    rebuild_slices,
)
from tapeflow.book.stage import BookStage
from tapeflow.schemas import RecordType
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


def _one_kind_days() -> list[tuple[pa.Table, RecordType, list[pa.Table], list[pa.Table]]]:
    """(whole table, its record, order-event days, book-delta days) of an L3 and an L2 feed split
    over two days, the other kind's days empty."""
    out = []
    for table, record in ((_l3(), ORDER_EVENT), (_l2(), BOOK_DELTA)):
        days = _day_split(table, 3 * SEC)
        other = BOOK_DELTA if record is ORDER_EVENT else ORDER_EVENT
        empty = [other.empty_table()] * 2
        out.append((table, record, *((days, empty) if record is ORDER_EVENT else (empty, days))))
    return out


def test_rebuild_partition_is_the_book_stage_over_both_days() -> None:
    for table, record, events, deltas in _one_kind_days():
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


def _slices(table: pa.Table, rows: int) -> list[pa.Table]:
    return [table.slice(lo, rows) for lo in range(0, table.num_rows, rows)]


def test_arrival_slices_equal_arrival_order_over_the_whole_days() -> None:
    """The streaming merge hands out the rows of arrival_order, whatever the slice sizes."""
    rng = np.random.default_rng(11)
    base = pa.concat_tables([_l2()] * (600 // _l2().num_rows + 1)).slice(0, 600)
    for crossers, sizes in ((0, (600, 7)), (1, (1, 50)), (60, (13, 3)), (300, (64, 600))):
        recv = np.sort(rng.integers(0, 500, 600)) * SEC  # many ties across the two days
        table = base.set_column(base.column_names.index("ts_recv_ns"), "ts_recv_ns", pa.array(recv))
        table = table.set_column(table.column_names.index("sequence"), "sequence", pa.array(np.arange(600)))
        day_two = np.arange(600) >= 300
        flip = rng.choice(np.arange(600), crossers, replace=False)
        day_two[flip] = ~day_two[flip]
        days = [table.filter(pa.array(~day_two)), table.filter(pa.array(day_two))]
        want = arrival_order(BOOK_DELTA, days)
        got = list(arrival_slices(BOOK_DELTA, [_slices(days[0], sizes[0]), _slices(days[1], sizes[1])]))
        assert all(s.num_rows for s in got)
        assert pa.concat_tables(got).equals(want), (crossers, sizes)
    assert list(arrival_slices(BOOK_DELTA, [[], [BOOK_DELTA.empty_table()]])) == []


def _sliced(events: list[pa.Table], deltas: list[pa.Table], rows: int,
            **kw: int) -> tuple[pa.Table, pa.Table]:
    pieces = list(rebuild_slices([_slices(d, rows) for d in events], [_slices(d, rows) for d in deltas],
                                 **kw))
    snaps = pa.concat_tables([s for s, _ in pieces if s.num_rows] or [BOOK_SNAPSHOT.empty_table()])
    quotes = pa.concat_tables([q for _, q in pieces if q.num_rows] or [QUOTE.empty_table()])
    return snaps, quotes


def test_replay_over_slices_equals_replay_over_the_whole_days() -> None:
    for _table, record, events, deltas in _one_kind_days():
        whole = rebuild_partition(events, deltas, levels=3, interval_ns=SEC)
        assert whole[0].num_rows and whole[1].num_rows
        for rows in (1, 2, 3, 1_000):
            snaps, quotes = _sliced(events, deltas, rows, levels=3, interval_ns=SEC)
            assert snaps.equals(whole[0]) and quotes.equals(whole[1]), (record.name, rows)
    # L3 still wins over the L2 rows of the same instrument when both come in slices
    snaps, _ = _sliced([_l3("X")], [_l2("X")], 2, levels=3, interval_ns=SEC)
    assert snaps.equals(rebuild_partition([_l3("X")], [_l2("X")], levels=3, interval_ns=SEC)[0])


def test_replay_over_slices_equals_replay_over_a_real_mbo_day() -> None:
    import pytest

    from tapeflow.settings import Settings
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    folder = Settings.from_env().real_data / "databento/glbx"
    paths = [folder / f"esh4-glbx-mdp3-{d}.mbo.dbn.zst" for d in ("20231224", "20231225")]
    if not all(p.exists() for p in paths):
        pytest.skip(f"real data absent: {paths}")
    events = merge(list(get_format("dbn").decode(paths)))[ORDER_EVENT.name]
    counts = pc.value_counts(events["symbol"]).to_pylist()
    symbol = max(counts, key=lambda c: c["counts"])["values"]  # the busiest instrument
    events = events.filter(pc.equal(events["symbol"], symbol))
    # the two lake days of the instrument (the day before, the day), each in capture order
    days = _day_split(events, 1_703_462_400 * SEC)  # 2023-12-25T00:00Z
    assert days[0].num_rows and days[1].num_rows
    empty = [BOOK_DELTA.empty_table()] * 2
    whole = rebuild_partition(days, empty)
    assert whole[0].num_rows > 100 and whole[1].num_rows > 100
    for rows in (997, 8_192):
        snaps, quotes = _sliced(days, empty, rows)
        assert snaps.equals(whole[0]) and quotes.equals(whole[1]), rows
