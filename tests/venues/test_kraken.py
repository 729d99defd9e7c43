"""Kraken decoder: every real checksum verified, truncation, gaps, trades and rejects."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from tapeflow.book.l2 import replay_l2
from tapeflow.schemas.records import ASK, BID, BOOK_DELTA, F_GAP, F_LAST, F_SNAPSHOT, L2_DELETE, TRADE
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.conftest import need

KRAKEN = get_format("kraken")


def _book_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if '"book-' in ln and '"event"' not in ln]


def _decode(paths: list[Path]) -> dict:
    return merge(list(KRAKEN.decode(paths)))


def test_every_real_checksum_verified(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")
    expected = sum(ln.count('"c":') for ln in _book_lines(path))
    assert expected == 4269
    (report,) = KRAKEN.verify([path])
    assert report.failures == []
    assert (report.ok, report.total) == (expected, expected)
    assert report.line() == f"verified: {expected} of {expected} kraken checksums"


def _crc_from_strings(asks: list[tuple[int, int]], bids: list[tuple[int, int]], pdp: int, vdp: int) -> int:
    def text(value_nanos: int, places: int) -> str:
        whole, frac = divmod(value_nanos, 10**9)
        s = f"{whole}.{frac:09d}"[: len(str(whole)) + 1 + places] if places else str(whole)
        return s.replace(".", "").lstrip("0")

    return zlib.crc32("".join(text(p, pdp) + text(v, vdp) for p, v in [*asks, *bids]).encode())


def test_replayed_deltas_reproduce_the_venue_checksums(real_data: Path) -> None:
    """The emitted rows, replayed by tapeflow.book.l2, hash to each message's ``c``."""
    path = need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")
    crcs: dict[str, list[int]] = {}
    places: dict[str, tuple[int, int]] = {}
    for ln in _book_lines(path):
        msg = json.loads(ln.split(": ", 1)[1])
        if "as" in msg[1]:
            px, vol = msg[1]["as"][0][:2]
            places[msg[-1]] = (len(px.split(".")[1]), len(vol.split(".")[1]))
        for part in msg[1:-2]:
            if "c" in part:
                crcs.setdefault(msg[-1], []).append(int(part["c"]))
    deltas = _decode([path])["book_delta"]
    symbols = np.array(deltas.column("symbol").to_pylist())
    flags = deltas.column("flags").to_numpy()
    checked = 0
    for pair, expected in crcs.items():
        rows = deltas.filter(symbols == pair)
        f = flags[symbols == pair]
        ends = np.flatnonzero(((f & F_LAST) != 0) & ((f & F_SNAPSHOT) == 0))
        out = replay_l2(rows, levels=10, snapshot_rows=ends)
        s = out.snaps
        got = []
        for k in range(len(ends)):
            asks = [(p, v) for p, v in zip(s["snap_ask_px"][k], s["snap_ask_sz"][k], strict=True) if v]
            bids = [(p, v) for p, v in zip(s["snap_bid_px"][k], s["snap_bid_sz"][k], strict=True) if v]
            got.append(_crc_from_strings(asks, bids, *places[pair]))
        assert got == expected, pair
        checked += len(got)
    assert checked == 4269


def test_altered_volume_fails_checksum_and_flags_next_message(real_data: Path, tmp_path: Path) -> None:
    src = need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")
    lines = src.read_text().splitlines(keepends=True)
    target = next(i for i, ln in enumerate(lines) if '[992,{"b":[["354.15000000","5.00000000"' in ln)
    lines[target] = lines[target].replace('"5.00000000"', '"5.50000000"')
    bad = tmp_path / "KRAKEN.ws.50.0"
    bad.write_text("".join(lines))
    (report,) = KRAKEN.verify([bad])
    assert report.total == 4269
    assert report.ok < report.total
    assert report.failures[0].startswith(f"KRAKEN.ws.50.0:{target + 1}: XMR/USD checksum")
    deltas = _decode([bad])["book_delta"]
    recv = deltas.column("ts_recv_ns").to_pylist()
    sym = deltas.column("symbol").to_pylist()
    flags = deltas.column("flags").to_pylist()
    after = next(ln for ln in lines[target + 1:] if '"XMR/USD"]' in ln)
    next_ns = int(Decimal(after.split(": ", 1)[0]) * 10**9)
    first = next(i for i in range(len(recv)) if recv[i] == next_ns and sym[i] == "XMR/USD")
    assert flags[first] & F_GAP
    assert sum(1 for f, s in zip(flags, sym, strict=True) if f & F_GAP and s != "XMR/USD") == 0


def _ns_capture(tmp_path: Path, frames: list[object]) -> Path:
    path = tmp_path / "kraken.jsonl"
    t0 = 1_700_000_000_000_000_000
    path.write_text("".join(f"{t0 + i} {json.dumps(f)}\n" for i, f in enumerate(frames)))
    return path


def test_depth_truncation_drops_the_worst_level_like_the_venue(tmp_path: Path) -> None:
    asks = [["10.10", "1.000", "1.0"], ["10.20", "2.000", "1.0"], ["10.30", "3.000", "1.0"]]
    bids = [["10.00", "1.500", "1.0"], ["9.90", "2.500", "1.0"], ["9.80", "3.500", "1.0"]]
    # after the update the venue keeps 3 asks: 10.05, 10.10, 10.20 (10.30 falls out)
    crc = zlib.crc32(b"1005500" b"10101000" b"10202000" b"10001500" b"9902500" b"9803500")
    frames = [
        [7, {"as": asks, "bs": bids}, "book-3", "AB/CD"],
        [7, {"a": [["10.05", "0.500", "2.0"]], "c": str(crc)}, "book-3", "AB/CD"],
    ]
    path = _ns_capture(tmp_path, frames)
    (report,) = KRAKEN.verify([path])
    assert (report.ok, report.total, report.failures) == (1, 1, [])
    deltas = _decode([path])["book_delta"]
    assert deltas.num_rows == 1 + 6 + 2
    last = deltas.slice(7).to_pylist()
    assert [(r["side"], r["action"], r["price_nanos"]) for r in last] == [
        (ASK, ord("U"), 10_050_000_000), (ASK, L2_DELETE, 10_300_000_000)]
    assert [r["flags"] for r in last] == [0, F_LAST]


def test_shared_dict_update_and_republish_flag(tmp_path: Path) -> None:
    frames = [
        [7, {"as": [["5.0", "1.0", "1.0"]], "bs": [["4.0", "1.0", "1.0"]]}, "book-10", "X/Y"],
        [7, {"a": [["5.1", "2.0", "2.0", "r"]], "b": [["4.0", "0.0", "2.0"]],
             "c": str(zlib.crc32(b"50105120"))}, "book-10", "X/Y"],
    ]
    (report,) = KRAKEN.verify([_ns_capture(tmp_path, frames)])
    assert (report.ok, report.total) == (1, 1)


def test_real_trades(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "KRAKEN.ws.48.0")
    raw = [t for ln in path.read_text().splitlines() if ln.endswith('"]') and '"trade","' in ln
           for t in json.loads(ln.split(": ", 1)[1])[1]]
    trades = _decode([path])["trade"]
    assert trades.schema == TRADE.arrow_schema()
    assert trades.num_rows == len(raw) == 10
    assert Counter(trades.column("aggressor_side").to_pylist()) == {
        BID: sum(t[3] == "b" for t in raw), ASK: sum(t[3] == "s" for t in raw)}
    assert trades.column("price_nanos")[0].as_py() == 354_110_000_000


@pytest.mark.parametrize(("frame", "reason"), [
    ('[7,{"a":[["5.0","1.0","2.0"]],"c":"1"},"book-10","X', "truncated"),
    ('[7,{"a":[["5.0",NaN,"2.0"]],"c":"1"},"book-10","X/Y"]', "bad_number"),
    ('[7,{"a":[["5.0","NaN","2.0"]],"c":"1"},"book-10","X/Y"]', "bad_number"),
    ('[7,{"a":[["5.0","-1.0","2.0"]],"c":"1"},"book-10","X/Y"]', "negative"),
    ('[7,{"a":[["5.0"]],"c":"1"},"book-10","X/Y"]', "bad_shape"),
    ('[7,{"x":1},"spread","X/Y"]', "unknown_message"),
    ('{"event":"mystery"}', "unknown_message"),
    ('[7,{"a":[["5.0","1.0","2.0"]],"c":"1"},"book-10","Z/Q"]', "no_snapshot"),
])
def test_bad_frames_become_rejects(tmp_path: Path, frame: str, reason: str) -> None:
    snap = '[7,{"as":[["5.0","1.0","1.0"]],"bs":[["4.0","1.0","1.0"]]},"book-10","X/Y"]'
    path = tmp_path / "k.jsonl"
    path.write_text(f"1700000000000000000 {snap}\n1700000000000000001 {frame}\n")
    tables = _decode([path])
    rej = tables["rejected"].to_pylist()
    assert [r["reason"] for r in rej] == [reason]
    assert rej[0]["location"] == "k.jsonl:2"
    assert rej[0]["raw"] == frame.encode()
    assert tables["book_delta"].schema == BOOK_DELTA.arrow_schema()
    assert tables["book_delta"].num_rows == 3


def test_rejected_update_flags_a_gap_on_the_next_message(tmp_path: Path) -> None:
    snap = '[7,{"as":[["5.0","1.0","1.0"]],"bs":[["4.0","1.0","1.0"]]},"book-10","X/Y"]'
    bad = '[7,{"a":[["5.0","-1.0","2.0"]],"c":"1"},"book-10","X/Y"]'
    good = '[7,{"b":[["4.0","2.0","2.0"]]},"book-10","X/Y"]'
    path = tmp_path / "k.jsonl"
    path.write_text(f"1700000000000000000 {snap}\n1700000000000000001 {bad}\n1700000000000000002 {good}\n")
    rows = _decode([path])["book_delta"].to_pylist()
    assert [r["flags"] for r in rows[3:]] == [F_GAP | F_LAST]
    assert rows[3]["side"] == BID
