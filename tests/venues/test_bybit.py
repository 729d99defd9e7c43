"""Bybit decoder: v5 history file u-chain, legacy v2 capture held-id oracle, made gaps and rejects."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.book.l2 import replay_l2
from tapeflow.schemas.records import ASK, BID, F_GAP, F_LAST, F_SNAPSHOT
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.bybit.parse import BybitDecoder, decode
from tests.conftest import need

RESYNC = 1


def _decode(paths: list[Path], **kw) -> tuple[BybitDecoder, dict[str, pa.Table]]:
    dec = BybitDecoder(**kw)
    return dec, merge(list(dec.run(paths)))


@pytest.fixture(scope="module")
def history(real_data: Path) -> tuple[Path, list[bytes]]:
    path = need(real_data / "bybit/xrpusdt-ob500.data.zip")
    with zipfile.ZipFile(path) as zf:
        (member,) = zf.namelist()
        return path, [x for x in zf.read(member).splitlines() if x.strip()]


def _nanos(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 10**9 + int((frac or "0").ljust(9, "0"))


def test_registry_names_bybit() -> None:
    assert get_format("bybit").decode is decode


def test_history_u_chain_and_final_book(history: tuple[Path, list[bytes]]) -> None:
    path, raw = history
    msgs = [json.loads(x) for x in raw]
    assert msgs[0]["type"] == "snapshot"
    us = [m["data"]["u"] for m in msgs]
    chained = sum(1 for a, b in zip(us, us[1:], strict=False) if b == a + 1)
    deltas = sum(1 for m in msgs if m["type"] == "delta")
    (report,) = get_format("bybit").verify([path])
    assert report.line() == f"verified: {chained} of {deltas} bybit orderbook updates chained"
    assert report.passed and chained == deltas == 49

    # the book rebuilt here with dicts, straight from the JSON, against the decoded replay
    book: dict[str, dict[int, int]] = {"b": {}, "a": {}}
    for m in msgs:
        for side in ("b", "a"):
            for px, sz in m["data"][side]:
                if _nanos(sz):
                    book[side][_nanos(px)] = _nanos(sz)
                else:
                    book[side].pop(_nanos(px), None)
    _, tables = _decode([path])
    d = tables["book_delta"]
    assert d.num_rows == sum(len(m["data"]["b"]) + len(m["data"]["a"]) for m in msgs) + 1
    bbo = replay_l2(d, levels=1).bbo
    best_bid, best_ask = max(book["b"]), min(book["a"])
    assert (bbo["bid_px"][-1], bbo["bid_sz"][-1]) == (best_bid, book["b"][best_bid])
    assert (bbo["ask_px"][-1], bbo["ask_sz"][-1]) == (best_ask, book["a"][best_ask])
    assert bbo["status"][-1] == 0
    assert d.column("ts_event_ns")[0].as_py() == msgs[0]["cts"] * 10**6
    assert d.column("ts_recv_ns")[0].as_py() == msgs[0]["ts"] * 10**6


def test_history_with_a_deleted_line_shows_the_gap(history: tuple[Path, list[bytes]], tmp_path: Path) -> None:
    _, raw = history
    kept = raw[:10] + raw[11:]  # drop the 10th delta
    path = tmp_path / "gap.data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("gap.data", b"\n".join(kept) + b"\n")
    (report,) = get_format("bybit").verify([path])
    assert report.line() == "verified: 9 of 10 bybit orderbook updates chained" and not report.passed
    _, tables = _decode([path])
    d = tables["book_delta"]
    flags = d.column("flags").to_numpy()
    (gap_row,) = np.flatnonzero(flags & F_GAP)
    assert d.column("sequence")[gap_row].as_py() == json.loads(raw[11])["data"]["u"]
    assert flags[gap_row - 1] & F_LAST
    status = replay_l2(d, levels=1).bbo["status"]
    assert (status[:gap_row][flags[:gap_row] & F_SNAPSHOT == 0] != RESYNC).all()
    assert (status[gap_row:] == RESYNC).all()


def test_legacy_capture_held_ids_and_trades(real_data: Path) -> None:
    path = need(real_data / "cryptofeed/BYBIT.ws.25.0")
    seen_snapshot: set[str] = set()
    deltas = trades = 0
    first_trade = None
    for line in path.read_text().splitlines():
        head, _, body = line.partition(": ")
        if not body or " " in head:
            continue
        topic = json.loads(body).get("topic", "")
        symbol = topic.rpartition(".")[2]
        if topic.startswith("orderBookL2_25.") and '"type":"snapshot"' in body:
            seen_snapshot.add(symbol)
        elif topic.startswith("orderBookL2_25.") and symbol in seen_snapshot:
            deltas += 1
        elif topic.startswith("trade."):
            trades += len(json.loads(body)["data"])
            first_trade = first_trade or body
    (report,) = get_format("bybit").verify([path])
    assert report.line() == f"verified: {deltas} of {deltas} bybit orderBookL2 deltas on held ids"
    assert report.passed and deltas == 3252
    _, tables = _decode([path])
    assert tables["trade"].num_rows == trades and "rejected" not in tables
    t = tables["trade"].slice(0, 1).to_pylist()[0]
    # '"size":0.14' in the raw text: a JSON number, parsed as a decimal, never through a float
    size_text = first_trade.split('"size":')[1].split(",")[0]
    assert t["size_nanos"] == _nanos(size_text) == 140_000_000
    assert t["aggressor_side"] == (BID if '"side":"Buy"' in first_trade else ASK)
    status = replay_l2(tables["book_delta"].filter(
        pa.compute.equal(tables["book_delta"].column("symbol"), "BCHUSDT")), levels=1).bbo["status"]
    assert (status == 2).sum() == 0 and status[-1] == 0


def test_bad_frames_become_rejects(tmp_path: Path) -> None:
    snap = {"topic": "orderbook.50.XRPUSDT", "type": "snapshot", "ts": 1, "data":
            {"s": "XRPUSDT", "b": [["1.0", "5"]], "a": [["1.1", "5"]], "u": 1, "seq": 1}}
    bodies = [
        json.dumps(snap)[:-4],
        '{"topic":"trade.BCHUSDT","data":[{"symbol":"BCHUSDT","price":"1","size":NaN,"side":"Buy",'
        '"trade_id":"x","trade_time_ms":"1"}]}',
        json.dumps({**snap, "data": {**snap["data"], "b": [["1.0", "-5"]]}}),
        json.dumps({"topic": "mystery.XRPUSDT", "data": {}}),
        json.dumps({**snap, "topic": "orderbook.50.BTCUSDT", "data": {**snap["data"], "s": "BTCUSDT"}}),
        json.dumps({"topic": "tickers.XRPUSDT", "data": {}}),
        json.dumps({"topic": "publicTrade.XRPUSDT", "data": [{"s": "XRPUSDT", "S": "Up", "i": "1", "p": "1",
                                                               "v": "1", "T": 1}]}),
        json.dumps({"success": False, "ret_msg": "no such topic"}),
        json.dumps({"topic": "orderbook.50.XRPUSDT", "type": "delta", "data": 5}),
    ]
    path = tmp_path / "bad.txt"
    path.write_text("".join(f"{1_700_000_000_000_000_000 + i} {b}\n" for i, b in enumerate(bodies)))
    _, tables = _decode([path], symbols=["XRPUSDT", "BCHUSDT"])
    rej = tables["rejected"].to_pylist()
    assert [r["reason"] for r in rej] == ["truncated", "bad_number", "negative", "unknown_message",
                                          "unknown_symbol", "unsupported_channel", "bad_field", "venue_error",
                                          "bad_shape"]
    assert [r["location"] for r in rej] == [f"bad.txt:{i}" for i in range(1, 10)]
    assert "NaN" in rej[1]["detail"] and "'-5'" in rej[2]["detail"] and "'Up'" in rej[6]["detail"]
