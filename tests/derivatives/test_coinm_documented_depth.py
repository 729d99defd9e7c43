"""Binance COIN-M's own depth shapes, from its API reference (no COIN-M depth is recorded anywhere in
the data folder): the ``dstream`` ``depthUpdate`` of "Diff. Book Depth Streams" (coin-margined
futures), which carries the pair ``ps`` beside the symbol, and the ``/dapi/v1/depth`` order book,
which names its ``symbol`` and ``pair``. Written as the reference prints them (spaces after ``:`` and
``,``), served by the replay server to ``BinanceClient(market="coinm")``."""

from __future__ import annotations

import json
from pathlib import Path

from tapeflow.live import ConnectorSettings
from tapeflow.replay import ReplayServer
from tapeflow.schemas.records import ASK, BID, L2_CLEAR, L2_DELETE, L2_SET
from tapeflow.venues.binance.client import BinanceClient
from tests.live.conna_support import (
    assert_journal_equals_live,
    journal_file,
    live_tables,
    run_client,
    statuses,
)

NS = 1_700_000_000_000_000_000
SYMBOL = "BTCUSD_200626"  # the reference's example contract (quarterly; pair BTCUSD)
# the reference's diff, as documented
DIFF = {"e": "depthUpdate", "E": 1591270260907, "T": 1591270260891, "s": SYMBOL, "ps": "BTCUSD",
        "U": 17285681, "u": 17285702, "pu": 17285675, "b": [["9517.6", "10"]], "a": [["9518.5", "45"]]}
# the next diff in the same shape: pu links it to the first; deletes the bid, adds an ask
NEXT = {**DIFF, "E": 1591270261007, "T": 1591270260991, "U": 17285703, "u": 17285710, "pu": 17285702,
        "b": [["9517.6", "0"]], "a": [["9518.6", "3"]]}
# the reference's order-book shape (symbol, pair, E, T); lastUpdateId moved inside the first diff's
# [U, u] so that diff bridges it (the reference's example ids belong to another moment)
BOOK = {"lastUpdateId": 17285690, "symbol": SYMBOL, "pair": "BTCUSD", "E": 1591270260900,
        "T": 1591270260890, "bids": [["9517.6", "431"], ["9517.0", "12"]],
        "asks": [["9518.5", "12"], ["9519.0", "7"]]}
N = 10**9


def _tape(tmp_path: Path) -> Path:
    stream = f"{SYMBOL.lower()}@depth@100ms"
    lines = [json.dumps(BOOK), json.dumps({"stream": stream, "data": DIFF}),
             json.dumps({"stream": stream, "data": NEXT})]
    path = tmp_path / "coinm_documented.jsonl"
    path.write_text("".join(f"{NS + i * 1_000_000} {line}\n" for i, line in enumerate(lines)))
    return path


def test_coinm_documented_depth_syncs_and_books_the_documented_levels(tmp_path: Path) -> None:
    urls: list[str] = []
    with ReplayServer("binance", [_tape(tmp_path)]).run_in_thread() as srv:
        client = BinanceClient([SYMBOL], market="coinm", endpoint=srv.ws_url, rest_endpoint=srv.rest_url,
                               journal=tmp_path / "journal", trade_stream="trade",
                               settings=ConnectorSettings(seed=1, stale_after_s=20))
        urls += [client.ws_url(), client.snapshot_url(SYMBOL)]
        batches = run_client(srv, client, lambda data: data.startswith(b'{"stream"'), timeout_s=60)
        assert srv.bad_lines == 0 and srv.frames_served == 2
    assert "/dapi/v1/depth?symbol=BTCUSD_200626" in urls[1] and "btcusd_200626@depth@100ms" in urls[0]
    states = [r["state"] for r in statuses(batches)]
    assert states.count("synced") == 1 and "gap" not in states, states
    live = live_tables(batches)
    rows = live["book_delta"].to_pylist()
    assert {r["venue"] for r in rows} == {"binance-coinm"} and {r["symbol"] for r in rows} == {SYMBOL}
    # the snapshot the server answered is the book as the tape left it when the client asked; every
    # level after it is one of the two diffs': the book the rows build must be the reference's
    # levels with both diffs applied (sizes are contracts, as COIN-M quotes them)
    book: dict[tuple[int, int], int] = {}
    for r in rows:
        if r["action"] == L2_DELETE:
            book.pop((r["side"], r["price_nanos"]), None)
        elif r["action"] == L2_SET:
            book[(r["side"], r["price_nanos"])] = r["size_nanos"]
        else:
            assert r["action"] == L2_CLEAR
            book.clear()
    assert book == {(BID, 9517 * N): 12 * N, (ASK, 9518_500_000_000): 45 * N, (ASK, 9519 * N): 7 * N,
                    (ASK, 9518_600_000_000): 3 * N}
    journal = journal_file(tmp_path / "journal", "binance-coinm")
    assert_journal_equals_live("binance", journal, live)


def test_the_coinm_order_book_answer_names_symbol_and_pair(tmp_path: Path) -> None:
    import urllib.request

    with ReplayServer("binance", [_tape(tmp_path)]).run_in_thread() as srv:
        with urllib.request.urlopen(f"{srv.rest_url}/dapi/v1/depth?symbol={SYMBOL}&limit=5") as answer:
            coinm = json.loads(answer.read())
        with urllib.request.urlopen(f"{srv.rest_url}/fapi/v1/depth?symbol={SYMBOL}&limit=5") as answer:
            usdm = json.loads(answer.read())
    # before any client subscribed the tape has not moved: the captured snapshot is served, in the
    # reference's key order (lastUpdateId, symbol, pair, E, T, bids, asks)
    assert list(coinm) == ["lastUpdateId", "symbol", "pair", "E", "T", "bids", "asks"]
    assert (coinm["symbol"], coinm["pair"], coinm["lastUpdateId"]) == (SYMBOL, "BTCUSD", 17285690)
    assert coinm["bids"] == BOOK["bids"] and coinm["asks"] == BOOK["asks"]
    assert "symbol" not in usdm and "pair" not in usdm  # USD-M's answer names neither
