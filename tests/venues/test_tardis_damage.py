"""Damaged Tardis CSVs: a damaged line is one dead letter, a damaged file is one error naming it."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tapeflow.errors import FormatError
from tapeflow.venues.base import merge
from tapeflow.venues.tardis import reader
from tapeflow.venues.tardis.parse import decode

HEADER = b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"


def _line(i: int) -> bytes:
    return b"ex,BTCUSDT,%d,%d,%d,buy,100.%d,0.5" % (1000 + i, 2000 + i, 1 + i, i)


def _decode(path: Path) -> dict:
    return merge(list(decode([path])))


def _reasons(tables: dict) -> list[tuple[str, str]]:
    return [(r["reason"], r["location"]) for r in tables["rejected"].to_pylist()]


def _file(tmp_path: Path, bad: bytes, *, gz: bool = False) -> Path:
    body = HEADER + b"".join(line + b"\n" for line in [_line(0), _line(1), bad, _line(3)])
    path = tmp_path / ("trades.csv.gz" if gz else "trades.csv")
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_a_non_utf8_byte_rejects_its_line_only(tmp_path: Path, gz: bool) -> None:
    path = _file(tmp_path, _line(2).replace(b"BTC", b"B\xffTC"), gz=gz)
    tables = _decode(path)
    assert tables["trade"].column("sequence").to_pylist() == [1, 2, 4]
    [reject] = tables["rejected"].to_pylist()
    assert (reject["reason"], reject["location"]) == ("bad_row", f"{path}:4")
    assert "not UTF-8: byte 0xff at column 5" in reject["detail"] and b"\xff" in reject["raw"]


def test_a_number_of_5000_digits_rejects_its_line_only(tmp_path: Path) -> None:
    path = _file(tmp_path, _line(2).replace(b"100.2", b"1" * 5000))
    tables = _decode(path)
    assert tables["trade"].column("sequence").to_pylist() == [1, 2, 4]
    assert _reasons(tables) == [("out_of_range", f"{path}:4")]


@pytest.mark.parametrize("line_bytes", [3 << 20, 50 << 20])
def test_an_overlong_line_rejects_its_line_only(tmp_path: Path, line_bytes: int) -> None:
    path = _file(tmp_path, _line(2) + b"," + b"x" * line_bytes)
    tables = _decode(path)
    assert tables["trade"].column("sequence").to_pylist() == [1, 2, 4]
    [reject] = tables["rejected"].to_pylist()
    assert (reject["reason"], reject["location"]) == ("bad_row", f"{path}:4")
    assert f"line of {len(_line(2)) + 1 + line_bytes:,} bytes" in reject["detail"]
    assert len(reject["raw"]) <= reader.MAX_LINE_BYTES  # the dead letter does not carry 50 MB


def test_an_overlong_line_at_the_end_without_newline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "CHUNK_BYTES", 64)
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 100)
    path = tmp_path / "trades.csv"
    path.write_bytes(HEADER + _line(0) + b"\n" + _line(1) + b"\n" + b"y" * 1000)
    tables = _decode(path)
    assert tables["trade"].column("sequence").to_pylist() == [1, 2]
    assert _reasons(tables) == [("bad_row", f"{path}:4")]


def test_a_gzip_cut_short_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv.gz"
    data = gzip.compress(HEADER + b"".join(_line(i) + b"\n" for i in range(2000)))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"trades\.csv\.gz: its compressed stream is cut short"):
        list(decode([path]))


def test_a_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=f"{tmp_path} is a directory"):
        list(decode([tmp_path]))


def test_a_wrong_header_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "capture.jsonl"
    path.write_bytes(b'1700000000000000000 {"a":1}\n')
    with pytest.raises(FormatError, match=r"capture\.jsonl: not a Tardis CSV"):
        list(decode([path]))
