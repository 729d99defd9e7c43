"""Reading capture files: file-level damage is one FormatError naming the file, never a traceback."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import zstandard

from tapeflow.errors import FormatError
from tapeflow.wire.capture import check_readable, read_capture
from tapeflow.wire.rejects import Rejects

LINES = b"".join(b'%d {"n":%d}\n' % (1_700_000_000_000_000_000 + i, i) for i in range(5000))


def _read(path: Path) -> list:
    return list(read_capture(path, Rejects("test")))


def test_a_gzip_capture_cut_short_names_the_file_and_how_far_it_got(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl.gz"
    data = gzip.compress(LINES)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"jsonl\.gz: its compressed stream is cut short .*after line"):
        _read(path)


def test_a_damaged_gzip_capture_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    with pytest.raises(FormatError, match=r"feed\.jsonl\.gz: its gzip stream is damaged"):
        _read(path)


def test_a_directory_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="is a directory, not a file"):
        _read(tmp_path)


def test_check_readable_finds_file_level_damage(tmp_path: Path) -> None:
    names = ("a.gz", "b.gz", "a.zst", "b.zst", "e")
    good_gz, cut_gz, good_zst, cut_zst, empty = (tmp_path / n for n in names)
    good_gz.write_bytes(gzip.compress(LINES))
    cut_gz.write_bytes(gzip.compress(LINES)[:-40])
    frames = zstandard.ZstdCompressor().compress(LINES) * 2  # two frames, as DBN files may have
    good_zst.write_bytes(frames)
    cut_zst.write_bytes(frames[:-10])
    empty.write_bytes(b"")
    check_readable(good_gz)
    check_readable(good_zst)
    damaged = ((cut_gz, "cut short"), (cut_zst, "cut short"), (empty, "empty"), (tmp_path, "directory"))
    for path, what in damaged:
        with pytest.raises(FormatError, match=what):
            check_readable(path)
