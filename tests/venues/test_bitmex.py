"""BitMEX decoder on the real capture: levels by id, uncrossed oracle, quotes, trades, rejects."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tapeflow.schemas.records import ASK, BID, F_GAP, F_LAST, F_SNAPSHOT, L2_CLEAR, L2_DELETE, L2_SET
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.conftest import need

BITMEX = get_format("bitmex")
SUB_NANO = "TRXU21"  # prices like 0.0000016425 have 10 decimals: not representable in 1e-9 units


def _frames(path: Path) -> list[dict]:
    return [json.loads(ln.split(": ", 1)[1]) for ln in path.read_text().splitlines()
            if ': {"table"' in ln]


def test_real_book_never_crossed(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "BITMEX.ws.1.0")
    synced: set[str] = set()
    expected = 0
    for f in _frames(path):
        if f["table"] != "orderBookL2":
            continue
        symbols = {d["symbol"] for d in f["data"]} - {SUB_NANO}
        if f["action"] == "partial":
            synced |= symbols
        expected += len(symbols & synced)
    assert expected == 1976
    (report,) = BITMEX.verify([path])
    assert (report.ok, report.total, report.failures) == (expected, expected, [])


def test_real_rows_resolve_prices_by_id(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "BITMEX.ws.1.0")
    frames = [f for f in _frames(path) if f["table"] == "orderBookL2"]
    price_of: dict[int, Decimal] = {}
    want = []
    for f in frames:
        for d in f["data"]:
            if d["symbol"] == SUB_NANO:
                continue
            if "price" in d:
                price_of[d["id"]] = Decimal(repr(d["price"]))
            nanos = int(price_of[d["id"]] * 10**9)
            side = BID if d["side"] == "Buy" else ASK
            action = L2_DELETE if f["action"] == "delete" else L2_SET
            size = d.get("size", 0) * 10**9 if action == L2_SET else 0
            want.append((d["symbol"], side, action, nanos, size))
    rows = merge(list(BITMEX.decode([path])))["book_delta"].to_pylist()
    got = [(r["symbol"], r["side"], r["action"], r["price_nanos"], r["size_nanos"]) for r in rows
           if r["side"] != ord("N")]
    assert len(got) == len(want) > 14_000
    assert got == want
    assert sum(r["flags"] & F_SNAPSHOT != 0 and r["flags"] & F_LAST != 0 for r in rows) == 9
    assert not any(r["flags"] & F_GAP for r in rows)


def test_real_quotes_trades_and_sub_nano_rejects(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "BITMEX.ws.1.0")
    frames = _frames(path)
    raw_quotes = [d for f in frames if f["table"] == "quote" for d in f["data"]
                  if d["symbol"] != SUB_NANO]
    raw_trades = [(f["action"], d) for f in frames if f["table"] == "trade" for d in f["data"]
                  if d["symbol"] != SUB_NANO]
    tables = merge(list(BITMEX.decode([path])))
    quotes = tables["quote"].to_pylist()
    assert len(quotes) == len(raw_quotes) == 435
    assert quotes[0]["bid_size_nanos"] == raw_quotes[0]["bidSize"] * 10**9
    trades = tables["trade"].to_pylist()
    assert len(trades) == len(raw_trades) == 26
    assert [t["trade_id"] for t in trades] == [d["trdMatchID"] for _, d in raw_trades]
    assert [t["aggressor_side"] for t in trades] == [
        BID if d["side"] == "Buy" else ASK for _, d in raw_trades]
    assert [bool(t["flags"] & F_SNAPSHOT) for t in trades] == [a == "partial" for a, _ in raw_trades]
    rejected = tables["rejected"].to_pylist()
    assert {r["symbol"] for r in rejected} == {SUB_NANO}
    assert [r["reason"] for r in rejected] == ["bad_number"] * 3 + ["no_snapshot"] * 2
    assert "'0.0000016425'" in rejected[0]["detail"]  # the text as BitMEX printed it


def _capture(tmp_path: Path, frames: list[str]) -> Path:
    path = tmp_path / "bm.jsonl"
    path.write_text("".join(f"{1_700_000_000_000_000_000 + i} {f}\n" for i, f in enumerate(frames)))
    return path


PARTIAL = ('{"table":"orderBookL2","action":"partial","data":[{"symbol":"XBTUSD","id":1,"side":"Sell",'
           '"size":5,"price":101.5},{"symbol":"XBTUSD","id":2,"side":"Buy","size":7,"price":100}]}')


def _book(action: str, row: str) -> str:
    return f'{{"table":"orderBookL2","action":"{action}","data":[{{"symbol":"XBTUSD",{row}}}]}}'


def test_update_and_delete_take_price_from_the_id(tmp_path: Path) -> None:
    frames = [PARTIAL, _book("update", '"id":1,"side":"Sell","size":9'),
              _book("delete", '"id":2,"side":"Buy"'),
              _book("insert", '"id":3,"side":"Buy","size":1,"price":1e-05')]
    rows = merge(list(BITMEX.decode([_capture(tmp_path, frames)])))["book_delta"].to_pylist()
    assert [(r["side"], r["action"], r["price_nanos"], r["size_nanos"], r["flags"]) for r in rows[3:]] == [
        (ASK, L2_SET, 101_500_000_000, 9 * 10**9, F_LAST), (BID, L2_DELETE, 100 * 10**9, 0, F_LAST),
        (BID, L2_SET, 10_000, 10**9, F_LAST)]


@pytest.mark.parametrize(("frame", "reason"), [
    (_book("update", '"id":1,"side":"Sell","size":9')[:-4], "truncated"),
    (_book("update", '"id":1,"side":"Sell","size":NaN'), "bad_number"),
    (_book("update", '"id":1,"side":"Sell","size":-9'), "negative"),
    (_book("update", '"id":77,"side":"Sell","size":9'), "unknown_id"),
    (_book("insert", '"id":4,"side":"Sell","size":9'), "missing_field"),
    ('{"table":"liquidation","action":"insert","data":[]}', "unknown_message"),
    ('{"status":400,"error":"Unknown table"}', "unknown_message"),
])
def test_bad_frames_become_rejects(tmp_path: Path, frame: str, reason: str) -> None:
    ok = _book("update", '"id":2,"side":"Buy","size":3')
    tables = merge(list(BITMEX.decode([_capture(tmp_path, [PARTIAL, frame, ok])])))
    rej = tables["rejected"].to_pylist()
    assert [r["reason"] for r in rej] == [reason]
    assert (rej[0]["location"], rej[0]["raw"]) == ("bm.jsonl:2", frame.encode())
    last = tables["book_delta"].to_pylist()[-1]
    assert last["size_nanos"] == 3 * 10**9
    # a frame that parsed names its symbols: losing it puts the book behind, so F_GAP follows
    assert bool(last["flags"] & F_GAP) == (reason in ("negative", "unknown_id", "missing_field"))


def test_an_empty_book_partial_clears_the_filtered_symbol(tmp_path: Path) -> None:
    # BitMEX's partial of an empty book names its symbol only in "filter" (a real one in tardis-node's
    # BitMEX fixtures: XBTZ21); it made no row, the book kept its old levels. Updates of nothing are
    # never sent: damage
    empty = ('{"table":"orderBookL2","action":"partial","keys":["symbol","id","side"],'
             '"filter":{"symbol":"XBTUSD"},"data":[]}')
    frames = [PARTIAL, empty, '{"table":"orderBookL2","action":"update","data":[]}',
              _book("insert", '"id":3,"side":"Buy","size":1,"price":99')]
    tables = merge(list(BITMEX.decode([_capture(tmp_path, frames)])))
    rows = tables["book_delta"].to_pylist()[3:]
    assert [(r["symbol"], r["action"], r["flags"]) for r in rows] == [
        ("XBTUSD", L2_CLEAR, F_SNAPSHOT | F_LAST), ("XBTUSD", L2_SET, F_LAST)]
    assert [(r["reason"], r["location"]) for r in tables["rejected"].to_pylist()] == [
        ("missing_field", "bm.jsonl:3")]
