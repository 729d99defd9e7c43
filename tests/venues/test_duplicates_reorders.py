"""Doubled and reordered frames on the JSON venues (issue 9: stored twice, passed unflagged).

Where the venue numbers what it sends (Coinbase trade ids and ticker sequences, Binance trade
ids), a repeat is a ``duplicate`` dead letter and an out-of-order one is flagged ``F_GAP``; where it does not
(Kraken v1 books, Coinbase level2), a repeat's rows are flagged ``F_MAYBE_BAD_BOOK`` and an update
older than the newest resyncs the book (``F_GAP``).
"""

from __future__ import annotations

import json
from pathlib import Path

from tapeflow.schemas.records import F_GAP, F_LAST, F_MAYBE_BAD_BOOK, F_SNAPSHOT
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.binance.parse import BinanceDecoder
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need

T0 = 1_700_000_000_000_000_000


def _decode(tmp_path: Path, fmt: str, frames: list[str]) -> dict:
    path = tmp_path / f"{fmt}.jsonl"
    path.write_text("".join(f"{T0 + i} {f}\n" for i, f in enumerate(frames)))
    return merge(list(get_format(fmt).decode([path])))


def _reasons(tables: dict) -> list[str]:
    return tables["rejected"].column("reason").to_pylist() if "rejected" in tables else []


# -- Kraken v1: no sequence, level times to the microsecond -----------------------------------

K_SNAP = json.dumps([7, {"as": [["5.0", "1.0", "1.0"]], "bs": [["4.0", "1.0", "1.0"]]}, "book-10", "X/Y"])
K_A = json.dumps([7, {"a": [["5.1", "2.0", "2.000001"]]}, "book-10", "X/Y"])
K_B = json.dumps([7, {"b": [["4.1", "3.0", "3.000001"]]}, "book-10", "X/Y"])
K_R = json.dumps([7, {"a": [["5.2", "1.0", "0.5", "r"]]}, "book-10", "X/Y"])  # republished: old time


def _flags(tables: dict) -> list[int]:
    return tables["book_delta"].column("flags").to_pylist()[3:]  # after the snapshot's 3 rows


def test_kraken_in_order_and_republished_levels_are_clean(tmp_path: Path) -> None:
    assert _flags(_decode(tmp_path, "kraken", [K_SNAP, K_A, K_B, K_R])) == [F_LAST] * 3


def test_kraken_doubled_update_is_flagged(tmp_path: Path) -> None:
    tables = _decode(tmp_path, "kraken", [K_SNAP, K_A, K_A, K_B])
    assert _flags(tables) == [F_LAST, F_LAST | F_MAYBE_BAD_BOOK, F_LAST]
    assert _reasons(tables) == []


def test_kraken_reordered_update_resyncs(tmp_path: Path) -> None:
    tables = _decode(tmp_path, "kraken", [K_SNAP, K_B, K_A])
    assert _flags(tables) == [F_LAST, F_LAST | F_GAP]


# -- Coinbase: trade ids and ticker sequences; level2 has neither -------------------------------

C_SNAP = json.dumps({"type": "snapshot", "product_id": "X-Y", "bids": [["4.0", "1"]], "asks": [["5.0", "1"]]})


def _l2(time: str, px: str) -> str:
    return json.dumps({"type": "l2update", "product_id": "X-Y", "time": time, "changes": [["buy", px, "1"]]})


def _match(trade_id: int) -> str:
    return json.dumps({"type": "match", "trade_id": trade_id, "sequence": 100 + trade_id, "product_id": "X-Y",
                       "side": "sell", "price": "4.5", "size": "1", "time": "2023-11-14T22:13:20.000001Z"})


def _ticker(seq: int) -> str:
    return json.dumps({"type": "ticker", "sequence": seq, "product_id": "X-Y", "best_bid": "4.0",
                       "best_bid_size": "1", "best_ask": "5.0", "best_ask_size": "1",
                       "time": "2023-11-14T22:13:20.000001Z"})


L1, L2 = _l2("2023-11-14T22:13:20.000001Z", "4.1"), _l2("2023-11-14T22:13:20.000002Z", "4.2")


def test_coinbase_doubled_l2update_is_flagged_and_reorder_resyncs(tmp_path: Path) -> None:
    flags = _flags(_decode(tmp_path, "coinbase", [C_SNAP, L1, L1, L2]))
    assert flags == [F_LAST, F_LAST | F_MAYBE_BAD_BOOK, F_LAST]
    flags = _flags(_decode(tmp_path, "coinbase", [C_SNAP, L2, L1]))
    assert flags == [F_LAST, F_LAST | F_GAP]


def test_coinbase_trade_id_repeat_is_a_duplicate_and_a_late_one_is_flagged(tmp_path: Path) -> None:
    tables = _decode(tmp_path, "coinbase", [_match(1), _match(3), _match(3), _match(2)])
    trades = tables["trade"].to_pylist()
    assert [(t["trade_id"], t["flags"]) for t in trades] == [
        ("1", F_LAST), ("3", F_LAST), ("2", F_LAST | F_GAP)]
    rej = tables["rejected"].to_pylist()
    assert [(r["reason"], r["location"], r["symbol"]) for r in rej] == [
        ("duplicate", "coinbase.jsonl:3", "X-Y")]


def test_coinbase_ticker_sequence_repeat_is_a_duplicate(tmp_path: Path) -> None:
    tables = _decode(tmp_path, "coinbase", [_ticker(10), _ticker(10), _ticker(12), _ticker(11)])
    assert tables["quote"].column("flags").to_pylist() == [F_LAST, F_LAST, F_LAST | F_GAP]
    assert _reasons(tables) == ["duplicate"]


# -- Binance trades: ids per symbol (the block path and the per-frame path agree) ---------------

def _trade(symbol: str, trade_id: int) -> str:
    data = {"e": "trade", "E": 1723075200000, "T": 1723075200000, "s": symbol, "t": trade_id, "p": "1.5",
            "q": "2", "X": "MARKET", "m": True}
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data}, separators=(",", ":"))


def test_binance_doubled_trade_is_a_duplicate_and_a_late_one_is_flagged(tmp_path: Path) -> None:
    frames = [_trade("BTCUSDT", 1), _trade("ETHUSDT", 1), _trade("BTCUSDT", 3), _trade("BTCUSDT", 3),
              _trade("BTCUSDT", 2), _trade("ETHUSDT", 2), _trade("ETHUSDT", 2)]
    path = tmp_path / "binance.ns"
    path.write_text("".join(f"{T0 + i} {f}\n" for i, f in enumerate(frames)))
    fmt = get_format("binance")
    fast = merge(list(fmt.decode([path])))
    slow = merge(list(BinanceDecoder(fast=False).run([path])))
    for tables in (fast, slow):
        trades = tables["trade"].to_pylist()
        assert [(t["symbol"], t["trade_id"], t["flags"]) for t in trades] == [
            ("BTCUSDT", "1", 0), ("ETHUSDT", "1", 0), ("BTCUSDT", "3", 0), ("BTCUSDT", "2", F_GAP),
            ("ETHUSDT", "2", 0)]
        rej = tables["rejected"].to_pylist()
        assert [(r["reason"], r["location"], r["symbol"]) for r in rej] == [
            ("duplicate", "binance.ns:4", "BTCUSDT"), ("duplicate", "binance.ns:7", "ETHUSDT")]


def test_binance_real_trades_have_no_repeat_and_no_late_id(real_data: Path) -> None:
    path = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    tables = merge(list(get_format("binance").decode([path])))
    assert "rejected" not in tables
    assert not any(f & F_GAP for f in tables["trade"].column("flags").to_pylist())


# -- Binance bookTicker: its book's update id u per symbol (spot sends no "e" and no times) -----------

def _book_ticker(symbol: str, u: int, *, spot: bool = False) -> str:
    data = {"u": u, "s": symbol, "b": "1.5", "B": "2", "a": "1.6", "A": "3"}
    if not spot:
        data = {"e": "bookTicker", **data, "T": 1723075200000, "E": 1723075200001}
    return json.dumps({"stream": f"{symbol.lower()}@bookTicker", "data": data}, separators=(",", ":"))


def test_binance_doubled_book_ticker_is_a_duplicate_and_a_late_one_is_flagged(tmp_path: Path) -> None:
    for spot in (False, True):
        frames = [_book_ticker(s, u, spot=spot) for s, u in (
            ("BTCUSDT", 10), ("ETHUSDT", 10), ("BTCUSDT", 12), ("BTCUSDT", 12), ("BTCUSDT", 11),
            ("ETHUSDT", 11), ("ETHUSDT", 11), ("BTCUSDT", 13))]
        frames.insert(3, _trade("BTCUSDT", 12))  # a trade id equal to a ticker's u is no repeat
        path = tmp_path / "binance.ns"
        path.write_text("".join(f"{T0 + i} {f}\n" for i, f in enumerate(frames)))
        outputs = [merge(list(get_format("binance").decode([path]))),
                   merge(list(BinanceDecoder(fast=False).run([path])))]
        # the live hand-off: quiet runs, the frame where one stops fed on its own
        dec = BinanceDecoder()
        dec.venues = ["binance-usdm"]
        lines = [CaptureLine(T0 + i, RECV, "", f.encode(), f"live:{i + 1}") for i, f in enumerate(frames)]
        start, stops = 0, []
        while start < len(lines):
            rest = lines[start:]
            start += dec.feed_quiet([ln.recv_ns for ln in rest], [ln.payload for ln in rest])
            if start < len(lines):
                stops.append(start)
                dec.feed(lines[start])
                start += 1
        # futures tickers go through the block path, which stops at the two doubled ones; spot
        # tickers (no "e") are not of its shape: each is decoded on its own
        assert stops == ([0, 1, 2, 4, 5, 6, 7, 8] if spot else [4, 7])
        outputs.append(dec.flush(0, "live").tables)
        for tables in outputs:
            quotes = tables["quote"].to_pylist()
            assert [(q["symbol"], q["sequence"], q["flags"]) for q in quotes] == [  # venue aside
                ("BTCUSDT", 10, 0), ("ETHUSDT", 10, 0), ("BTCUSDT", 12, 0), ("BTCUSDT", 11, F_GAP),
                ("ETHUSDT", 11, 0), ("BTCUSDT", 13, 0)], spot
            rej = tables["rejected"].to_pylist()
            assert [(r["reason"], r["location"].rpartition(":")[2], r["symbol"]) for r in rej] == [
                ("duplicate", "5", "BTCUSDT"), ("duplicate", "8", "ETHUSDT")], spot


def test_binance_real_book_tickers_have_no_repeat_and_no_late_id(real_data: Path) -> None:
    for names in (["binance/usdm_btcusdt_20240808.gz"],
                  ["cryptofeed/BINANCE.ws.1.0", "cryptofeed/BINANCE.http.0.0"],
                  ["cryptofeed/BINANCE_FUTURES.ws.1.0", "cryptofeed/BINANCE_FUTURES.http.0.0"]):
        tables = merge(list(get_format("binance").decode([need(real_data / n) for n in names])))
        assert "duplicate" not in _reasons(tables), names
        flags = tables["quote"].column("flags").to_pylist()
        assert len(flags) > 0 and not any(f & F_GAP for f in flags), names


# -- OKX trades: tradeId per instrument -----------------------------------------------------------

def _okx_trades(*ids: int) -> str:
    data = [{"instId": "BTC-USDT", "tradeId": str(i), "px": "1.5", "sz": "2", "side": "buy",
             "ts": "1700000000000"} for i in ids]
    return json.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": data})


def test_okx_doubled_trades_frame_is_a_duplicate_and_late_trades_are_flagged(tmp_path: Path) -> None:
    frames = [_okx_trades(1, 2), _okx_trades(1, 2), _okx_trades(5), _okx_trades(3, 6)]
    tables = _decode(tmp_path, "okx", frames)
    trades = tables["trade"].to_pylist()
    assert [(t["trade_id"], t["flags"]) for t in trades] == [
        ("1", 0), ("2", F_LAST), ("5", F_LAST), ("3", F_GAP), ("6", F_LAST)]
    assert [(r["reason"], r["location"]) for r in tables["rejected"].to_pylist()] == [
        ("duplicate", "okx.jsonl:2")]


# -- KuCoin matches: sequence per symbol ----------------------------------------------------------

def _kucoin_match(seq: int) -> str:
    data = {"symbol": "X-BTC", "sequence": str(seq), "side": "buy", "size": "1", "price": "0.5",
            "takerOrderId": "a", "time": "1619378327739050725", "type": "match", "makerOrderId": "b",
            "tradeId": f"t{seq}"}
    return json.dumps({"data": data, "subject": "trade.l3match", "topic": "/market/match:X-BTC",
                       "type": "message"})


def test_kucoin_doubled_match_is_a_duplicate_and_a_late_one_is_flagged(tmp_path: Path) -> None:
    tables = _decode(tmp_path, "kucoin", [_kucoin_match(s) for s in (10, 12, 12, 11)])
    trades = tables["trade"].to_pylist()
    assert [(t["sequence"], t["flags"]) for t in trades] == [(10, 0), (12, 0), (11, F_GAP)]
    assert _reasons(tables) == ["duplicate"]


def _kucoin_ticker(seq: int, symbol: str = "X-BTC") -> str:
    data = {"sequence": str(seq), "bestAsk": "0.6", "size": "1", "bestBidSize": "2", "price": "0.55",
            "time": 1619378326323, "bestAskSize": "3", "bestBid": "0.5"}
    return json.dumps({"data": data, "subject": "trade.ticker", "topic": f"/market/ticker:{symbol}",
                       "type": "message"})


def test_kucoin_doubled_ticker_is_a_duplicate_and_a_late_one_is_flagged(tmp_path: Path) -> None:
    frames = [_kucoin_ticker(10), _kucoin_ticker(10, "Y-BTC"), _kucoin_ticker(12), _kucoin_ticker(12),
              _kucoin_ticker(11), _kucoin_ticker(13)]
    tables = _decode(tmp_path, "kucoin", frames)
    quotes = tables["quote"].to_pylist()
    assert [(q["symbol"], q["sequence"], q["flags"]) for q in quotes] == [
        ("X-BTC", 10, 0), ("Y-BTC", 10, 0), ("X-BTC", 12, 0), ("X-BTC", 11, F_GAP), ("X-BTC", 13, 0)]
    rej = tables["rejected"].to_pylist()
    assert [(r["reason"], r["location"], r["symbol"]) for r in rej] == [
        ("duplicate", "kucoin.jsonl:4", "X-BTC")]


def test_kucoin_real_tickers_have_no_repeat_and_no_late_sequence(real_data: Path) -> None:
    paths = [need(real_data / "cryptofeed" / n) for n in ("KUCOIN.ws.1.0", "KUCOIN.http.0.0")]
    tables = merge(list(get_format("kucoin").decode(paths)))
    assert "duplicate" not in _reasons(tables)
    flags = tables["quote"].column("flags").to_pylist()
    assert not any(f & F_GAP for f in flags)
    # every one of the capture's 830 ticker frames is a quote or a dead letter (sizes of 11 decimals)
    tickers = [r for r in tables["rejected"].to_pylist() if b"trade.ticker" in r["raw"]]
    assert {r["reason"] for r in tickers} == {"bad_number"} and len(flags) + len(tickers) == 830


# -- Bybit and BitMEX trades: ids that are not ordered (UUIDs), told apart by the ones decoded ------

def _bybit_trades(*ids: str, symbol: str = "BTCUSDT") -> str:
    data = [{"T": 1700000000000, "s": symbol, "S": "Buy", "v": "0.1", "p": "100.5", "i": i} for i in ids]
    return json.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "data": data})


def test_bybit_doubled_trades_frame_is_a_duplicate_and_a_repeated_trade_is_flagged(tmp_path: Path) -> None:
    frames = [_bybit_trades("u1", "u2"), _bybit_trades("u1", "u2"), _bybit_trades("u1", symbol="ETHUSDT"),
              _bybit_trades("u3", "u2")]
    tables = _decode(tmp_path, "bybit", frames)
    trades = tables["trade"].to_pylist()
    assert [(t["symbol"], t["trade_id"], t["flags"]) for t in trades] == [
        ("BTCUSDT", "u1", 0), ("BTCUSDT", "u2", 0), ("ETHUSDT", "u1", 0), ("BTCUSDT", "u3", 0),
        ("BTCUSDT", "u2", F_GAP)]
    assert [(r["reason"], r["location"], r["symbol"]) for r in tables["rejected"].to_pylist()] == [
        ("duplicate", "bybit.jsonl:2", "BTCUSDT")]


def _bitmex_trades(action: str, *ids: str) -> str:
    data = [{"timestamp": "2023-11-14T22:13:20.001Z", "symbol": "XBTUSD", "side": "Buy", "size": 1,
             "price": 100.5, "trdMatchID": i} for i in ids]
    return json.dumps({"table": "trade", "action": action, "data": data})


def test_bitmex_doubled_trades_frame_is_a_duplicate_and_a_partial_replay_is_kept(tmp_path: Path) -> None:
    frames = [_bitmex_trades("partial", "m1"), _bitmex_trades("insert", "m2"), _bitmex_trades("insert", "m2"),
              _bitmex_trades("insert", "m3", "m2"), _bitmex_trades("partial", "m1", "m3")]
    tables = _decode(tmp_path, "bitmex", frames)
    trades = tables["trade"].to_pylist()
    # a partial on a resubscription repeats trades by design: kept (F_SNAPSHOT), the repeats flagged
    assert [(t["trade_id"], t["flags"]) for t in trades] == [
        ("m1", F_SNAPSHOT | F_LAST), ("m2", F_LAST), ("m3", 0), ("m2", F_GAP | F_LAST),
        ("m1", F_SNAPSHOT | F_GAP), ("m3", F_SNAPSHOT | F_GAP | F_LAST)]
    assert [(r["reason"], r["location"], r["symbol"]) for r in tables["rejected"].to_pylist()] == [
        ("duplicate", "bitmex.jsonl:3", "XBTUSD")]


def _bybit_trade_at(trade_id: str, ms: int, *, v5: bool = True, symbol: str = "BTCUSDT") -> str:
    if v5:
        data = [{"T": ms, "s": symbol, "S": "Buy", "v": "0.1", "p": "100.5", "i": trade_id}]
        return json.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "data": data})
    data = [{"trade_time_ms": ms, "symbol": symbol, "side": "Buy", "size": 1, "price": "100.5",
             "trade_id": trade_id}]
    return json.dumps({"topic": f"trade.{symbol}", "data": data})


def test_bybit_a_trade_older_than_the_symbols_newest_is_flagged(tmp_path: Path) -> None:
    # UUIDs tell no order: the trade time does (v5 "T", v2 "trade_time_ms"), per symbol
    for v5 in (True, False):
        ms = 1_700_000_000_000
        frames = [_bybit_trade_at("a", ms + 2, v5=v5), _bybit_trade_at("b", ms + 1, v5=v5),
                  _bybit_trade_at("c", ms, v5=v5, symbol="ETHUSDT"),
                  _bybit_trade_at("d", ms + 2, v5=v5), _bybit_trade_at("e", ms + 3, v5=v5)]
        tables = _decode(tmp_path, "bybit", frames)
        trades = tables["trade"].to_pylist()
        assert [(t["trade_id"], t["flags"] & F_GAP) for t in trades] == [
            ("a", 0), ("b", F_GAP), ("c", 0), ("d", 0), ("e", 0)], v5
        assert _reasons(tables) == []


def _bitmex_trade_at(trade_id: str, stamp: str, action: str = "insert") -> str:
    data = [{"timestamp": stamp, "symbol": "XBTUSD", "side": "Sell", "size": 1, "price": 100.5,
             "trdMatchID": trade_id}]
    return json.dumps({"table": "trade", "action": action, "data": data})


def test_bitmex_a_trade_older_than_the_symbols_newest_is_flagged(tmp_path: Path) -> None:
    at = "2023-11-14T22:13:20.00{}Z".format
    frames = [_bitmex_trade_at("m1", at(2), "partial"), _bitmex_trade_at("m2", at(1)),
              _bitmex_trade_at("m3", at(2)), _bitmex_trade_at("m4", at(3))]
    trades = _decode(tmp_path, "bitmex", frames)["trade"].to_pylist()
    assert [(t["trade_id"], t["flags"]) for t in trades] == [
        ("m1", F_SNAPSHOT | F_LAST), ("m2", F_GAP | F_LAST), ("m3", F_LAST), ("m4", F_LAST)]


def test_bitmex_a_rejected_trade_frame_leaves_the_book_whole(tmp_path: Path) -> None:
    level = {"symbol": "XBTUSD", "id": 1, "side": "Buy", "size": 5, "price": 100.0}
    book = json.dumps({"table": "orderBookL2", "action": "partial", "data": [level]})
    update = json.dumps({"table": "orderBookL2", "action": "update", "data": [{**level, "size": 6}]})
    trade = _bitmex_trades("insert", "m1")
    tables = _decode(tmp_path, "bitmex", [book, trade, trade, update])
    assert _reasons(tables) == ["duplicate"]
    assert tables["book_delta"].column("flags").to_pylist()[-1] == F_LAST  # no F_GAP: no book frame lost


def test_bybit_and_bitmex_real_trades_have_no_repeat(real_data: Path) -> None:
    for fmt, name in (("bybit", "BYBIT.ws.25.0"), ("bitmex", "BITMEX.ws.1.0")):
        tables = merge(list(get_format(fmt).decode([need(real_data / "cryptofeed" / name)])))
        assert "duplicate" not in _reasons(tables), fmt
        assert not any(f & F_GAP for f in tables["trade"].column("flags").to_pylist()), fmt


# -- Kraken trades: no id, times to the microsecond -------------------------------------------------

def _kraken_trades(*times: str) -> str:
    return json.dumps([9, [["100.5", "0.1", t, "b", "l", ""] for t in times], "trade", "X/Y"])


def test_kraken_doubled_trade_message_is_flagged_and_a_late_one_too(tmp_path: Path) -> None:
    frames = [_kraken_trades("1.000001", "1.000002"), _kraken_trades("1.000001", "1.000002"),
              _kraken_trades("3.000001"), _kraken_trades("2.000001"), _kraken_trades("4.000001")]
    tables = _decode(tmp_path, "kraken", frames)
    assert tables["trade"].column("flags").to_pylist() == [
        0, F_LAST, F_MAYBE_BAD_BOOK, F_MAYBE_BAD_BOOK | F_LAST, F_LAST, F_GAP | F_LAST, F_LAST]
    assert _reasons(tables) == []  # kept: without an id a repeat cannot be proven


def test_kraken_a_rejected_trade_frame_leaves_the_book_whole(tmp_path: Path) -> None:
    bad = json.dumps([9, [], "trade", "X/Y"])
    tables = _decode(tmp_path, "kraken", [K_SNAP, bad, K_A])
    assert _reasons(tables) == ["missing_field"]
    assert _flags(tables) == [F_LAST]  # no F_GAP: a trade frame lost says nothing of the book


def test_kraken_real_trades_are_never_flagged(real_data: Path) -> None:
    tables = merge(list(get_format("kraken").decode([need(real_data / "cryptofeed" / "KRAKEN.ws.48.0")])))
    flags = tables["trade"].column("flags").to_pylist()
    assert len(flags) > 0 and not any(f & (F_GAP | F_MAYBE_BAD_BOOK) for f in flags)
