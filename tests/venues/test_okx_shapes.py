"""OKX ``books`` in both message shapes real captures hold: with ``seqId``/``prevSeqId`` (2023 on)
and without (May 2022: all 290 book messages of a real capture were dead-lettered as
``missing_field``, issue 9). The checksum is checked on both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tapeflow.schemas.records import F_GAP, F_LAST
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.venues.test_okx import NS_FILE, _frames, _independent_checksums

OKX = get_format("okx")
OLD = Path(__file__).resolve().parents[1] / "fixtures" / "okx" / "books_2022.ns.jsonl"


def test_documented_checksum_vector() -> None:
    """The snapshot of the older fixture is OKX's documented example: 831078360."""
    pairs = _independent_checksums(_frames(OLD))
    assert pairs[0] == (831078360, 831078360)
    assert [a for a, _ in pairs] == [b for _, b in pairs] and len(pairs) == 4


def test_older_shape_decodes_every_message() -> None:
    tables = merge(list(OKX.decode([OLD])))
    assert "rejected" not in tables or tables["rejected"].num_rows == 0
    deltas = tables["book_delta"]
    assert deltas.num_rows == 1 + 4 + 1 + 2 + 3  # clear + snapshot levels, then 1, 2, 3 levels
    assert set(deltas.column("sequence").to_pylist()) == {-1}  # no seqId to carry
    assert tables["trade"].column("trade_id").to_pylist() == ["242720720"]
    (crc,) = OKX.verify([OLD])  # no seqId links to report on this shape
    assert (crc.ok, crc.total, crc.failures, crc.passed) == (4, 4, [], True)


def test_both_shapes_in_one_capture(tmp_path: Path) -> None:
    path = tmp_path / "both.jsonl"
    path.write_text(OLD.read_text() + NS_FILE.read_text())
    tables = merge(list(OKX.decode([path])))
    assert "rejected" not in tables or tables["rejected"].num_rows == 0
    crc, links = OKX.verify([path])
    assert (crc.ok, crc.total) == (4 + 12, 4 + 12) and links.passed


def _with_frame(tmp_path: Path, index: int, change) -> Path:
    lines = OLD.read_text().splitlines()
    recv, payload = lines[index].split(" ", 1)
    msg = json.loads(payload)
    change(msg["data"][0])
    lines[index] = f"{recv} {json.dumps(msg, separators=(',', ':'))}"
    path = tmp_path / "old.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_older_shape_checksum_mismatch_resyncs(tmp_path: Path) -> None:
    path = _with_frame(tmp_path, 2, lambda d: d.update(checksum=d["checksum"] + 1))
    (crc,) = OKX.verify([path])
    assert (crc.ok, crc.total) == (3, 4)
    assert "checksum" in crc.failures[0] and "old.jsonl:3" in crc.failures[0]
    rows = merge(list(OKX.decode([path])))["book_delta"].to_pylist()
    assert rows[6]["flags"] & F_GAP and rows[5]["flags"] == F_LAST  # the next book message carries F_GAP


@pytest.mark.parametrize("key", ["seqId", "prevSeqId"])
def test_one_of_the_pair_alone_is_missing_field(tmp_path: Path, key: str) -> None:
    path = _with_frame(tmp_path, 2, lambda d: d.update({key: 7}))
    rej = merge(list(OKX.decode([path])))["rejected"].to_pylist()
    assert [r["reason"] for r in rej] == ["missing_field"]
