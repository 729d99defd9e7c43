"""Per venue: a raw websockets client doing the venue's handshake gets exactly the captured frames of
its subscription, byte-for-byte and in capture order (expected lists built from the files here)."""

from __future__ import annotations

import gzip
import json
import re
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from tapeflow.errors import ConfigError
from tapeflow.replay import ReplayServer
from tests.conftest import REPO, need
from tests.replay.helpers import cryptofeed_received, ns_lines, session

OKX = REPO / "tests" / "fixtures" / "okx" / "books_trades.ns.jsonl"


def _data_frames(got: list[str], skip: int) -> list[bytes]:
    return [g.encode() for g in got[skip:]]


def test_kraken_book_subscription_gets_the_pairs_frames_and_heartbeats(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")
    frames = cryptofeed_received(path)
    expected = [f for f in frames if f.endswith(b',"book-1000","XBT/CHF"]') or f == b'{"event":"heartbeat"}']
    assert len(expected) == 290 + 31  # 290 XBT/CHF book frames, 31 heartbeats (grep -c on the file)
    with ReplayServer("kraken", [path]).run_in_thread() as srv:
        sub = {"event": "subscribe", "pair": ["XBT/CHF"], "subscription": {"name": "book", "depth": 1000}}
        got = session(srv.ws_url, [sub], expect=2 + len(expected))
    assert json.loads(got[0])["event"] == "systemStatus"
    ack = json.loads(got[1])
    assert ack == {"channelID": 464, "channelName": "book-1000", "event": "subscriptionStatus",
                   "pair": "XBT/CHF", "status": "subscribed", "subscription": {"depth": 1000, "name": "book"}}
    assert _data_frames(got, 2) == expected
    assert srv.frames_served == len(expected)


def test_kraken_control_messages(tmp_path: Path) -> None:
    cap = tmp_path / "k.ws"
    book = '[464,{"as":[["5.0","1.0","1.1"]],"bs":[["4.0","2.0","1.2"]]},"book-10","XBT/CHF"]'
    cap.write_text(f"wss://ws.kraken.com <-> 1618678132.1\n1618678133.5: {book}\n"
                   "1618678133.6: not json at all\n")
    with ReplayServer("kraken", [cap]).run_in_thread() as srv:
        sub = {"event": "subscribe", "pair": ["DOGE/XBT"], "subscription": {"name": "book"}}
        got = session(srv.ws_url, [{"event": "ping", "reqid": 7}, sub], expect=3)
        assert srv.bad_lines == 1  # the non-JSON line is counted, never served
    assert json.loads(got[1]) == {"event": "pong", "reqid": 7}
    nack = json.loads(got[2])
    assert nack["status"] == "error" and "DOGE/XBT" in nack["errorMessage"]
    assert len(got) == 3


@pytest.mark.parametrize("raw", [False, True], ids=["combined", "raw"])
def test_binance_spot_streams(real_data: Path, raw: bool) -> None:
    ws_path = need(real_data / "cryptofeed" / "BINANCE.ws.1.0")
    http_path = need(real_data / "cryptofeed" / "BINANCE.http.0.0")
    frames = cryptofeed_received(ws_path)
    expected = [f for f in frames if f.startswith(b'{"stream":"nknusdt@depth@100ms"')
                or f.startswith(b'{"stream":"nknusdt@aggTrade"')]
    assert len(expected) > 40
    with ReplayServer("binance", [ws_path, http_path]).run_in_thread() as srv:
        if raw:
            got = session(srv.ws_url + "/ws", [{"method": "SUBSCRIBE", "id": 3,
                                                "params": ["nknusdt@depth@100ms", "nknusdt@aggTrade"]}],
                          expect=1 + len(expected))
            assert json.loads(got[0]) == {"result": None, "id": 3}
            # raw streams carry the envelope's data object, byte-for-byte
            assert _data_frames(got, 1) == [f[f.index(b'"data":') + 7:-1] for f in expected]
        else:
            got = session(srv.ws_url + "/stream?streams=nknusdt@depth@100ms/nknusdt@aggTrade", [],
                          expect=len(expected))
            assert _data_frames(got, 0) == expected


def test_binance_futures_and_hftbacktest(real_data: Path, tmp_path: Path) -> None:
    fut = need(real_data / "cryptofeed" / "BINANCE_FUTURES.ws.1.0")
    expected = [f for f in cryptofeed_received(fut) if f.startswith(b'{"stream":"sushiusdt@depth@100ms"')]
    with ReplayServer("binance", [fut]).run_in_thread() as srv:
        got = session(srv.ws_url + "/stream?streams=sushiusdt@depth@100ms", [], expect=len(expected))
    assert _data_frames(got, 0) == expected

    src = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    head = tmp_path / "head.gz"
    with gzip.open(src, "rb") as fh, gzip.open(head, "wb") as out:
        out.writelines(line for _, line in zip(range(3000), fh, strict=False))
    lines = ns_lines(head)
    want = [f for f in lines if f.startswith(b'{"stream":"btcusdt@trade"')]
    # a client asking for @100ms gets the captured @0ms diffs: the diff speed is not a stream identity
    depth = [f for f in lines if f.startswith(b'{"stream":"btcusdt@depth@0ms"')]
    with ReplayServer("binance", [head]).run_in_thread() as srv:
        got = session(srv.ws_url + "/stream?streams=btcusdt@trade/btcusdt@depth@100ms", [],
                      expect=len(want) + len(depth))
    served = _data_frames(got, 0)
    assert [f for f in served if b"@trade" in f[:40]] == want
    assert [f for f in served if b"@depth" in f[:40]] == depth
    assert len(served) == len(want) + len(depth)


def test_coinbase_product_channels(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "COINBASE.ws.28.0")
    expected = [f for f in cryptofeed_received(path)
                if b'"product_id":"BAND-GBP"' in f and not f.startswith(b'{"type":"subscriptions"')]
    assert len(expected) == 482  # grep -c '"product_id":"BAND-GBP"' on the file
    with ReplayServer("coinbase", [path]).run_in_thread() as srv:
        got = session(srv.ws_url, [{"type": "subscribe", "product_ids": ["BAND-GBP"],
                                    "channels": ["level2", {"name": "matches"}, "ticker"]}],
                      expect=1 + len(expected))
    ack = json.loads(got[0])
    assert ack["type"] == "subscriptions"
    assert {c["name"] for c in ack["channels"]} == {"level2", "matches", "ticker"}
    assert _data_frames(got, 1) == expected


def test_bybit_legacy_and_v5(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "BYBIT.ws.25.0")
    topic = re.compile(rb'^\{"topic":"(orderBookL2_25|trade)\.BCHUSDT"')
    expected = [f for f in cryptofeed_received(path) if topic.match(f)]
    assert len(expected) == 493
    with ReplayServer("bybit", [path]).run_in_thread() as srv:
        got = session(srv.ws_url + "/realtime_public", [{"op": "ping"}, {"op": "subscribe",
                                                        "args": ["orderBookL2_25.BCHUSDT", "trade.BCHUSDT"]}],
                      expect=2 + len(expected))
    assert json.loads(got[0])["ret_msg"] == "pong"
    assert json.loads(got[1])["success"] is True
    assert _data_frames(got, 2) == expected

    zpath = need(real_data / "bybit" / "xrpusdt-ob500.data.zip")
    with zipfile.ZipFile(zpath) as zf:
        v5 = [ln for m in zf.namelist() for ln in zf.read(m).splitlines() if ln.strip()]
    assert len(v5) == 50
    with ReplayServer("bybit", [zpath]).run_in_thread() as srv:
        sub = {"op": "subscribe", "args": ["orderbook.50.XRPUSDT"]}
        got = session(srv.ws_url + "/v5/public/linear", [sub], expect=1 + len(v5))
    assert _data_frames(got, 1) == v5


def test_okx_books_subscription() -> None:
    lines = ns_lines(OKX)
    expected = [f for f in lines if f.startswith(b'{"arg":{"channel":"books","instId":"BTC-USDT"}')]
    assert len(expected) >= 5
    with ReplayServer("okx", [OKX]).run_in_thread() as srv:
        got = session(srv.ws_url + "/ws/v5/public", ["ping", {"op": "subscribe", "args": [
            {"channel": "books", "instId": "BTC-USDT"}, {"channel": "books", "instId": "NOPE-USDT"}]}],
            expect=3 + len(expected))
    assert got[0] == "pong"
    assert json.loads(got[1])["event"] == "subscribe"
    assert json.loads(got[2])["event"] == "error" and "NOPE-USDT" in json.loads(got[2])["msg"]
    assert _data_frames(got, 3) == expected


def test_sim_feed(sim_dir: Path) -> None:
    files = sorted(sim_dir.rglob("*.events.csv.gz"))
    symbol = files[0].parent.name
    with gzip.open(files[0], "rt") as fh:
        rows = [ln.rstrip("\n").split(",") for ln in fh][1:]
    with ReplayServer("sim", [sim_dir]).run_in_thread() as srv:
        got = session(srv.ws_url, [{"op": "subscribe", "symbols": [symbol]}], expect=1 + len(rows))
    assert json.loads(got[0]) == {"event": "subscribed", "symbols": [symbol]}
    served = [json.loads(g) for g in got[1:]]
    assert len(served) == len(rows)
    columns = ["ts_event", "ts_recv", "seq", "type", "order_id", "side", "price", "size"]
    assert [[str(m[c]) for c in columns] for m in served] == rows
    assert {m["symbol"] for m in served} == {symbol}


def test_unknown_format_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lobster"):
        ReplayServer("lobster", [tmp_path / "x"])


def test_kraken_files_merge_by_capture_time(real_data: Path) -> None:
    book = need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")
    trade = need(real_data / "cryptofeed" / "KRAKEN.ws.48.0")

    def stamped(path: Path, suffix: bytes) -> list[tuple[Decimal, bytes]]:
        lines = [ln.split(b": ", 1) for ln in path.read_bytes().splitlines() if ln[:1].isdigit()]
        return [(Decimal(ts.decode()), p) for ts, p in lines if p.endswith(suffix)]

    merged = sorted(stamped(book, b'"book-1000","SC/EUR"]') + stamped(trade, b'"trade","SC/EUR"]'),
                    key=lambda tp: tp[0])
    beats = len(stamped(book, b'"heartbeat"}')) + len(stamped(trade, b'"heartbeat"}'))
    assert sum(p.endswith(b'"trade","SC/EUR"]') for _, p in merged) == 5
    # two subscribe messages (Kraken takes one channel per message): the tape waits settle_s for both
    with ReplayServer("kraken", [trade, book]).run_in_thread() as srv:
        got = session(srv.ws_url, [{"event": "subscribe", "pair": ["SC/EUR"], "subscription": {"name": n}}
                                   for n in ("book", "trade")], expect=3 + len(merged) + beats)
    served = [g.encode() for g in got[3:]]
    assert [f for f in served if f != b'{"event":"heartbeat"}'] == [p for _, p in merged]
    assert len(served) == len(merged) + beats  # heartbeats of both captured connections


def test_paced_replay_serves_the_same_frames() -> None:
    expected = [f for f in ns_lines(OKX) if b'"instId":"ETH-USDT-SWAP"' in f and f.startswith(b'{"arg"')]
    with ReplayServer("okx", [OKX], speed=2.0).run_in_thread() as srv:
        sub = {"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT-SWAP"}]}
        got = session(srv.ws_url, [sub], expect=1 + len(expected))
    assert _data_frames(got, 1) == expected


def test_binance_raw_stream_in_the_path_and_list_subscriptions(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "BINANCE.ws.1.0")
    expected = [f[f.index(b'"data":') + 7:-1] for f in cryptofeed_received(path)
                if f.startswith(b'{"stream":"blzeth@depth@100ms"')]
    assert expected
    with ReplayServer("binance", [path]).run_in_thread() as srv:
        got = session(srv.ws_url + "/ws/blzeth@depth@100ms", [{"method": "LIST_SUBSCRIPTIONS", "id": 9},
                                                             {"method": "FLY", "id": 10}],
                      expect=2 + len(expected))
    replies = [json.loads(g) for g in got if '"id":' in g]
    assert replies[0] == {"result": ["blzeth@depth@100ms"], "id": 9}
    assert replies[1]["id"] == 10 and "FLY" in replies[1]["error"]["msg"]
    assert [g.encode() for g in got if '"id":' not in g] == expected
