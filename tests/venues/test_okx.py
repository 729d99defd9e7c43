"""OKX decoder on authored recorded payloads: checksums, seqId chain, trades and rejects."""

from __future__ import annotations

import json
import zlib
from decimal import Decimal
from pathlib import Path

import pytest

from tapeflow.schemas.records import ASK, BID, F_GAP, F_LAST, F_SNAPSHOT, L2_CLEAR, L2_DELETE
from tapeflow.venues import get_format
from tapeflow.venues.base import merge

OKX = get_format("okx")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "okx"
NS_FILE = FIXTURES / "books_trades.ns.jsonl"
CF_FILE = FIXTURES / "books_trades.cryptofeed"


def _frames(path: Path) -> list[dict]:
    out = []
    for ln in path.read_text().splitlines():
        payload = ln.split(" ", 1)[1] if ln[:19].isdigit() else ln.split(": ", 1)[-1]
        if payload.startswith("{"):
            out.append(json.loads(payload))
    return out


def _independent_checksums(frames: list[dict]) -> list[tuple[int, int]]:
    """(expected, recomputed) per book message, from a dict-of-strings book built here."""
    books: dict[str, dict[str, dict[Decimal, list[str]]]] = {}
    pairs = []
    for f in frames:
        if f.get("arg", {}).get("channel") != "books" or "event" in f:
            continue
        d = f["data"][0]
        if f["action"] == "snapshot":
            books[f["arg"]["instId"]] = {"bids": {}, "asks": {}}
        book = books[f["arg"]["instId"]]
        for side in ("bids", "asks"):
            for px, sz, *_ in d[side]:
                if Decimal(sz) == 0:
                    book[side].pop(Decimal(px), None)
                else:
                    book[side][Decimal(px)] = [px, sz]
        bids = [book["bids"][k] for k in sorted(book["bids"], reverse=True)[:25]]
        asks = [book["asks"][k] for k in sorted(book["asks"])[:25]]
        fields = []
        for i in range(max(len(bids), len(asks))):
            fields += (bids[i] if i < len(bids) else []) + (asks[i] if i < len(asks) else [])
        crc = zlib.crc32(":".join(fields).encode())
        pairs.append((d["checksum"], crc - (1 << 32) if crc & (1 << 31) else crc))
    return pairs


def test_fixture_checksums_match_an_independent_crc() -> None:
    pairs = _independent_checksums(_frames(NS_FILE))
    assert len(pairs) == NS_FILE.read_text().count('"checksum":') == 12
    assert [a for a, _ in pairs] == [b for _, b in pairs]
    assert any(a < 0 for a, _ in pairs) and any(a > 0 for a, _ in pairs)


@pytest.mark.parametrize("path", [NS_FILE, CF_FILE], ids=["ns", "cryptofeed"])
def test_verify_every_checksum_and_link(path: Path) -> None:
    text = path.read_text()
    crc, links = OKX.verify([path])
    n_crc, n_upd = text.count('"checksum":'), text.count('"action":"update"')
    assert (crc.ok, crc.total, crc.failures) == (n_crc, n_crc, [])
    assert (links.ok, links.total, links.failures) == (n_upd, n_upd, [])
    assert crc.line() == "verified: 12 of 12 okx checksums"


def test_both_capture_flavours_decode_alike() -> None:
    a = merge(list(OKX.decode([NS_FILE])))
    b = merge(list(OKX.decode([CF_FILE])))
    for name in ("book_delta", "trade"):
        assert a[name].drop(["ts_recv_ns"]).equals(b[name].drop(["ts_recv_ns"]))
    # cryptofeed keeps microseconds of the same capture instants
    assert [t // 1000 for t in a["trade"].column("ts_recv_ns").to_pylist()] == \
        [t // 1000 for t in b["trade"].column("ts_recv_ns").to_pylist()]


def test_book_rows() -> None:
    frames = _frames(NS_FILE)
    snap = frames[3]["data"][0]
    deltas = merge(list(OKX.decode([NS_FILE])))["book_delta"].to_pylist()
    rows = [r for r in deltas if r["symbol"] == "BTC-USDT"]
    n_snap = 1 + len(snap["asks"]) + len(snap["bids"])
    assert n_snap == 61
    assert rows[0]["action"] == L2_CLEAR
    assert all(r["flags"] & F_SNAPSHOT for r in rows[:n_snap])
    assert [i for i, r in enumerate(rows[:n_snap]) if r["flags"] & F_LAST] == [n_snap - 1]
    assert {r["sequence"] for r in rows[:n_snap]} == {snap["seqId"]}
    updates = [f["data"][0] for f in frames
               if f.get("action") == "update" and f["arg"]["instId"] == "BTC-USDT"]
    n_levels = sum(len(u["asks"]) + len(u["bids"]) for u in updates)
    assert len(rows) - n_snap == n_levels == 10
    first = rows[n_snap]
    assert (first["side"], first["price_nanos"]) == (ASK, 43_251_100_000_000)
    assert first["size_nanos"] == 200_000_000
    assert first["flags"] == F_LAST and first["sequence"] == updates[0]["seqId"]
    tenth = next(r for r in rows if r["price_nanos"] == 43_251_050_000_000)
    assert tenth["size_nanos"] == 100_000_000  # "0.10"
    assert sum(r["action"] == L2_DELETE for r in rows) == sum(
        lv[1] == "0" for u in updates for side in ("asks", "bids") for lv in u[side])
    assert not any(r["flags"] & F_GAP for r in rows)


def test_deleted_update_line_is_a_gap(tmp_path: Path) -> None:
    lines = NS_FILE.read_text().splitlines(keepends=True)
    victim = next(i for i, ln in enumerate(lines) if '"action":"update"' in ln and "BTC-USDT" in ln)
    bad = tmp_path / "gap.jsonl"
    bad.write_text("".join(lines[:victim] + lines[victim + 1:]))
    crc, links = OKX.verify([bad])
    assert (links.ok, links.total) == (8, 9)
    assert "BTC-USDT prevSeqId" in links.failures[0]
    rows = merge(list(OKX.decode([bad])))["book_delta"].to_pylist()
    flagged = [r for r in rows if r["flags"] & F_GAP]
    nxt = json.loads(lines[victim + 1].split(" ", 1)[1])["data"][0]
    assert [(r["symbol"], r["sequence"]) for r in flagged] == [("BTC-USDT", nxt["seqId"])]
    assert crc.ok < crc.total


def test_trades() -> None:
    raw = [t for f in _frames(NS_FILE) if "data" in f and f["arg"]["channel"] == "trades" for t in f["data"]]
    trades = merge(list(OKX.decode([NS_FILE])))["trade"].to_pylist()
    assert len(trades) == len(raw) == 3
    assert [t["trade_id"] for t in trades] == [r["tradeId"] for r in raw]
    assert [t["sequence"] for t in trades] == [int(r["tradeId"]) for r in raw]
    assert [t["aggressor_side"] for t in trades] == [BID if r["side"] == "buy" else ASK for r in raw]
    assert trades[2]["size_nanos"] == 1_050_000 and trades[2]["ts_event_ns"] == int(raw[2]["ts"]) * 10**6


SNAP = ('{"arg":{"channel":"books","instId":"X-Y"},"action":"snapshot","data":[{"asks":[["2.0","1","0","1"]],'
        '"bids":[["1.0","1","0","1"]],"ts":"1700000000000","checksum":0,"prevSeqId":-1,"seqId":5}]}')


def _update(level: str, inst: str = "X-Y") -> str:
    return (f'{{"arg":{{"channel":"books","instId":"{inst}"}},"action":"update","data":[{{"asks":[{level}],'
            '"bids":[],"ts":"1700000000001","checksum":0,"prevSeqId":5,"seqId":6}]}')


@pytest.mark.parametrize(("frame", "reason"), [
    (_update('["2.0","1","0","1"]')[:-9], "truncated"),
    (_update('["2.0",NaN,"0","1"]'), "bad_number"),
    (_update('["2.0","NaN","0","1"]'), "bad_number"),
    (_update('["2.0","-3","0","1"]'), "negative"),
    (_update('["2.0","1","0","1"]', inst="Q-R"), "no_snapshot"),
    ('{"arg":{"channel":"tickers","instId":"X-Y"},"data":[]}', "unknown_message"),
    ('{"event":"error","code":"60012","msg":"Invalid request"}', "unknown_message"),
    ('{"arg":{"channel":"books","instId":"X-Y"},"action":"update"}', "missing_field"),
])
def test_bad_frames_become_rejects(tmp_path: Path, frame: str, reason: str) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text(f"1700000000000000000 {SNAP}\n1700000000000000001 {frame}\n1700000000000000002 pong\n")
    tables = merge(list(OKX.decode([path])))
    rej = tables["rejected"].to_pylist()
    assert [r["reason"] for r in rej] == [reason]
    assert (rej[0]["location"], rej[0]["raw"]) == ("o.jsonl:2", frame.encode())
    assert tables["book_delta"].num_rows == 3
