"""The row builders and the instrument check: list parts, constant columns, one-instrument tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.book_stage import book_lists
from tapeflow.book.grid import one_instrument
from tapeflow.book.rows import quote_table, snapshot_table
from tapeflow.schemas.records import BOOK_SNAPSHOT, F_MAYBE_BAD_BOOK, QUOTE, RESYNC, UNDEF_PRICE, VALID


@settings(deadline=None)  # the first example compiles the kernel
@given(st.lists(st.lists(st.integers(1, 10**12), max_size=6), max_size=40), st.integers(1, 6), st.data())
def test_book_lists_keep_the_levels_that_exist(rows: list[list[int]], width: int,
                                               data: st.DataObject) -> None:
    books = np.zeros((4, len(rows) + 1, width), np.int64)
    books[0::2] = UNDEF_PRICE
    for i, levels in enumerate(rows):
        levels = levels[:width]
        books[0, i, :len(levels)] = levels
        books[1, i, :len(levels)] = [v + 1 for v in levels]
    pend = np.full((4, width), UNDEF_PRICE, np.int64)
    pend[0, 0], pend[1, 0] = 5, 6
    owner = np.array(data.draw(st.lists(st.integers(-1, len(rows) - 1), max_size=50)), np.int64)
    offsets, prices, sizes = book_lists(books, owner, pend, 0, 0)
    got = [prices[offsets[j]:offsets[j + 1]].tolist() for j in range(len(owner))]
    assert got == [rows[s][:width] if s >= 0 else [5] for s in owner.tolist()]
    assert sizes.tolist() == [p + 1 for p in prices.tolist()]


def test_tables_carry_the_instrument_and_the_flag_at_any_size() -> None:
    for m in (1, 3, 300, 5000):  # small tables slice a cached column, large ones build theirs
        status = np.where(np.arange(m) % 3 == 0, RESYNC, VALID).astype(np.uint8)
        ts = np.arange(m)
        bids = (np.arange(m + 1, dtype=np.int32), np.full(m, 100, np.int64), np.full(m, 7, np.int64))
        asks = (np.zeros(m + 1, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64))
        snaps = snapshot_table("ven", "SYM", 2, ts, ts + 1, ts + 2, status, bids, asks)
        assert snaps.schema.equals(BOOK_SNAPSHOT.arrow_schema())
        assert set(snaps["venue"].to_pylist()) == {"ven"} and set(snaps["symbol"].to_pylist()) == {"SYM"}
        assert snaps["bid_price_nanos"].to_pylist() == [[100]] * m
        assert snaps["ask_price_nanos"].to_pylist() == [[]] * m
        assert snaps["flags"].to_pylist() == np.where(status == VALID, 0, F_MAYBE_BAD_BOOK).tolist()
        quotes = quote_table("ven", "SYM", ts, ts, ts, np.ones((4, m), np.int64), status)
        assert quotes.schema.equals(QUOTE.arrow_schema()) and quotes["symbol"].to_pylist() == ["SYM"] * m


def test_one_instrument_across_chunks() -> None:
    def table(chunks: list[list[str]]) -> pa.Table:
        return pa.table({"venue": pa.chunked_array([["v"] * len(c) for c in chunks], pa.string()),
                         "symbol": pa.chunked_array(chunks, pa.string())})

    assert one_instrument(table([["AB"] * 10, ["AB"] * 12])) == ("v", "AB")
    assert one_instrument(table([["AB"] * 10, ["AC"] * 12])) is None  # each chunk constant, not the whole
    assert one_instrument(table([["AB"] * 10, ["ABC"] * 12])) is None
    assert one_instrument(table([["AB"]])) == ("v", "AB")
    assert one_instrument(table([["AB", "AC"]])) is None
