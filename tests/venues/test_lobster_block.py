"""The LOBSTER block path (compiled scan, rows as columns) against the per-line path: same rows,
rejects and bytes, on the real files and on Hypothesis-mutated lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapeflow.venues.lobster.block import decode_blocks
from tapeflow.venues.lobster.parse import decode, pair_files
from tests.conftest import need
from tests.venues.blockpaths import assert_identical, mutated_lines

AMZN = "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_1"
AAPL = "lobster/AAPL_2012-06-21_level10_first999"
STEM = "_2012-06-21_34200000_57600000_"


@pytest.mark.realdata
@pytest.mark.parametrize(("folder", "ticker", "levels"), [(AMZN, "AMZN", 1), (AAPL, "AAPL", 10)])
def test_real_files_identical_to_per_line_path(real_data: Path, folder: str, ticker: str,
                                               levels: int) -> None:
    paths = [need(real_data / folder / f"{ticker}{STEM}{kind}_{levels}.csv")
             for kind in ("message", "orderbook")]
    per_line = list(decode(paths, fast=False))
    tables = assert_identical(per_line, list(decode(paths)))
    lines = sum(1 for _ in paths[1].open("rb"))
    assert tables["book_snapshot"].num_rows == lines and "rejected" not in tables
    # chunks of 7 rows: every table and every chunk boundary, still the same rows
    [pair] = pair_files(paths)
    small = list(decode_blocks(pair, 7))
    assert len(small) == lines // 7 + 1
    assert_identical(per_line, small)


# lines the mutations start from: every message type, halts, empty book levels (2 levels)
MESSAGES = [
    "34200.017459617,5,0,1,2238200,-1", "34200.18960767,1,11885113,21,2238100,1",
    "34200.190226476,4,11885113,21,2238100,1", "34201,2,7,5,2238100,1", "34201.5,3,7,16,2238100,-1",
    "34202.000000001,6,0,300,2238000,-1", "34203,7,0,0,-1,-1", "34204,7,-1,0,0,1", "34205,7,0,0,1,-1",
    "0.5,1,9223372036854775807,9223372036,92233720368547,1",  # each at its largest
]
BOOKS = [
    "2239500,100,2231800,100,2239600,5,2231700,7", "9999999999,0,2238100,21,9999999999,0,-9999999999,0",
    "2239500,100,-9999999999,0,2239600,1,-9999999999,0", "92233720368547,9223372036,1,1,2,2,3,3",
]
ODD = ["NaN", "nan", "-", "+", " ", ",", ".", "e", "E", "\r", "\t", "\x00", "\xff", "0", "9", "-1",
       "9999999999", "99999999999999999999", "1e3", "\n"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=mutated_lines(MESSAGES, ODD, 12), books=mutated_lines(BOOKS, ODD, 12),
       chunk=st.sampled_from([1, 3, 100_000]))
def test_mutated_lines_identical_to_per_line_path(tmp_path: Path, messages: list[bytes], books: list[bytes],
                                                  chunk: int) -> None:
    msg = tmp_path / "XYZ_2012-03-11_0_86400000_message_2.csv"  # a day that changes to summer time
    book = tmp_path / "XYZ_2012-03-11_0_86400000_orderbook_2.csv"
    msg.write_bytes(b"".join(messages))
    book.write_bytes(b"".join(books))
    [pair] = pair_files([msg, book])
    tables = assert_identical(list(decode([msg, book], fast=False)), list(decode_blocks(pair, chunk)))
    # a mutation may insert a newline: count the lines as the decoders cut them
    message_lines, book_lines = (sum(1 for _ in path.open("rb")) for path in (msg, book))
    kept = tables["book_snapshot"].num_rows if "book_snapshot" in tables else 0
    rejected = tables["rejected"].num_rows if "rejected" in tables else 0
    assert kept <= book_lines and kept + rejected <= message_lines + book_lines


def test_one_file_of_the_pair_alone(tmp_path: Path) -> None:
    msg = tmp_path / "XYZ_2013-01-15_0_86400000_message_2.csv"
    msg.write_text("\n".join(MESSAGES) + "\n")
    book = tmp_path / "XYZ_2013-01-15_0_86400000_orderbook_2.csv"
    book.write_text("\n".join(BOOKS) + "\n")
    for path in (msg, book):
        tables = assert_identical(list(decode([path], fast=False)), list(decode([path])))
        assert ("order_event" in tables) == (path == msg)
        # an orderbook row takes its time from its message row: alone, none has a time (issue 9:
        # they were snapshots at -1 ns, filed under 1969-12-31), so each is an `unpaired` dead letter
        assert "book_snapshot" not in tables
        if path == book:
            assert tables["rejected"].column("reason").to_pylist() == ["unpaired"] * len(BOOKS)
