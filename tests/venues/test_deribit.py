"""Deribit ``book.*`` and ``trades.*`` (``tapeflow/venues/deribit``): the real option captures' books
(the README's oracle: the ``prev_change_id`` chain has 0 gaps), a replay of their levels written
here from the raw JSON, a lost change, the documented trades message and a real combo trade, and
every damaged frame a dead letter with its reason."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tapeflow.schemas.records import ASK, BID, F_GAP, F_LAST, F_SNAPSHOT, L2_CLEAR, REJECTED
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.conftest import need

NS = 1_000_000_000
# docs.deribit.com, trades.{instrument_name}.{interval}: the notification's example
DOC_TRADE = {"trade_seq": 30289432, "trade_id": "48079254", "timestamp": 1590484156350, "tick_direction": 0,
             "price": 8950.0, "mark_price": 8948.9, "instrument_name": "BTC-PERPETUAL",
             "index_price": 8955.88, "direction": "sell", "amount": 10.0}


def _notification(channel: str, data: object) -> str:
    params = {"channel": channel, "data": data}
    return json.dumps({"jsonrpc": "2.0", "method": "subscription", "params": params})


def _capture(path: Path, *frames: str) -> Path:
    path.write_text("".join(f"{1_617_644_856_000_000_000 + i} {f}\n" for i, f in enumerate(frames)))
    return path


def _decode(*paths: Path) -> dict:
    return merge(list(get_format("deribit").decode(list(paths))))


def _captures(real_data: Path) -> list[Path]:
    paths = sorted(need(real_data / "options" / "deribit").glob("cryptofeed_DERIBIT*"))
    if len(paths) != 2:
        pytest.skip(f"expected the two Deribit captures, found {len(paths)}")
    return paths


def _replayed_books(path: Path) -> dict[str, dict[int, dict[Decimal, Decimal]]]:
    """Each instrument's final book, from the capture's book frames by plain dict updates."""
    books: dict[str, dict[int, dict[Decimal, Decimal]]] = {}
    for line in path.read_text().splitlines():
        _, sep, payload = line.partition(": ")
        if not sep or '"channel":"book.' not in payload:
            continue
        data = json.loads(payload, parse_float=Decimal)["params"]["data"]
        inst = data["instrument_name"]
        if data["type"] == "snapshot":
            books[inst] = {BID: {}, ASK: {}}
        for side, key in ((BID, "bids"), (ASK, "asks")):
            for action, price, amount in data[key]:
                if action == "delete":
                    books[inst][side].pop(price, None)
                else:
                    books[inst][side][price] = amount
    return books


@pytest.mark.realdata
def test_real_captures_verify_every_change_link_and_rebuild_the_replayed_books(real_data: Path) -> None:
    for path, links in zip(_captures(real_data), (177, 46), strict=True):
        [report] = get_format("deribit").verify([path])
        print(report.line(), report.details)
        assert (report.ok, report.total, report.failures) == (links, links, [])  # README: 0 gaps
        tables = _decode(path)
        deltas = tables["book_delta"].to_pylist()
        assert all(r["reason"] == "unsupported_channel" for r in tables["rejected"].to_pylist())  # tickers
        books: dict[str, dict[int, dict[int, int]]] = {}
        for r in deltas:
            if r["action"] == L2_CLEAR:
                books[r["symbol"]] = {BID: {}, ASK: {}}
                assert r["flags"] & F_SNAPSHOT
                continue
            levels = books[r["symbol"]][r["side"]]
            if r["size_nanos"]:
                levels[r["price_nanos"]] = r["size_nanos"]
            else:
                levels.pop(r["price_nanos"], None)
        expected = _replayed_books(path)
        assert set(books) == set(expected) and len(books) == 10
        for inst, sides in expected.items():
            for side, levels in sides.items():
                want = {int(p * NS): int(a * NS) for p, a in levels.items()}
                assert books[inst][side] == want, (inst, side)
            if books[inst][BID] and books[inst][ASK]:
                assert max(books[inst][BID]) < min(books[inst][ASK]), inst  # never crossed
        assert not any(r["flags"] & F_GAP for r in deltas)


@pytest.mark.realdata
def test_a_lost_change_breaks_the_chain_and_flags_the_next_row(real_data: Path, tmp_path: Path) -> None:
    path = _captures(real_data)[1]
    lines = path.read_text().splitlines(keepends=True)
    changes = [i for i, line in enumerate(lines) if '"type":"change"' in line]
    lost = json.loads(lines.pop(changes[3]).partition(": ")[2])["params"]["data"]["instrument_name"]
    damaged = tmp_path / "lost.txt"
    damaged.write_text("".join(lines))
    [report] = get_format("deribit").verify([damaged])
    assert (report.ok, report.total) == (44, 45) and "prev_change_id" in report.failures[0]
    gaps = [r for r in _decode(damaged)["book_delta"].to_pylist() if r["flags"] & F_GAP]
    assert len(gaps) == 1 and gaps[0]["symbol"] == lost


def test_the_documented_trade_and_a_real_combo_trade(real_data: Path, tmp_path: Path) -> None:
    cap = _capture(tmp_path / "t.txt", _notification("trades.BTC-PERPETUAL.raw", [DOC_TRADE]))
    [row] = _decode(cap)["trade"].to_pylist()
    assert (row["symbol"], row["sequence"], row["trade_id"], row["price_nanos"], row["size_nanos"],
            row["aggressor_side"], row["ts_event_ns"], row["flags"]) == (
        "BTC-PERPETUAL", 30289432, "48079254", 8950 * NS, 10 * NS, ASK, 1590484156350 * 1_000_000, F_LAST)
    combo = need(real_data / "options" / "deribit" / "nautilus_ws_trades_option_combo.json")
    cap = _capture(tmp_path / "c.txt", json.dumps(json.loads(combo.read_text())))
    trades = _decode(cap)["trade"].to_pylist()
    assert [(t["symbol"], t["price_nanos"], t["size_nanos"], t["aggressor_side"], t["sequence"])
            for t in trades] == [("BTC-CS-19MAY26-70000_75000", 63_900_000, 100_000_000, ASK, 1)]


SNAP = {"type": "snapshot", "timestamp": 1618677845542, "instrument_name": "ETH-30APR21-2560-P",
        "change_id": 10, "bids": [["new", 0.083, 5.0]], "asks": [["new", 0.0885, 240.0]]}


def _change(prev: int, cid: int, level: list) -> str:
    data = {"type": "change", "timestamp": 1618677845600, "instrument_name": "ETH-30APR21-2560-P",
            "prev_change_id": prev, "change_id": cid, "bids": [level], "asks": []}
    return _notification("book.ETH-30APR21-2560-P.raw", data)


@pytest.mark.parametrize(("frame", "reason"), [
    (_notification("ticker.ETH-30APR21-2560-P.raw", {}), "unsupported_channel"),
    (_change(10, 11, ["insert", 0.08, 1.0]), "bad_field"),
    (_change(10, 11, ["new", "x", 1.0]), "bad_number"),
    (_change(10, 11, ["new", 0.08]), "bad_shape"),
    (_change(10, 11, ["new", 0.08, -1.0]), "negative"),
    (_notification("book.ETH-30APR21-2560-P.raw", {**SNAP, "type": "delta"}), "unknown_message"),
    (json.dumps({"jsonrpc": "2.0", "id": 3, "error": {"code": 10001, "message": "error"}}), "venue_error"),
    (_notification("trades.BTC-PERPETUAL.raw", [{**DOC_TRADE, "direction": "up"}]), "bad_field"),
    (_notification("trades.BTC-PERPETUAL.raw", []), "missing_field"),
])
def test_bad_frames_become_rejects(tmp_path: Path, frame: str, reason: str) -> None:
    cap = _capture(tmp_path / "b.txt", _notification("book.ETH-30APR21-2560-P.raw", SNAP), frame)
    tables = _decode(cap)
    assert [r["reason"] for r in tables.get("rejected", REJECTED.empty_table()).to_pylist()] == [reason]
    assert tables["book_delta"].num_rows == 3  # the snapshot's clear + two levels


def test_change_before_snapshot_and_a_doubled_trade_frame(tmp_path: Path) -> None:
    trade = _notification("trades.BTC-PERPETUAL.raw", [DOC_TRADE])
    snap = _notification("book.ETH-30APR21-2560-P.raw", SNAP)
    cap = _capture(tmp_path / "d.txt", _change(9, 10, ["new", 0.08, 1.0]), trade, trade, snap,
                   _change(10, 11, ["delete", 0.083, 0.0]), _change(12, 13, ["change", 0.08, 2.0]))
    tables = _decode(cap)
    assert [r["reason"] for r in tables["rejected"].to_pylist()] == ["no_snapshot", "duplicate"]
    assert tables["trade"].num_rows == 1
    flags = [r["flags"] for r in tables["book_delta"].to_pylist()]
    assert [f & F_GAP for f in flags] == [0, 0, 0, 0, F_GAP]  # the change after the lost one (11 -> 12)
