"""LOBSTER orderbook rows take their time from their message row: a row without one makes no
snapshot (issue 9: a truncated message file put snapshots under ``date=1969-12-31``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.schemas.records import UNDEF_TS
from tapeflow.storage import lake
from tapeflow.venues.lobster.block import decode_blocks
from tapeflow.venues.lobster.parse import decode, pair_files
from tests.conftest import need
from tests.venues.blockpaths import assert_identical

AAPL = "lobster/AAPL_2012-06-21_level10_first999/AAPL_2012-06-21_34200000_57600000_{}_10.csv"
MSG = ["34200.1,1,1,100,1000000,1", "34200.2,1,2,100,1000100,-1", "34200.3,1,3,NaN,999900,1",
       "34200.4,3,1,100,1000000,1"]
BOOK = ["1000100,100,1000000,100", "1000100,100,1000000,100", "1000100,100,1000000,100",
        "1000100,100,-9999999999,0", "1000100,100,-9999999999,0", "1000200,5,-9999999999,0"]


def _decode(msg: Path, book: Path, chunk: int = 100_000) -> dict:
    [pair] = pair_files([msg, book])
    return assert_identical(list(decode([msg, book], fast=False)), list(decode_blocks(pair, chunk)))


@pytest.mark.parametrize("chunk", [1, 4, 100_000])
def test_rows_without_a_message_time_make_no_snapshot(tmp_path: Path, chunk: int) -> None:
    msg = tmp_path / "XYZ_2013-01-15_0_86400000_message_1.csv"
    book = tmp_path / "XYZ_2013-01-15_0_86400000_orderbook_1.csv"
    msg.write_text("\n".join(MSG) + "\n")  # 4 messages, the third rejected; 6 orderbook rows
    book.write_text("\n".join(BOOK) + "\n")
    tables = _decode(msg, book, chunk)
    snaps = tables["book_snapshot"]
    assert snaps.column("sequence").to_pylist() == [0, 1, 3]  # row 2: its message was rejected
    assert UNDEF_TS not in snaps.column("ts_event_ns").to_pylist()
    rej = tables["rejected"].to_pylist()
    assert [(r["location"].rsplit(":", 1)[1], r["reason"]) for r in rej] == [
        ("3", "bad_number"), ("5", "unpaired"), ("6", "unpaired")]
    assert "the message file ends before it" in rej[1]["detail"]


def test_truncated_real_message_file(real_data: Path, tmp_path: Path) -> None:
    msg_src, book_src = (need(real_data / AAPL.format(k)) for k in ("message", "orderbook"))
    msg, book = tmp_path / msg_src.name, tmp_path / book_src.name
    msg.write_bytes(msg_src.read_bytes()[:20_000])  # cut inside a line
    book.write_bytes(book_src.read_bytes())
    tables = _decode(msg, book)
    n_msg = msg.read_bytes().count(b"\n")  # whole lines; the cut one is `truncated`
    snaps = tables["book_snapshot"]
    assert snaps.num_rows == n_msg
    days = {lake.day_of(ts) for ts in snaps.column("ts_event_ns").to_pylist()}
    assert days == {"2012-06-21"}
    reasons = tables["rejected"].column("reason").to_pylist()
    assert reasons == ["truncated"] + ["unpaired"] * (999 - n_msg - 1)
