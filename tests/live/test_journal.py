"""The journal: per venue/UTC day files of ``<recv_ns> <payload>`` lines the capture reader reads back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.errors import StorageError
from tapeflow.journal import Journal, day_of
from tapeflow.live import RawFrame
from tapeflow.venues.base import Rejects
from tapeflow.wire.capture import read_capture

DAY1 = 1_763_683_200_000_000_000  # 2025-11-21T00:00:00Z
NS_DAY = 86_400 * 10**9


def test_day_of_is_the_utc_day() -> None:
    assert day_of(DAY1) == "2025-11-21"
    assert day_of(DAY1 - 1) == "2025-11-20"
    assert day_of(DAY1 + NS_DAY - 1) == "2025-11-21"


def test_append_splits_by_venue_and_day_and_reads_back(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    frames = [
        RawFrame("bybit", DAY1 - 5, b'{"a":1}'),
        RawFrame("bybit", DAY1 + 7, b'{"a":2}'),
        RawFrame("binance-usdm", DAY1 + 9, b'{"b":\n3}', "rest"),
        RawFrame("bybit", DAY1 + 11, b'{"a":3}'),
    ]
    locs = j.append(frames)
    assert locs == ["2025-11-20.jsonl:1", "2025-11-21.jsonl:1", "2025-11-21.jsonl:1", "2025-11-21.jsonl:2"]
    assert [p.name for p in j.files("bybit")] == ["2025-11-20.jsonl", "2025-11-21.jsonl"]
    assert j.files("bybit", "2025-11-21") == [tmp_path / "bybit" / "2025-11-21.jsonl"]
    assert j.files("kraken") == []
    # the newline inside a payload became a space: one frame, one line
    assert (tmp_path / "binance-usdm" / "2025-11-21.jsonl").read_bytes() == b'%d {"b": 3}\n' % (DAY1 + 9)
    rejects = Rejects("bybit")
    lines = list(read_capture(tmp_path / "bybit" / "2025-11-21.jsonl", rejects))
    assert [(c.recv_ns, c.payload, c.location) for c in lines] == [
        (DAY1 + 7, b'{"a":2}', "2025-11-21.jsonl:1"), (DAY1 + 11, b'{"a":3}', "2025-11-21.jsonl:2")]
    assert len(rejects) == 0
    j.close()


def test_reopening_continues_line_numbers_and_seals_a_cut_line(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        assert j.append([RawFrame("okx", DAY1 + i, b"{}") for i in range(3)])[-1] == "2025-11-21.jsonl:3"
    path = tmp_path / "okx" / "2025-11-21.jsonl"
    with open(path, "ab") as fh:
        fh.write(b"%d {\"cut" % (DAY1 + 4))  # a crash in the middle of a write
    with Journal(tmp_path) as j:
        assert j.append([RawFrame("okx", DAY1 + 5, b'{"x":1}')]) == ["2025-11-21.jsonl:5"]
    rows = path.read_bytes().splitlines()
    assert len(rows) == 5 and rows[3].endswith(b'{"cut') and rows[4] == b'%d {"x":1}' % (DAY1 + 5)


def test_bad_venue_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="'../x'"):
        Journal(tmp_path).append([RawFrame("../x", DAY1, b"{}")])
