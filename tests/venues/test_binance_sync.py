"""Binance sync rules on made gaps (a deleted or reordered real line, synthetic chains) and rejects."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.book.l2 import replay_l2
from tapeflow.schemas.records import F_GAP, F_LAST, F_SNAPSHOT, F_SUPERSEDED
from tapeflow.venues.base import merge
from tapeflow.venues.binance.parse import BinanceDecoder
from tapeflow.venues.binance.verify import verify
from tests.conftest import need

RESYNC = 1
HEAD_LINES = 1500  # the first 1,500 lines hold the REST snapshot (line 55) and ~100 depth diffs


def _decode(paths: list[Path], **kw) -> tuple[BinanceDecoder, dict[str, pa.Table]]:
    dec = BinanceDecoder(**kw)
    return dec, merge(list(dec.run(paths)))


@pytest.fixture(scope="module")
def head(real_data: Path) -> list[str]:
    """The first lines of the USD-M capture, as text."""
    with gzip.open(need(real_data / "binance/usdm_btcusdt_20240808.gz"), "rt") as fh:
        return [next(fh) for _ in range(HEAD_LINES)]


def _applied_depth(lines: list[str]) -> list[tuple[int, dict]]:
    """(line index, depth data) of the diffs at or after the snapshot id, in file order."""
    snap_id = next(json.loads(x.split(" ", 1)[1])["lastUpdateId"] for x in lines if "lastUpdateId" in x)
    out = []
    for i, x in enumerate(lines):
        body = json.loads(x.split(" ", 1)[1])
        if body.get("data", {}).get("e") == "depthUpdate" and body["data"]["u"] >= snap_id:
            out.append((i, body["data"]))
    return out


def _gap_checks(path: Path, lines: list[str], chained_before_gap: int, gap_u: int) -> None:
    dec, tables = _decode([path])
    assert (dec.stats.chained, dec.stats.checked, len(dec.stats.gaps)) == (
        chained_before_gap, chained_before_gap + 1, 1)
    d = tables["book_delta"]
    flags = d.column("flags").to_numpy()
    gap_rows = np.flatnonzero(flags & F_GAP)
    assert len(gap_rows) == 1
    row = gap_rows[0]
    assert d.column("sequence")[row].as_py() == gap_u
    assert row == 0 or flags[row - 1] & F_LAST  # the first row of its message
    status = replay_l2(d, levels=1).bbo["status"]
    snap_end = np.flatnonzero((flags & F_SNAPSHOT != 0) & (flags & F_LAST != 0))[0]
    assert (status[snap_end:row] != RESYNC).all()
    assert (status[row:] == RESYNC).all()  # no later snapshot in this file: RESYNC to the end
    chain, _ = verify([path])
    assert not chain.passed and chain.line() == (
        f"verified: {chained_before_gap} of {chained_before_gap + 1} binance depth messages chained")


def test_deleted_depth_line_is_a_gap(head: list[str], tmp_path: Path) -> None:
    applied = _applied_depth(head)
    assert len(applied) > 20
    gone_line, _ = applied[10]
    lines = head[:gone_line] + head[gone_line + 1:]
    path = tmp_path / "deleted.txt"
    path.write_text("".join(lines))
    # the bridge and the next nine still chain; the diff after the deleted one breaks the chain
    _gap_checks(path, lines, chained_before_gap=10, gap_u=applied[11][1]["u"])


def test_reordered_depth_lines_are_a_gap(head: list[str], tmp_path: Path) -> None:
    applied = _applied_depth(head)
    (i, _), (j, later) = applied[10], applied[11]
    lines = list(head)
    lines[i], lines[j] = lines[j], lines[i]
    path = tmp_path / "reordered.txt"
    path.write_text("".join(lines))
    _gap_checks(path, lines, chained_before_gap=10, gap_u=later["u"])


def _ns_file(path: Path, frames: list[dict]) -> Path:
    base_ns = 1_700_000_000_000_000_000
    path.write_text("".join(f"{base_ns + i} {json.dumps(f)}\n" for i, f in enumerate(frames)))
    return path


def _depth(first: int, last: int, prev: int | None, bids: list | None = None, sym: str = "XUSDT") -> dict:
    data = {"e": "depthUpdate", "E": 1, "s": sym, "U": first, "u": last, "b": bids or [["10", "2"]], "a": []}
    if prev is not None:
        data["pu"] = prev
    return {"stream": f"{sym.lower()}@depth", "data": data}


def _snap(last_id: int) -> dict:
    return {"lastUpdateId": last_id, "bids": [["10", "1"]], "asks": [["11", "1"]]}


def test_futures_chain_resyncs_at_the_next_snapshot(tmp_path: Path) -> None:
    frames = [
        _depth(95, 99, 94),        # before the snapshot, contained in it
        _depth(100, 102, 99),      # bridges lastUpdateId 100 but arrives before the REST body
        _snap(100),
        _depth(103, 105, 102),     # links
        _depth(108, 110, 107),     # pu 107 != 105: gap
        _depth(111, 112, 110),     # waits for the next snapshot
        _snap(111),
        _depth(113, 113, 112),     # links
        _depth(90, 92, 89),        # old id after sync: pu 89 != 113, a gap too
    ]
    dec, tables = _decode([_ns_file(tmp_path / "f.txt", frames)])
    d = tables["book_delta"]
    assert d.column("sequence").to_pylist() == [99, 100, 100, 100, 102, 105, 110, 111, 111, 111, 112, 113, 92]
    flags = d.column("flags").to_pylist()
    gaps = [i for i, f in enumerate(flags) if f & F_GAP]
    assert gaps == [6, 12]
    status = replay_l2(d, levels=1).bbo["status"].tolist()
    assert status == [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1]
    assert (dec.stats.checked, dec.stats.chained) == (6, 4)


def test_futures_diff_contained_in_snapshot_is_superseded(tmp_path: Path) -> None:
    frames = [_depth(95, 99, 94), _snap(101), _depth(100, 100, 99), _depth(101, 103, 100),
              _depth(104, 104, 103)]
    dec, tables = _decode([_ns_file(tmp_path / "f.txt", frames)])
    d = tables["book_delta"]
    assert d.column("sequence").to_pylist() == [99, 101, 101, 101, 100, 103, 104]
    assert [bool(f & F_SUPERSEDED) for f in d.column("flags").to_pylist()] == [0, 0, 0, 0, 1, 0, 0]
    assert (dec.stats.checked, dec.stats.chained, dec.stats.superseded) == (2, 2, 1)


def test_spot_chain_uses_contiguous_ids(tmp_path: Path) -> None:
    frames = [_depth(98, 99, None), _snap(100), _depth(99, 100, None), _depth(101, 103, None),
              _depth(104, 104, None), _depth(106, 107, None)]
    dec, tables = _decode([_ns_file(tmp_path / "spot.txt", frames)])
    flags = tables["book_delta"].column("flags").to_pylist()
    assert [f & (F_GAP | F_SUPERSEDED) for f in flags[4:]] == [F_SUPERSEDED, 0, 0, F_GAP]
    assert (dec.stats.checked, dec.stats.chained) == (3, 2)
    assert set(tables["book_delta"].column("venue").to_pylist()) == {"binance"}


def test_bare_snapshot_without_a_symbol_is_rejected(tmp_path: Path) -> None:
    _, tables = _decode([_ns_file(tmp_path / "bare.txt", [_snap(100), _depth(99, 101, 98)])])
    assert tables["rejected"].column("reason").to_pylist() == ["unknown_symbol"]
    assert tables["book_delta"].num_rows == 1


def test_symbols_keep_separate_chains(tmp_path: Path) -> None:
    a = [_depth(1, 2, 0, sym="AUSDT"), _depth(3, 4, 2, sym="AUSDT"), _depth(5, 6, 4, sym="AUSDT"),
         _depth(7, 7, 6, sym="AUSDT")]
    b = [_depth(1, 5, 0, sym="BUSDT"), _depth(6, 8, 5, sym="BUSDT"), _depth(9, 9, 8, sym="BUSDT")]
    # the bare snapshot (id 6) is bracketed only by BUSDT's buffered diff 6..8
    frames = [a[0], b[0], a[1], b[1], _snap(6), a[2], b[2], a[3]]
    dec, tables = _decode([_ns_file(tmp_path / "two.txt", frames)])
    assert (dec.stats.checked, dec.stats.chained, dec.stats.gaps) == (2, 2, [])
    assert dec.stats.unsynced == 5  # AUSDT never gets a snapshot; BUSDT's 1..5 precedes its own
    d = tables["book_delta"]
    symbols, flags = d.column("symbol").to_pylist(), d.column("flags").to_pylist()
    snap_symbols = {s for s, f in zip(symbols, flags, strict=True) if f & F_SNAPSHOT}
    assert snap_symbols == {"BUSDT"} and d.num_rows == 7 + 3


def test_bad_frames_become_rejects_with_reasons(tmp_path: Path) -> None:
    good = json.dumps(_depth(1, 2, 0))
    bodies = [
        good[:-7],                                                                  # truncated
        '{"stream":"x@trade","data":{"e":"trade","s":"XUSDT","t":1,"p":NaN}}',      # a bare NaN
        json.dumps({"stream": "x@trade", "data": {"e": "trade", "s": "XUSDT", "t": 1, "p": "NaN", "q": "1",
                                                  "m": True, "T": 1}}),
        json.dumps(_depth(1, 2, 0, bids=[["10", "-1.5"]])),                          # negative size
        json.dumps({"stream": "x@foo", "data": {"e": "fooEvent", "s": "XUSDT"}}),
        json.dumps({"stream": "x@kline_1m", "data": {"e": "kline", "s": "XUSDT"}}),
        json.dumps(_depth(1, 2, 0, sym="YUSDT")),                                    # not in the filter
        json.dumps({"stream": "x@bookTicker", "data": {"u": 5, "s": "XUSDT", "b": "1", "B": "1", "a": "2"}}),
        json.dumps(_depth(1, 2, 0, bids=[["1e400", "1"]])),
    ]
    text = "".join(f"{1_700_000_000_000_000_000 + i} {b}\n" for i, b in enumerate(bodies)) + "garbage line\n"
    path = tmp_path / "bad.txt"
    path.write_text(text)
    _, tables = _decode([path], symbols=["xusdt"])
    rej = tables["rejected"].to_pylist()
    assert [r["reason"] for r in rej] == [
        "truncated", "bad_number", "bad_number", "negative", "unknown_message", "unsupported_channel",
        "unknown_symbol", "missing_field", "out_of_range", "bad_capture_line"]
    assert [r["location"] for r in rej] == [f"bad.txt:{i}" for i in range(1, 11)]
    assert rej[2]["detail"] == "price p was 'NaN'"
    assert "'-1.5'" in rej[3]["detail"] and "'A'" in rej[7]["detail"]
    assert rej[0]["raw"] == bodies[0].encode() and rej[9]["raw"] == b"garbage line"
    assert "book_delta" not in tables and "trade" not in tables
