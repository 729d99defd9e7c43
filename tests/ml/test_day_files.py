"""Input files grouped by instrument-day for ``tapeflow ml evaluate`` and the bench: a LOBSTER message
file travels with its orderbook file (the vendor book anchors the L3 rebuild)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.errors import TapeflowError
from tapeflow.ml.evaluate import day_files


def test_lobster_pairs_and_other_formats_one_file_a_day(tmp_path: Path) -> None:
    msg = tmp_path / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
    book = tmp_path / "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"
    other = tmp_path / "AAPL_2012-06-21_34200000_57600000_message_1.csv"
    other_book = tmp_path / "AAPL_2012-06-21_34200000_57600000_orderbook_1.csv"
    for f in (msg, book, other, other_book):
        f.write_text("")
    # named pairs as named; a message file alone takes the orderbook file beside it
    assert day_files("lobster", [book, other, msg]) == [[msg, book], [other, other_book]]
    other_book.unlink()
    with pytest.raises(TapeflowError, match="without its orderbook file.*AAPL_2012-06-21_.*_orderbook_1"):
        day_files("lobster", [other])
    assert day_files("sim", [msg, book]) == [[msg], [book]]
    with pytest.raises(TapeflowError, match="not named like a LOBSTER file"):
        day_files("lobster", [Path("d/amzn.csv")])
