"""LOBSTER decoder and one-step oracle: real sample files plus hand-written bad rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tapeflow.errors import FormatError
from tapeflow.schemas.records import ASK, BID, F_HIDDEN, F_LAST, F_MAYBE_BAD_BOOK, NO_SIDE, UNDEF_PRICE
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.lobster.parse import halt_state
from tests.conftest import need

AMZN = "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_1"
AAPL = "lobster/AAPL_2012-06-21_level10_first999"
STEM = "_2012-06-21_34200000_57600000_"


def _pair(real_data: Path, folder: str, ticker: str, levels: int) -> list[Path]:
    base = real_data / folder
    return [need(base / f"{ticker}{STEM}{kind}_{levels}.csv") for kind in ("message", "orderbook")]


def _types(message_file: Path) -> np.ndarray:
    return np.loadtxt(message_file, delimiter=",", usecols=1, dtype=np.int64)


@pytest.mark.realdata
@pytest.mark.parametrize(("folder", "ticker", "levels"), [(AMZN, "AMZN", 1), (AAPL, "AAPL", 10)])
def test_one_step_oracle_on_every_visible_message(real_data: Path, folder: str, ticker: str,
                                                  levels: int) -> None:
    paths = _pair(real_data, folder, ticker, levels)
    types = _types(paths[0])
    # row 0 has no previous book row; visible messages are types 1-4, the rest leave the book alone
    visible = int(np.isin(types[1:], [1, 2, 3, 4]).sum())
    quiet = int(np.isin(types[1:], [5, 6, 7]).sum())
    [report] = get_format("lobster").verify(paths)
    assert report.line() == f"verified: {visible} of {visible} lobster one-step book states"
    assert report.passed and not report.failures
    assert report.details["unchanged_ok"] == report.details["unchanged_total"] == quiet
    assert visible == {"AMZN": 55070, "AAPL": 937}[ticker]  # the counts the data README implies


@pytest.mark.realdata
def test_decode_counts_times_and_units_on_amzn(real_data: Path) -> None:
    paths = _pair(real_data, AMZN, "AMZN", 1)
    types = _types(paths[0])
    chunks = list(get_format("lobster").decode(paths))
    tables = merge(chunks)
    count = {t: int((types == t).sum()) for t in range(1, 8)}
    assert "rejected" not in tables
    assert tables["order_event"].num_rows == count[1] + count[2] + count[3] + count[7] + 2 * count[4]
    assert tables["trade"].num_rows == count[4] + count[5] + count[6]
    assert tables["book_snapshot"].num_rows == len(types)
    assert sum(c.bytes_read for c in chunks) == sum(p.stat().st_size for p in paths)
    # first message: 34200.017459617 s after New York midnight, EDT (UTC-4) in June
    expected_ns = int(datetime(2012, 6, 21, 13, 30, tzinfo=UTC).timestamp()) * 10**9 + 17_459_617
    trades = tables["trade"].to_pylist()
    assert trades[0]["ts_event_ns"] == expected_ns == trades[0]["ts_recv_ns"]
    # row 0: hidden execution, 1 share at 223.82 on a resting ask -> buyer-initiated, flagged hidden
    assert (trades[0]["price_nanos"], trades[0]["size_nanos"]) == (223_820_000_000, 1_000_000_000)
    assert (trades[0]["aggressor_side"], trades[0]["flags"]) == (BID, F_HIDDEN)
    # row 2: visible execution of resting bid 11885113 (21 @ 223.81): fill then cancel, seller-initiated
    ev = [e for e in tables["order_event"].to_pylist() if e["sequence"] == 2]
    assert [(e["action"], e["order_id"], e["size_nanos"], e["flags"]) for e in ev] == [
        (ord("F"), 11885113, 21 * 10**9, 0), (ord("C"), 11885113, 21 * 10**9, F_LAST)]
    assert trades[1]["sequence"] == 2 and trades[1]["aggressor_side"] == ASK
    book = tables["book_snapshot"].slice(0, 1).to_pylist()[0]
    assert (book["ask_price_nanos"], book["bid_size_nanos"]) == ([223_950_000_000], [100 * 10**9])


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_bad_rows_become_rejects_and_good_rows_survive(tmp_path: Path) -> None:
    msg = _write(tmp_path, "XYZ_2013-01-15_0_86400000_message_2.csv", [
        "34200.123456789,1,7,100,1234500,1",     # good: add
        "34200.5,1,8,100",                       # truncated
        "34200.1x,1,9,100,1234500,1",            # bad_number (time)
        "34200.0000000001,1,9,100,1234500,1",    # bad_number: sub-nanosecond digits
        "34201,9,9,100,1234500,1",               # unknown_message
        "34201,1,9,-5,1234500,1",                # negative size
        "34201,1,9,5,1234500,0",                 # out_of_range direction
        "34201,7,0,0,5,-1",                      # out_of_range halt code
        "34202,7,0,0,-1,-1",                     # good: halt
        "34203,7,0,0,1,-1",                      # good: resume
    ])
    book = _write(tmp_path, "XYZ_2013-01-15_0_86400000_orderbook_2.csv", [
        "1234600,10,1234500,100,9999999999,0,-9999999999,0",   # good, second levels empty
        "1234600,10,1234500",                                   # truncated
        "1234600,10,1234500,100,9999999999,5,-9999999999,0",    # empty-level price with a size
    ])
    tables = merge(list(get_format("lobster").decode([msg, book])))
    rejected = tables["rejected"].to_pylist()
    reasons = [(r["location"], r["reason"]) for r in rejected]
    assert reasons == [
        (f"{msg}:2", "truncated"), (f"{book}:2", "truncated"), (f"{msg}:3", "bad_number"),
        (f"{book}:3", "out_of_range"), (f"{msg}:4", "bad_number"), (f"{msg}:5", "unknown_message"),
        (f"{msg}:6", "negative"), (f"{msg}:7", "out_of_range"), (f"{msg}:8", "out_of_range"),
    ]
    assert rejected[0]["raw"] == b"34200.5,1,8,100\n"
    assert "34200.1x" in rejected[2]["detail"] and "Direction was 0" in rejected[7]["detail"]
    events = tables["order_event"].to_pylist()
    assert [(e["sequence"], e["action"]) for e in events] == [(0, ord("A")), (8, ord("N")), (9, ord("N"))]
    # 09:30:00.123456789 New York in January is EST (UTC-5)
    est_ns = int(datetime(2013, 1, 15, 14, 30, tzinfo=UTC).timestamp()) * 10**9
    assert events[0]["ts_event_ns"] == est_ns + 123_456_789
    add = (events[0]["price_nanos"], events[0]["size_nanos"], events[0]["side"])
    assert add == (123_450_000_000, 100 * 10**9, BID)
    halt, resume = events[1], events[2]
    assert (halt["side"], halt["flags"]) == (NO_SIDE, F_LAST | F_MAYBE_BAD_BOOK)
    assert halt_state(halt["price_nanos"]) == "halt"
    assert (resume["flags"], halt_state(resume["price_nanos"])) == (F_LAST, "resume")
    [snap] = tables["book_snapshot"].to_pylist()
    assert snap["ask_price_nanos"] == [123_460_000_000, UNDEF_PRICE]
    assert snap["ask_size_nanos"] == [10 * 10**9, 0]
    assert snap["ts_event_ns"] == events[0]["ts_event_ns"] and snap["sequence"] == 0


def test_file_name_without_date_is_a_format_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "amzn_messages.csv", ["34200,1,1,1,1,1"])
    with pytest.raises(FormatError, match="amzn_messages.csv"):
        list(get_format("lobster").decode([path]))


@pytest.mark.realdata
def test_one_step_oracle_catches_an_altered_book_row(real_data: Path, tmp_path: Path) -> None:
    msg, book = _pair(real_data, AAPL, "AAPL", 10)
    lines = book.read_text().splitlines()[:60]
    fields = lines[30].split(",")
    fields[3] = str(int(fields[3]) + 1)  # best bid size one share more than the messages imply
    lines[30] = ",".join(fields)
    short_msg = _write(tmp_path, msg.name, msg.read_text().splitlines()[:60])
    short_book = _write(tmp_path, book.name, lines)
    types = _types(short_msg)
    visible = int(np.isin(types[1:], [1, 2, 3, 4]).sum())
    [report] = get_format("lobster").verify([short_msg, short_book])
    # row 31 (0-based 30) no longer follows from row 29, and row 31 does not lead to row 32
    bad = [s for s in (30, 31) if types[s] in (1, 2, 3, 4)]
    assert report.total == visible and report.ok == visible - len(bad)
    assert not report.passed and len(report.failures) == 2
