"""Snapshots consistent with the stream position: the Binance REST book bridges to the next diff and
rebuilds the batch decoder's book; a connection that joins mid-stream gets a snapshot in the venue's
wire format from which every later checksum verifies (checksums recomputed here independently)."""

from __future__ import annotations

import asyncio
import gzip
import json
import urllib.request
import zipfile
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from tapeflow.book.l2 import replay_l2
from tapeflow.replay import ReplayServer
from tapeflow.venues.base import merge
from tapeflow.venues.binance.parse import BinanceDecoder
from tests.conftest import REPO, need
from tests.replay.helpers import cryptofeed_received, drain, ns_lines

HEAD_LINES = 12_000  # 901 BTCUSDT depth diffs, the REST snapshot at line 55
TOP = 20


def _nanos(text: str) -> int:
    return int(Decimal(text) * 10**9)


def _top(levels: dict[str, str], bids: bool, n: int = TOP) -> list[tuple[int, int]]:
    rows = sorted(((_nanos(p), _nanos(s)) for p, s in levels.items()), reverse=bids)
    return rows[:n]


def test_binance_rest_snapshot_bridges_and_rebuilds_the_batch_book(real_data: Path, tmp_path: Path) -> None:
    src = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    head = tmp_path / "head.gz"
    with gzip.open(src, "rb") as fh, gzip.open(head, "wb") as out:
        out.writelines(line for _, line in zip(range(HEAD_LINES), fh, strict=False))
    n_diffs = sum(f.startswith(b'{"stream":"btcusdt@depth') for f in ns_lines(head))
    assert n_diffs == 901
    read_first = 300

    async def client(srv: ReplayServer) -> tuple[list[str], dict[str, Any]]:
        url = srv.ws_url + "/stream?streams=btcusdt@depth@100ms"
        async with websockets.connect(url, max_size=None) as ws:
            first = await drain(ws, expect=read_first)
            assert len(first) == read_first  # frame 300 is held back by the stall
            url = srv.rest_url + "/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
            # the tape is held by a stall at frame 300 while the snapshot is taken
            body = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(url).read()))
            rest = await drain(ws, expect=n_diffs - read_first)
            return first + rest, body

    with ReplayServer("binance", [head], faults=["stall@300:3s"], queue_frames=20).run_in_thread() as srv:
        got, snap = asyncio.run(client(srv))
    diffs = [json.loads(g)["data"] for g in got]
    assert len(diffs) == n_diffs
    last_id = snap["lastUpdateId"]
    bids = {p: q for p, q in snap["bids"]}
    asks = {p: q for p, q in snap["asks"]}
    rest_bids, rest_asks = _top(bids, True), _top(asks, False)
    # the standard USD-M sync: drop u < lastUpdateId, the first applied has U <= id <= u, then pu chains
    applied, prev_u, first_at = 0, None, None
    for i, d in enumerate(diffs):
        if d["u"] < last_id:
            continue
        if prev_u is None:
            assert d["U"] <= last_id <= d["u"]
            first_at = i
        else:
            assert d["pu"] == prev_u
        for side, book in (("b", bids), ("a", asks)):
            for p, q in d[side]:
                if Decimal(q) == 0:
                    book.pop(p, None)
                else:
                    book[p] = q
        prev_u, applied = d["u"], applied + 1
    # the snapshot stands at the server's position: past what the client had read, before the end
    assert first_at is not None and read_first < first_at < n_diffs
    assert applied == n_diffs - first_at

    deltas = merge(list(BinanceDecoder().run([head])))["book_delta"]
    seq = deltas.column("sequence").to_numpy()
    at_snapshot = int(np.nonzero(seq < last_id)[0][-1])
    rep = replay_l2(deltas, levels=TOP, snapshot_rows=np.array([at_snapshot, deltas.num_rows - 1]))

    def batch(k: int, side: str) -> list[tuple[int, int]]:
        px, sz = rep.snaps[f"snap_{side}_px"][k], rep.snaps[f"snap_{side}_sz"][k]
        return [(int(p), int(s)) for p, s in zip(px, sz, strict=True) if s > 0]

    assert rest_bids == batch(0, "bid") and rest_asks == batch(0, "ask")
    assert _top(bids, True) == batch(1, "bid") and _top(asks, False) == batch(1, "ask")


def _rejoin(fmt: str, paths: list[Path], path: str, sub: Any, cut: int, queue_frames: int
            ) -> tuple[list[str], list[str], ReplayServer]:
    """Connection 1 is cut at frame ``cut``; connection 2 then subscribes mid-stream."""
    async def go(srv: ReplayServer) -> tuple[list[str], list[str]]:
        runs = []
        for _ in range(2):
            async with websockets.connect(srv.ws_url + path, max_size=None) as ws:
                await ws.send(sub if isinstance(sub, str) else json.dumps(sub))
                runs.append(await drain(ws, done=lambda: srv.drained))
        return runs[0], runs[1]

    # drained until silent: no venue heartbeats after the tape
    srv = ReplayServer(fmt, paths, faults=[f"disconnect@{cut}"], queue_frames=queue_frames,
                       heartbeat_after_end=False)
    with srv.run_in_thread():
        first, second = asyncio.run(go(srv))
    return first, second, srv


def _suffix_start(received: list[bytes], captured: list[bytes]) -> int:
    k = len(captured) - len(received)
    assert k >= 0 and captured[k:] == received, "frames after a mid-stream snapshot: not the capture's tail"
    return k


def _kraken_crc(asks: dict[str, str], bids: dict[str, str]) -> int:
    def field(text: str) -> str:
        return text.replace(".", "").lstrip("0")
    top_a = sorted(asks, key=Decimal)[:10]
    top_b = sorted(bids, key=Decimal, reverse=True)[:10]
    return zlib.crc32("".join(field(p) + field(asks[p]) for p in top_a).encode()
                      + "".join(field(p) + field(bids[p]) for p in top_b).encode())


def test_kraken_mid_stream_snapshot_verifies_every_later_checksum(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")
    captured = [f for f in cryptofeed_received(path) if f.endswith(b',"book-1000","XBT/CHF"]')]
    sub = {"event": "subscribe", "pair": ["XBT/CHF"], "subscription": {"name": "book", "depth": 1000}}
    first, second, srv = _rejoin("kraken", [path], "", sub, cut=150, queue_frames=10)
    assert len(first) == 2 + 150
    assert json.loads(second[0])["event"] == "systemStatus"
    assert json.loads(second[1])["status"] == "subscribed"
    snapshot = json.loads(second[2])
    assert snapshot[0] == 464 and snapshot[2:] == ["book-1000", "XBT/CHF"]
    assert set(snapshot[1]) == {"as", "bs"}
    later = [g.encode() for g in second[3:] if g != '{"event":"heartbeat"}']
    k = _suffix_start(later, captured)
    assert 100 < k < len(captured) - 50  # mid-stream, with plenty of updates after it
    asks = {p: v for p, v, _ in snapshot[1]["as"]}
    bids = {p: v for p, v, _ in snapshot[1]["bs"]}
    previous_c = next(json.loads(f)[-3]["c"] for f in reversed(captured[:k]) if b'"c":"' in f)
    assert _kraken_crc(asks, bids) == int(previous_c)  # the snapshot is the book the venue hashed last
    verified = 0
    for frame in later:
        msg = json.loads(frame)
        checksum = None
        for part in msg[1:-2]:
            for key, book in (("a", asks), ("b", bids)):
                for level in part.get(key, []):
                    if Decimal(level[1]) == 0:
                        book.pop(level[0], None)
                    else:
                        book[level[0]] = level[1]
            checksum = part.get("c", checksum)
        for book, worst_first in ((asks, True), (bids, False)):
            for p in sorted(book, key=Decimal, reverse=worst_first)[: max(0, len(book) - 1000)]:
                del book[p]
        if checksum is not None:
            assert _kraken_crc(asks, bids) == int(checksum), f"checksum mismatch at {frame[:80]!r}"
            verified += 1
    assert verified == sum(b'"c":"' in f for f in captured[k:]) > 50


def _okx_crc(bids: dict[str, str], asks: dict[str, str]) -> int:
    b = sorted(bids.items(), key=lambda kv: Decimal(kv[0]), reverse=True)[:25]
    a = sorted(asks.items(), key=lambda kv: Decimal(kv[0]))[:25]
    parts: list[str] = []
    for i in range(max(len(b), len(a))):
        parts += list(b[i]) if i < len(b) else []
        parts += list(a[i]) if i < len(a) else []
    crc = zlib.crc32(":".join(parts).encode())
    return crc - 2**32 if crc >= 2**31 else crc


def test_okx_mid_stream_snapshot_has_a_correct_checksum() -> None:
    path = REPO / "tests" / "fixtures" / "okx" / "books_trades.ns.jsonl"
    captured = [f for f in ns_lines(path) if f.startswith(b'{"arg":{"channel":"books","instId":"BTC-USDT"}')]
    sub = {"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}
    first, second, _ = _rejoin("okx", [path], "/ws/v5/public", sub, cut=2, queue_frames=1)
    assert len(first) == 1 + 2
    snap = json.loads(second[1])
    assert snap["action"] == "snapshot" and snap["data"][0]["prevSeqId"] == -1
    k = _suffix_start([g.encode() for g in second[2:]], captured)
    assert 2 < k < len(captured)
    item = snap["data"][0]
    bids = {lv[0]: lv[1] for lv in item["bids"]}
    asks = {lv[0]: lv[1] for lv in item["asks"]}
    assert item["checksum"] == _okx_crc(bids, asks) == json.loads(captured[k - 1])["data"][0]["checksum"]
    assert item["seqId"] == json.loads(captured[k - 1])["data"][0]["seqId"]
    for frame in captured[k:]:
        data = json.loads(frame)["data"][0]
        assert data["prevSeqId"] == item["seqId"]
        for key, book in (("bids", bids), ("asks", asks)):
            for lv in data[key]:
                if Decimal(lv[1]) == 0:
                    book.pop(lv[0], None)
                else:
                    book[lv[0]] = lv[1]
        assert data["checksum"] == _okx_crc(bids, asks)
        item = data


def _l2_apply(book: dict[str, dict[str, str]], side: str, price: str, size: str) -> None:
    if Decimal(size) == 0:
        book[side].pop(price, None)
    else:
        book[side][price] = size


def test_coinbase_mid_stream_snapshot_is_the_book_at_the_position(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "COINBASE.ws.28.0")
    captured = [f for f in cryptofeed_received(path) if b'"product_id":"SKL-USD"' in f
                and (f.startswith(b'{"type":"snapshot"') or f.startswith(b'{"type":"l2update"'))]
    sub = {"type": "subscribe", "product_ids": ["SKL-USD"], "channels": ["level2"]}
    _, second, _ = _rejoin("coinbase", [path], "", sub, cut=200, queue_frames=10)
    snap = json.loads(second[1])
    k = _suffix_start([g.encode() for g in second[2:]], captured)
    assert 200 < k < len(captured) - 100

    def replay(frames: list[bytes]) -> dict[str, dict[str, str]]:
        book: dict[str, dict[str, str]] = {"buy": {}, "sell": {}}
        for f in frames:
            msg = json.loads(f)
            if msg["type"] == "snapshot":
                book = {"buy": {p: s for p, s in msg["bids"]}, "sell": {p: s for p, s in msg["asks"]}}
            for side, p, s in msg.get("changes", []):
                _l2_apply(book, side, p, s)
        return book

    assert snap["type"] == "snapshot" and replay([second[1].encode()]) == replay(captured[:k])
    assert replay([second[1].encode()] + captured[k:]) == replay(captured)


def test_bybit_v5_mid_stream_snapshot_continues_the_u_chain(real_data: Path) -> None:
    path = need(real_data / "bybit" / "xrpusdt-ob500.data.zip")
    with zipfile.ZipFile(path) as zf:
        captured = [ln for m in zf.namelist() for ln in zf.read(m).splitlines() if ln.strip()]
    sub = {"op": "subscribe", "args": ["orderbook.50.XRPUSDT"]}
    _, second, _ = _rejoin("bybit", [path], "/v5/public/linear", sub, cut=20, queue_frames=2)
    snap = json.loads(second[1])
    k = _suffix_start([g.encode() for g in second[2:]], captured)
    assert 20 < k < len(captured)
    assert snap["type"] == "snapshot" and snap["data"]["u"] == json.loads(captured[k - 1])["data"]["u"]
    assert json.loads(captured[k])["data"]["u"] == snap["data"]["u"] + 1

    def replay(frames: list[bytes]) -> dict[str, dict[str, str]]:
        book: dict[str, dict[str, str]] = {"b": {}, "a": {}}
        for f in frames:
            msg = json.loads(f)
            if msg["type"] == "snapshot":
                book = {"b": {}, "a": {}}
            for side in ("b", "a"):
                for p, s in msg["data"][side]:
                    _l2_apply(book, side, p, s)
        return book

    assert replay([second[1].encode()]) == replay(captured[:k])
    assert replay([second[1].encode()] + captured[k:]) == replay(captured)


def test_sim_mid_stream_snapshot_rebuilds_the_resting_orders(sim_dir: Path) -> None:
    file = sorted(sim_dir.rglob("*.events.csv.gz"))[0]
    symbol = file.parent.name
    with gzip.open(file, "rt") as fh:
        rows = [ln.rstrip("\n").split(",") for ln in fh][1:]
    _, second, _ = _rejoin("sim", [sim_dir], "", {"op": "subscribe", "symbols": [symbol]}, cut=2000,
                           queue_frames=10)
    msgs = [json.loads(g) for g in second[1:]]
    assert msgs[0]["type"] == "R"
    n_snap = 1
    while msgs[n_snap]["type"] == "S":
        n_snap += 1
    columns = ("ts_event", "ts_recv", "seq", "type", "order_id", "side", "price", "size")
    tail = [[str(m[c]) for c in columns] for m in msgs[n_snap:]]
    k = len(rows) - len(tail)
    assert 2000 < k < len(rows) - 1000 and rows[k:] == tail
    assert msgs[0]["seq"] == int(rows[k - 1][2])

    def resting(lines: list[list[str]]) -> dict[int, tuple[str, Decimal, Decimal]]:
        book: dict[int, tuple[str, Decimal, Decimal]] = {}
        for _, _, _, typ, oid, side, price, size in lines:
            if typ == "R":
                book.clear()
            elif typ in "SA":
                book[int(oid)] = (side, Decimal(price), Decimal(size))
            elif typ == "D":
                book.pop(int(oid), None)
            elif typ == "E" and int(oid) in book:
                s, p, left = book[int(oid)]
                book[int(oid)] = (s, p, left - Decimal(size))
                if book[int(oid)][2] <= 0:
                    del book[int(oid)]
        return book

    snapshot = [[str(m[c]) for c in columns] for m in msgs[:n_snap]]
    assert resting(snapshot) == resting(rows[:k])
    assert resting(snapshot + tail) == resting(rows)


def test_bybit_legacy_mid_stream_snapshot_holds_the_rows_by_id(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "BYBIT.ws.25.0")
    captured = [f for f in cryptofeed_received(path) if f.startswith(b'{"topic":"orderBookL2_25.BCHUSDT"')]
    sub = {"op": "subscribe", "args": ["orderBookL2_25.BCHUSDT"]}
    _, second, _ = _rejoin("bybit", [path], "/realtime_public", sub, cut=100, queue_frames=5)
    snap = json.loads(second[1])
    k = _suffix_start([g.encode() for g in second[2:]], captured)
    assert 100 < k < len(captured) - 100
    assert snap["type"] == "snapshot" and snap["cross_seq"] == json.loads(captured[k - 1])["cross_seq"]

    def replay(frames: list[bytes]) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for f in frames:
            msg = json.loads(f)
            if msg["type"] == "snapshot":
                data = msg["data"]
                rows = {r["id"]: dict(r) for r in (data["order_book"] if isinstance(data, dict) else data)}
                continue
            for r in msg["data"]["delete"]:
                rows.pop(r["id"], None)
            for r in msg["data"]["update"]:
                rows[r["id"]].update(r)
            for r in msg["data"]["insert"]:
                rows[r["id"]] = dict(r)
        return rows

    assert replay([second[1].encode()]) == replay(captured[:k])
    assert replay([second[1].encode()] + captured[k:]) == replay(captured)


def test_coinbase_mid_stream_matches_subscription_gets_a_last_match(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "COINBASE.ws.28.0")
    captured = [f for f in cryptofeed_received(path) if b'"product_id":"SKL-USD"' in f
                and f.startswith((b'{"type":"snapshot"', b'{"type":"l2update"', b'{"type":"match"',
                                  b'{"type":"last_match"'))]
    sub = {"type": "subscribe", "product_ids": ["SKL-USD"], "channels": ["level2", "matches"]}
    _, second, _ = _rejoin("coinbase", [path], "", sub, cut=300, queue_frames=10)
    assert json.loads(second[0])["type"] == "subscriptions"
    assert json.loads(second[1])["type"] == "snapshot"
    k = _suffix_start([g.encode() for g in second[3:]], captured)
    assert 300 < k < len(captured) - 100
    # as Coinbase does on every matches subscription: the product's latest trade, as a last_match
    previous = next(f for f in reversed(captured[:k]) if b'"type":"match"' in f or b'last_match' in f)
    assert b'"type":"match"' in previous  # a trade of the stream, not the capture's own last_match
    assert second[2].encode() == previous.replace(b'"type":"match"', b'"type":"last_match"', 1)
