"""The wrong --format check: it names the format that reads the sample, and refuses nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard

from tapeflow.errors import FormatError
from tapeflow.wire.registry import get_format
from tapeflow.wire.sniff import check_format
from tests.corpus.make_damaged import json_lines


def _capture(tmp_path: Path, lines: list[bytes], name: str = "capture.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


@pytest.mark.parametrize(("declared", "actual"), [("binance", "okx"), ("okx", "kraken"), ("tardis", "bybit")])
def test_a_wrong_format_names_the_one_that_reads_it(tmp_path: Path, declared: str, actual: str) -> None:
    path = _capture(tmp_path, json_lines(actual, 10))
    with pytest.raises(FormatError, match=f"does not look like {declared}: .* --format {actual}\\?"):
        check_format(get_format(declared), [path])


def test_the_right_format_passes(tmp_path: Path) -> None:
    check_format(get_format("okx"), [_capture(tmp_path, json_lines("okx", 10))])


def test_damage_no_format_reads_is_left_to_the_decode(tmp_path: Path) -> None:
    path = _capture(tmp_path, [b"1700000000000000000 {not json" for _ in range(10)])
    check_format(get_format("binance"), [path])  # its dead letters are the answer, not a guess


def test_framed_binaries_are_not_sampled(tmp_path: Path) -> None:
    path = tmp_path / "x.dbn.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(json_lines("okx", 10))))
    check_format(get_format("binance"), [path])
