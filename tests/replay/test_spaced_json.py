"""Capture lines of valid JSON written with spaces (Python's ``json.dumps`` default ``", "`` and
``": "``, the way venues' API references print their examples) are served; only lines that are not
JSON, or JSON of a shape no channel has, are ``bad_lines``, each counted under its reason.

No real capture in the data folder holds a spaced line (every cryptofeed, hftbacktest and Deribit
capture was checked: all compact), so the fixtures are the venues' documented examples dumped with
spaces: Binance USD-M's ``depthUpdate`` and order book (developers.binance.com, "Diff. Book Depth
Streams", "Order Book") and Bybit v5's ``orderbook.50`` snapshot (bybit-exchange.github.io,
"Orderbook")."""

from __future__ import annotations

import json
from pathlib import Path

from tapeflow.replay import ReplayServer
from tests.replay.helpers import session

NS = 1_700_000_000_000_000_000
# Binance's documented diff (ids as documented) and a snapshot whose lastUpdateId (158) it bridges
DIFF = {"e": "depthUpdate", "E": 123456789, "T": 123456788, "s": "BTCUSDT", "U": 157, "u": 160, "pu": 149,
        "b": [["0.0024", "10"]], "a": [["0.0026", "100"]]}
SNAPSHOT = {"lastUpdateId": 158, "E": 123456780, "T": 123456779, "bids": [["0.0024", "5"]],
            "asks": [["0.0026", "90"]]}
BYBIT = {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1672304484978,
         "data": {"s": "BTCUSDT", "b": [["16493.50", "0.006"], ["16493.00", "0.100"]],
                  "a": [["16611.00", "0.029"], ["16612.00", "0.213"]], "u": 18521288, "seq": 7961638724},
         "cts": 1672304484976}


def _compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _binance_tape(tmp_path: Path) -> Path:
    envelope = {"stream": "btcusdt@depth@100ms", "data": DIFF}
    lines = [
        json.dumps(SNAPSHOT),  # spaced: ", " and ": "
        json.dumps(envelope, indent=None),
        "  " + json.dumps(envelope).replace(", ", ",\t") + " ",  # tabs and surrounding blanks
        json.dumps({"result": None, "id": 1}),  # an answer to a request: not replayed, not bad
        "not json {",  # bad_json
        json.dumps({"foo": 1}),  # JSON of no channel: unknown_shape
    ]
    path = tmp_path / "binance_spaced.jsonl"
    path.write_text("".join(f"{NS + i} {line}\n" for i, line in enumerate(lines)))
    return path


def test_spaced_binance_envelopes_are_served_compact_and_only_bad_lines_counted(tmp_path: Path) -> None:
    with ReplayServer("binance", [_binance_tape(tmp_path)]).run_in_thread() as srv:
        combined = session(f"{srv.ws_url}/stream?streams=btcusdt@depth@100ms", [], expect=2)
        status = srv.status()
    want = _compact({"stream": "btcusdt@depth@100ms", "data": DIFF})
    assert [g.encode() for g in combined] == [want, want]
    assert status["bad_lines"] == 2
    assert status["bad_line_reasons"] == {"bad_json": 1, "unknown_shape": 1}
    assert [e.split(": ")[1] for e in status["bad_line_examples"]] == ["bad_json", "unknown_shape"]
    assert status["bad_line_examples"][0].startswith("binance_spaced.jsonl:5")


def test_raw_stream_and_rest_snapshot_read_the_spaced_lines(tmp_path: Path) -> None:
    import urllib.request

    with ReplayServer("binance", [_binance_tape(tmp_path)]).run_in_thread() as srv:
        raw = session(f"{srv.ws_url}/ws/btcusdt@depth@100ms", [], expect=2)
        with urllib.request.urlopen(f"{srv.rest_url}/fapi/v1/depth?symbol=BTCUSDT") as answer:
            book = json.loads(answer.read())
    assert [json.loads(r) for r in raw] == [DIFF, DIFF]  # the data object alone, as Binance's /ws sends
    # the spaced snapshot seeded the book and the spaced diffs (u 160) were applied on it
    assert book["lastUpdateId"] == 160
    assert book["bids"] == [["0.0024", "10"]] and book["asks"] == [["0.0026", "100"]]


def test_a_spaced_bybit_line_is_served(tmp_path: Path) -> None:
    path = tmp_path / "bybit_spaced.jsonl"
    path.write_text(f"{NS} {json.dumps(BYBIT)}\n{NS + 1} {json.dumps({'foo': [1, 2]})}\n")
    with ReplayServer("bybit", [path]).run_in_thread() as srv:
        got = session(srv.ws_url + "/v5/public/linear",
                      [{"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}], expect=2)
        status = srv.status()
    pushes = [json.loads(g) for g in got if '"topic"' in g]
    assert pushes == [BYBIT]
    assert status["bad_line_reasons"] == {"unknown_shape": 1}
