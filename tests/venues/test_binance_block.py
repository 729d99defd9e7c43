"""The Binance block path (compiled scanner, chains at once) against the per-frame path: same rows,
rejects, chain counts."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeflow.venues.base import Decoded, merge
from tapeflow.venues.binance.block import decode_lines
from tapeflow.venues.binance.parse import BinanceDecoder
from tapeflow.venues.binance.scan import scan_capture
from tapeflow.wire.capture import RECV, CaptureLine
from tapeflow.wire.numbers import nanos
from tests.conftest import need
from tests.venues.blockpaths import assert_identical

PLAIN = re.compile(r"\d{1,9}(\.\d{0,9})?")


def _both(paths: list[Path], **kw) -> tuple[list[Decoded], list[Decoded], BinanceDecoder, BinanceDecoder]:
    slow, fast = BinanceDecoder(fast=False, **kw), BinanceDecoder(fast=True, **kw)
    a, b = list(slow.run(paths)), list(fast.run(paths))
    # every frame accounted for alike: rows, a dead letter, quiet, or buffered for a snapshot
    assert (fast.quiet_frames, fast.buffered_frames) == (slow.quiet_frames, slow.buffered_frames)
    for chunk in a:
        rejected = chunk.tables.get("rejected")
        assert rejected is None or "empty_message" not in rejected.column("reason").to_pylist()
    return a, b, slow, fast


def test_usdm_capture_identical_to_per_frame_path(real_data: Path) -> None:
    path = need(real_data / "binance/usdm_btcusdt_20240808.gz")
    a, b, slow, fast = _both([path], chunk_rows=50_000)
    tables = assert_identical(a, b)
    assert len(b) > 2  # several chunks (a block of 8 MiB ends one), so blocks also meet chunk ends
    assert (fast.stats.chained, fast.stats.checked, fast.stats.gaps) == (6547, 6547, [])
    assert fast.buffered_frames > 0  # diffs before the REST snapshot, their rows written with it
    assert fast.stats == slow.stats
    with gzip.open(path, "rb") as fh:
        tickers = sum(1 for line in fh if b"@bookTicker" in line)
    assert tables["quote"].num_rows == tickers


@pytest.mark.parametrize("ws, http", [("BINANCE.ws.1.0", "BINANCE.http.0.0"),
                                      ("BINANCE_FUTURES.ws.1.0", "BINANCE_FUTURES.http.0.0")])
def test_cryptofeed_captures_identical_to_per_frame_path(real_data: Path, ws: str, http: str) -> None:
    paths = [need(real_data / "cryptofeed" / ws), need(real_data / "cryptofeed" / http)]
    for group in (paths, paths[:1]):
        a, b, slow, fast = _both(group)
        tables = assert_identical(a, b)
        assert fast.stats == slow.stats
        assert tables["rejected"].num_rows > 0  # their klines/acks exercise the per-frame path too


def _depth(first: int, last: int, prev: int, *, bids=(("10", "1"),), asks=(("11", "2"),),
           sym="XUSDT") -> dict:
    return {"stream": f"{sym.lower()}@depth@0ms", "data": {
        "e": "depthUpdate", "E": 5, "T": 4, "s": sym, "U": first, "u": last, "pu": prev,
        "b": [list(x) for x in bids], "a": [list(x) for x in asks]}}


def _ticker(u, b="1.5", sym="XUSDT", **extra) -> dict:
    data = {"e": "bookTicker", "u": u, "s": sym, "b": b, "B": "1", "a": "2", "A": "3", "T": 7, "E": 8}
    return {"stream": f"{sym.lower()}@bookTicker", "data": {**data, **extra}}


def _trade(t, p="100.5", m=True, **extra) -> dict:
    data = {"e": "trade", "E": 9, "T": 9, "s": "XUSDT", "t": t, "p": p, "q": "0.1", "X": "MARKET", "m": m}
    return {"stream": "xusdt@trade", "data": {**data, **extra}}


SNAPSHOT = {"lastUpdateId": 10, "E": 1, "T": 1, "bids": [["9", "1"]], "asks": [["12", "1"]]}

# Good frames around frames each of which a check of the per-frame path must catch or accept.
ODD = [
    _ticker(1), _trade(1), _depth(5, 9, 0),
    _ticker(2, b="1e3"),                        # not plain: the scalar parser accepts it
    _ticker(3, b=".5"), _trade(2, p=100),       # JSON integer price: accepted per frame
    _trade(3, p=100.5),                         # JSON number: its exact text, accepted per frame
    _ticker(4, b="-1"), _ticker(5, b=["1"]),    # negative; unhashable
    _ticker(True), _ticker("7"),                # bool sequence; digit-string sequence
    _trade(4, m="yes"), _trade(5, T="12"),      # not a boolean; digit-string time
    _depth(12, 11, 9), _depth("11", 12, 9),     # U > u; digit-string U
    _depth(11, 12, 9, bids=[["10"]]), _depth(11, 12, 9, bids=["10", "1"]),
    _depth(11, 12, 9, bids=[["10", "1", "x"]]), _ticker(8, sym="YUSDT"), _ticker(9, sym=""),
    SNAPSHOT, _depth(10, 13, 9), _depth(14, 15, 13, asks=[["11.0000000001", "1"]]),
    {"result": None, "id": 1}, {"code": -1, "msg": "bad"}, [1, 2], _ticker(10, T=None),
    {"stream": "xusdt@depth5", "data": _depth(1, 2, 0)["data"]}, _depth(16, 17, 15), _trade(6, T=1.5),
]

# Positions in ODD of the frames with the exact plain shape: the first ticker, trade and diff,
# _depth(10, 13, 9) and _depth(16, 17, 15); every other one differs from the grammar or fails a check.
FAST_AT = {0, 1, 2, 21, 28}


def _lines(bodies: list) -> list[CaptureLine]:
    return [CaptureLine(1_700_000_000_000_000_000 + i, RECV, "", _compact(b).encode(), f"odd:{i + 1}")
            for i, b in enumerate(bodies)]


def _compact(body: object) -> str:
    return json.dumps(body, separators=(",", ":"))  # as Binance sends it: no spaces


@pytest.mark.parametrize("batch", [1, 50, 1024, 5000])
def test_odd_frames_identical_in_blocks(batch: int) -> None:
    """decode_lines (several files, cryptofeed logs, live micro-batches) against feed_frame per frame."""
    lines = _lines(ODD * 50) + [CaptureLine(5, RECV, "", b'{"stream":"x", "data": {', "odd:99")]
    out = {}
    for blocks in (False, True):
        dec = _Counting(symbols=["xusdt"])
        dec.venues = ["binance-usdm"]
        chunks = []
        for i in range(0, len(lines), batch):
            if blocks:
                decode_lines(dec, [(0, line) for line in lines[i:i + batch]])
            else:
                for line in lines[i:i + batch]:
                    dec.feed_frame(0, line)
            chunks.append(dec.flush(0, "live"))
        out[blocks] = (merge(chunks), dec)
    slow, fast = out[False][0], out[True][0]
    assert slow.keys() == fast.keys()
    assert {k: t.to_pydict() for k, t in slow.items()} == {k: t.to_pydict() for k, t in fast.items()}
    reasons = slow["rejected"].column("reason").to_pylist()
    # list price, boolean sequence, sub-nano size in each copy of ODD
    assert reasons.count("bad_number") == 3 * 50 and "truncated" in reasons and "venue_error" in reasons
    assert out[True][1].frames == out[False][1].frames == len(lines)
    assert out[False][1].per_frame == len(lines)
    # Only the frames of the plain shape (FAST_AT) skip the per-frame path.
    assert out[True][1].per_frame == len(lines) - len(FAST_AT) * 50


def test_odd_frames_in_a_file_identical(tmp_path: Path) -> None:
    path = tmp_path / "odd_usdm.txt"
    body = "".join(f"{1_700_000_000_000_000_000 + i} {_compact(b)}\n" for i, b in enumerate(ODD * 40))
    path.write_text(body)
    a, b, slow, fast = _both([path], symbols=["XUSDT"], chunk_rows=100)
    tables = assert_identical(a, b)
    assert len(a) > 1 and fast.stats == slow.stats
    reasons = tables["rejected"].column("reason").to_pylist()
    # each copy of ODD repeats its good trades' ids and its good tickers' u: in the 39 later
    # copies, the trade with the highest id (6) and the ticker with the highest u (10) repeat
    # their symbol's newest (duplicates); the lower ones are below it (kept, F_GAP)
    assert reasons.count("duplicate") == 39 * 2
    damaged = len(reasons) - 39 * 2
    assert damaged % 40 == 0 and damaged >= 40 * 10


class _Counting(BinanceDecoder):
    """Counts the frames that went through the per-frame path."""

    per_frame = 0

    def feed_frame(self, index: int, line: CaptureLine) -> None:
        self.per_frame += 1
        super().feed_frame(index, line)


decimal_texts = st.one_of(
    st.from_regex(r"\d{0,11}(\.\d{0,11})?", fullmatch=True),
    st.from_regex(r"[-+]?\d{0,3}[.eE]?\d{0,3}", fullmatch=True),
    st.text(max_size=6),
)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(decimal_texts, min_size=1, max_size=30))
def test_scanned_decimals_equal_the_scalar_parser(texts: list[str]) -> None:
    """Any text as a bookTicker price and a depth level: the block path equals the per-frame path,
    and a plain decimal it takes has the value of the integer construction."""
    bodies = [_ticker(i, b=t) for i, t in enumerate(texts)]
    bodies += [_depth(i, i, i - 1, bids=[(t, "1")], asks=[("2", t)]) for i, t in enumerate(texts, 1)]
    lines = _lines(bodies)
    slow, fast = _Counting(), _Counting()
    slow.venues = fast.venues = ["binance-usdm"]
    for line in lines:
        slow.feed_frame(0, line)
    decode_lines(fast, [(0, line) for line in lines])
    a, b = slow.flush(0, "x").tables, fast.flush(0, "x").tables
    assert {k: t.to_pydict() for k, t in a.items()} == {k: t.to_pydict() for k, t in b.items()}
    plain = [PLAIN.fullmatch(t) is not None and t.isascii() for t in texts]
    assert fast.per_frame == 2 * len(texts) - 2 * sum(plain)  # a plain text never needs the slow path
    quotes = b.get("quote")
    expect = {i: int(t.partition(".")[0]) * 10**9 + int(t.partition(".")[2].ljust(9, "0") or 0)
              for i, (t, ok) in enumerate(zip(texts, plain, strict=True)) if ok}
    got = dict(zip(quotes.column("sequence").to_pylist(), quotes.column("bid_price_nanos").to_pylist(),
                   strict=True)) if quotes is not None else {}
    assert {i: got[i] for i in expect} == expect == {i: nanos(texts[i]) for i in expect}


def test_invalid_utf8_frame_is_rejected_as_per_frame(tmp_path: Path) -> None:
    goods = [_compact(_ticker(u)).encode() for u in range(1, 701)]  # each its own u: no repeat
    bodies = [body for good in goods for body in (good, good.replace(b"XUSDT", b"X\xffSDT"))]
    path = tmp_path / "utf8_usdm.txt"
    path.write_bytes(b"".join(b"%d %s\n" % (1_700_000_000_000_000_000 + i, body)
                              for i, body in enumerate(bodies)))
    a, b, _, _ = _both([path])
    tables = assert_identical(a, b)
    assert tables["quote"].num_rows == 700 and tables["rejected"].num_rows == 700


def test_odd_capture_lines_identical(tmp_path: Path) -> None:
    """Blank lines, CRLF endings, lines that are no capture lines and an unterminated last line."""
    good = [f"{1_700_000_000_000_000_000 + i} {_compact(b)}" for i, b in enumerate(ODD * 100)]
    lines = list(good)
    lines[10] += "\r"  # CRLF line: its \r is stripped
    lines[400] = ""  # blank
    lines[1500] = "garbage line"
    lines[2200] = "12345 {}"  # too few digits for a capture time
    path = tmp_path / "lines_usdm.txt"
    path.write_text("\n".join(lines))  # no newline after the last line
    (tmp_path / "cr_usdm.txt").write_text("\n".join(good[:30]) + "\r")  # and a \r after it
    a, b, _, _ = _both([tmp_path / "cr_usdm.txt"])
    assert assert_identical(a, b)["trade"].num_rows > 0
    a, b, _, _ = _both([path], symbols=["XUSDT"])
    tables = assert_identical(a, b)
    locations = [r["location"] for r in tables["rejected"].to_pylist() if r["reason"] == "bad_capture_line"]
    assert locations == ["lines_usdm.txt:1501", "lines_usdm.txt:2201"]
    assert tables["trade"].num_rows > 100


def test_capture_lines_read_capture_times_like_int() -> None:
    heads = [b"9223372036854775807", b"0000000000000001234", b"170000000000000", b"1723161255030314667"]
    data = b"".join(h + b" {}\n" for h in heads) + b"1723161255030314668 x y"  # unterminated
    *_, lines, plain = scan_capture(np.frombuffer(data, np.uint8))
    assert len(plain) == 5 and plain.all()
    assert lines[:, 2].tolist() == [int(h) for h in heads] + [1723161255030314668]
    assert [data[p:e] for _, e, _, p in lines.tolist()] == [b"{}"] * 4 + [b"x y"]
    # beyond int64, 20 digits, 14 digits, no space, blank, CRLF: all left to the line-by-line rules
    for odd in (b"9223372036854775808 {}\n", b"17231612550303146670 {}\n", b"17231612550303 {}\n",
                b"1723161255030314667{}\n", b"\n", b"1723161255030314667 {}\r\n"):
        *_, lines, plain = scan_capture(np.frombuffer(odd, np.uint8))
        assert len(plain) == 1 and not plain.any(), odd
    # many lines shorter than the first guess of their number: counted, none lost
    *_, lines, plain = scan_capture(np.frombuffer(b"\n" * 5000 + b"1723161255030314667 {}", np.uint8))
    assert len(plain) == 5001 and plain.tolist() == [False] * 5000 + [True]


def test_steady_batches_equal_frame_by_frame(real_data: Path) -> None:
    """feed_steady takes a batch whole only when it changes no instrument's sync; with the frame
    by frame fallback, the rows and counts are those of feeding every frame one by one."""
    from tapeflow.wire.capture import read_capture
    from tapeflow.wire.rejects import Rejects

    path = need(real_data / "binance/usdm_btcusdt_20240808.gz")
    lines = list(read_capture(path, Rejects("binance")))[:30_000]
    gap = 20_000 + next(i for i, ln in enumerate(lines[20_000:]) if b"depthUpdate" in ln.payload)
    del lines[gap]  # a lost diff: the book stays unsynced to the end (no snapshot after it)
    slow, fast = _Counting(), _Counting()
    slow.venues = fast.venues = ["binance-usdm"]
    for line in lines:
        slow.feed_frame(0, line)
    steady = 0
    for i in range(0, len(lines), 500):
        batch = lines[i:i + 500]
        rows, stats = fast.rows, repr(fast.stats)
        if fast.feed_steady(batch):
            steady += 1
        else:  # nothing was decoded: the caller feeds the frames one by one
            assert (fast.rows, repr(fast.stats)) == (rows, stats)
            for line in batch:
                fast.feed_frame(0, line)
    a, b = slow.flush(0, "x").tables, fast.flush(0, "x").tables
    assert {k: t.to_pydict() for k, t in a.items()} == {k: t.to_pydict() for k, t in b.items()}
    assert slow.stats == fast.stats and len(fast.stats.gaps) == 1  # the gap was seen, frame by frame
    # every batch but the first (it holds the REST snapshot) and those from the gap on
    assert steady == gap // 500 - 1


def test_quiet_runs_equal_frame_by_frame(real_data: Path) -> None:
    """feed_quiet decodes a run of frames up to the first that changes a chain's state (the REST
    snapshot, the diff that bridges it, the gap) and stops there; a caller that feeds that frame
    on its own and goes on (as the live hand-off does) gets the rows and counts of feeding every
    frame one by one, with the stops only at those frames."""
    from tapeflow.wire.capture import read_capture
    from tapeflow.wire.rejects import Rejects

    path = need(real_data / "binance/usdm_btcusdt_20240808.gz")
    lines = list(read_capture(path, Rejects("binance")))[:30_000]
    gap = 20_000 + next(i for i, ln in enumerate(lines[20_000:]) if b"depthUpdate" in ln.payload)
    del lines[gap]
    slow, fast = _Counting(), _Counting()
    slow.venues = fast.venues = ["binance-usdm"]
    for line in lines:
        slow.feed_frame(0, line)
    start, stops = 0, []
    while start < len(lines):
        run = lines[start:start + 700]
        done = fast.feed_quiet([ln.recv_ns for ln in run], [ln.payload for ln in run])
        start += done
        if done < len(run):
            stops.append(start)
            fast.feed_frame(0, lines[start])
            start += 1
    a, b = slow.flush(0, "x").tables, fast.flush(0, "x").tables
    assert {k: t.to_pydict() for k, t in a.items()} == {k: t.to_pydict() for k, t in b.items()}
    assert slow.stats == fast.stats and len(fast.stats.gaps) == 1
    snapshot = next(i for i, ln in enumerate(lines) if b"lastUpdateId" in ln.payload)
    after_gap = next(i for i in range(gap, len(lines)) if b"depthUpdate" in lines[i].payload)
    # the frames the per-frame path had to take: the snapshot (its bridge was among the diffs
    # buffered before it) and the first diff after the lost one; every other frame in a quiet run
    assert stops == [snapshot, after_gap] and fast.per_frame == 2


def test_the_live_clients_made_up_session_goes_through_the_block_path() -> None:
    """What BinanceClient decodes once to load the block path's kernels: the three frames after
    the bridge are taken by the quiet path; the snapshot (a clear and two levels), two diffs of
    two levels, one trade and one bookTicker come out."""
    from tapeflow.venues.binance.client import made_up_session

    quiet, decoded = made_up_session()
    assert quiet == 3
    assert {k: t.num_rows for k, t in decoded.tables.items() if t.num_rows} == \
        {"book_delta": 7, "trade": 1, "quote": 1}
