"""Every frame ends as rows, one dead letter or a declared quiet frame (docs/reliability.md).

``VenueDecoder.feed_frame`` checks it once for the venues that declare their quiet frames
(``every_frame_accounted``: all seven JSON venues): a frame read without complaint that made
nothing is an ``empty_message`` dead letter, never a silent drop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.binance.parse import BinanceDecoder
from tapeflow.venues.coinbase.parse import CoinbaseDecoder
from tapeflow.venues.decoder import VenueDecoder
from tapeflow.venues.kucoin.parse import KucoinDecoder
from tapeflow.wire.capture import RECV, SENT, CaptureLine
from tests.conftest import need

T0 = 1_700_000_000_000_000_000


class _Nothing(VenueDecoder):
    venue = "test"
    every_frame_accounted = True

    def message(self, msg: Any, line: CaptureLine) -> None:
        if msg.get("ping"):
            self.quiet("ping")


def _line(payload: bytes, n: int, kind: str = RECV) -> CaptureLine:
    return CaptureLine(T0 + n, kind, "", payload, f"t:{n}")


def test_a_frame_that_makes_nothing_is_an_empty_message_dead_letter() -> None:
    dec = _Nothing()
    for n, (kind, payload) in enumerate([(RECV, b'{"x":1}'), (RECV, b'{"ping":true}'), (SENT, b'{"op":1}')]):
        dec.feed(_line(payload, n, kind))
    rej = dec.flush(0, "t").tables["rejected"].to_pylist()
    assert [(r["reason"], r["location"]) for r in rej] == [("empty_message", "t:0")]
    assert dict(dec.quiet_frames) == {"ping": 1, SENT: 1}


def test_a_venue_that_declares_nothing_is_not_checked() -> None:
    class Unchecked(_Nothing):
        every_frame_accounted = False

    dec = Unchecked()
    dec.feed(_line(b'{"x":1}', 0))
    assert "rejected" not in dec.flush(0, "t").tables


@pytest.mark.parametrize(("fmt", "frames"), [
    # a Kraken book update carrying only its checksum: no level, nothing to store
    ("kraken", [[7, {"as": [["5.0", "1.0", "1.0"]], "bs": [["4.0", "1.0", "1.0"]]}, "book-10", "X/Y"],
                [7, {"c": "123"}, "book-10", "X/Y"]]),
])
def test_a_real_venue_frame_that_made_nothing_is_an_empty_message(tmp_path: Path, fmt: str,
                                                                  frames: list) -> None:
    path = tmp_path / f"{fmt}.jsonl"
    path.write_text("".join(f"{T0 + i} {json.dumps(f)}\n" for i, f in enumerate(frames)))
    tables = merge(list(get_format(fmt).decode([path])))
    rej = tables["rejected"].to_pylist()
    assert [(r["reason"], r["location"]) for r in rej] == [("empty_message", f"{fmt}.jsonl:2")]


@pytest.mark.parametrize("frame", [
    {"event": "heartbeat"},
    {"event": "subscriptionStatus", "status": "subscribed", "pair": "X/Y"},
])
def test_kraken_control_frames_are_quiet(tmp_path: Path, frame: dict) -> None:
    path = tmp_path / "k.jsonl"
    path.write_text(f"{T0} {json.dumps(frame)}\n")
    assert "rejected" not in merge(list(get_format("kraken").decode([path])))


def test_an_okx_heartbeat_update_is_quiet(tmp_path: Path) -> None:
    snap = {"arg": {"channel": "books", "instId": "X-Y"}, "action": "snapshot",
            "data": [{"asks": [["5", "1", "0", "1"]], "bids": [["4", "1", "0", "1"]], "ts": "1700000000000",
                      "seqId": 10, "prevSeqId": -1}]}
    beat = {"arg": {"channel": "books", "instId": "X-Y"}, "action": "update",
            "data": [{"asks": [], "bids": [], "ts": "1700000000001", "seqId": 10, "prevSeqId": 10}]}
    path = tmp_path / "o.jsonl"
    path.write_text(f"{T0} {json.dumps(snap)}\n{T0 + 1} {json.dumps(beat)}\n")
    tables = merge(list(get_format("okx").decode([path])))
    assert "rejected" not in tables and tables["book_delta"].num_rows == 3


# -- Binance, Coinbase, KuCoin: diffs buffered before a snapshot write their rows later ------------

def _ns_file(tmp_path: Path, name: str, frames: list) -> Path:
    path = tmp_path / name
    compact = [json.dumps(f, separators=(",", ":")) for f in frames]  # as Binance sends them
    path.write_text("".join(f"{T0 + i} {text}\n" for i, text in enumerate(compact)))
    return path


def _binance_diff(first: int, last: int, prev: int, bids: list) -> dict:
    data = {"e": "depthUpdate", "E": 5, "T": 4, "s": "XUSDT", "U": first, "u": last, "pu": prev, "b": bids,
            "a": [["11", "2"]] if bids else []}
    return {"stream": "xusdt@depth@0ms", "data": data}


BINANCE_SESSION = [
    {"result": None, "id": 1},                        # subscription answer: quiet
    _binance_diff(5, 9, 4, [["10", "1"]]),            # before the snapshot: buffered
    _binance_diff(10, 12, 9, [["10", "2"]]),          # buffered, bridges the snapshot
    {"lastUpdateId": 11, "E": 1, "T": 1, "bids": [["9", "1"]], "asks": [["12", "1"]]},
    _binance_diff(13, 14, 12, []),                    # synced, no level: quiet
    _binance_diff(15, 16, 14, [["10", "3"]]),
]


@pytest.mark.parametrize("fast", [False, True])
def test_binance_buffered_and_quiet_frames_are_accounted_on_both_paths(tmp_path: Path, fast: bool) -> None:
    dec = BinanceDecoder(fast=fast)
    tables = merge(list(dec.run([_ns_file(tmp_path, "b.ns", BINANCE_SESSION)])))
    assert "rejected" not in tables
    assert (dec.buffered_frames, dict(dec.quiet_frames)) == (2, {"subscription answer": 1, "empty diff": 1})
    # the buffered diffs' rows came with the snapshot, in book order: contained, snapshot, bridge
    assert tables["book_delta"].column("sequence").to_pylist() == [9, 9, 11, 11, 11, 12, 12, 16, 16]


def test_binance_a_frame_that_made_nothing_is_an_empty_message(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # every Binance path writes rows, a dead letter or declares itself quiet; were one to write
    # nothing (here the quote writer, as a bug would), the frame is caught on the per-frame path
    monkeypatch.setattr(BinanceDecoder, "_quote", lambda self, venue, data, line: None)
    ticker = {"stream": "xusdt@bookTicker", "data": {"u": 1, "s": "XUSDT", "b": "1e0", "B": "1", "a": "2",
                                                     "A": "3"}}
    tables = merge(list(BinanceDecoder(fast=True).run([_ns_file(tmp_path, "b.ns", [ticker])])))
    assert tables["rejected"].column("reason").to_pylist() == ["empty_message"]


def test_a_coinbase_l2update_of_no_change_is_an_empty_message(tmp_path: Path) -> None:
    frames = [{"type": "subscriptions", "channels": []},
              {"type": "snapshot", "product_id": "X-Y", "bids": [["4", "1"]], "asks": [["5", "1"]]},
              {"type": "l2update", "product_id": "X-Y", "time": "2023-11-14T22:13:20.000001Z", "changes": []},
              {"type": "heartbeat", "product_id": "X-Y", "sequence": 1, "last_trade_id": 1,
               "time": "2023-11-14T22:13:20.000002Z"}]
    dec = CoinbaseDecoder()
    tables = merge(list(dec.run([_ns_file(tmp_path, "c.jsonl", frames)])))
    rej = tables["rejected"].to_pylist()
    assert [(r["reason"], r["location"], r["symbol"]) for r in rej] == [("empty_message", "c.jsonl:3", "X-Y")]
    assert dict(dec.quiet_frames) == {"subscriptions": 1, "heartbeat": 1}


def _kucoin_diff(first: int, last: int, bids: list) -> dict:
    data = {"symbol": "X-BTC", "sequenceStart": first, "sequenceEnd": last, "time": 1700000000000,
            "changes": {"asks": [], "bids": bids}}
    return {"type": "message", "subject": "trade.l2update", "topic": "/market/level2:X-BTC", "data": data}


def test_kucoin_buffered_and_quiet_frames_are_accounted(tmp_path: Path) -> None:
    ws = _ns_file(tmp_path, "k.ws", [{"type": "welcome", "id": "1"}, _kucoin_diff(5, 5, [["1", "2", 5]]),
                                     _kucoin_diff(6, 6, [["0", "0", 6]])])  # price "0": the sequence only
    rest = {"code": "200000",
            "data": {"time": 1700000000000, "sequence": "4", "bids": [["1", "1"]], "asks": []}}
    http = tmp_path / "k.http"
    http.write_text("https://api.kucoin.com/api/v3/market/orderbook/level2?symbol=X-BTC -> 1700000001.5: "
                    f"{json.dumps(rest)}\n")
    dec = KucoinDecoder()
    tables = merge(list(dec.run([ws, http])))
    assert "rejected" not in tables
    assert (dec.buffered_frames, dict(dec.quiet_frames)) == (1, {"welcome": 1, "empty diff": 1})
    assert tables["book_delta"].num_rows == 3  # the snapshot's clear and level, then the buffered diff


# -- the real captures: every frame accounted for, no empty_message --------------------------------

REAL = [("binance", ["binance/usdm_btcusdt_20240808.gz"]),
        ("binance", ["cryptofeed/BINANCE.ws.1.0", "cryptofeed/BINANCE.http.0.0"]),
        ("binance", ["cryptofeed/BINANCE_FUTURES.ws.1.0", "cryptofeed/BINANCE_FUTURES.http.0.0"]),
        ("coinbase", ["cryptofeed/COINBASE.ws.28.0"]),
        ("kucoin", ["cryptofeed/KUCOIN.ws.1.0", "cryptofeed/KUCOIN.http.0.0"]),
        ("bitmex", ["cryptofeed/BITMEX.ws.1.0"]), ("bybit", ["cryptofeed/BYBIT.ws.25.0"]),
        ("kraken", ["cryptofeed/KRAKEN.ws.48.0"]), ("kraken", ["cryptofeed/KRAKEN.ws.50.0"])]


@pytest.mark.parametrize(("fmt", "names"), REAL, ids=[n[0].rpartition("/")[2] for _, n in REAL])
def test_real_captures_make_no_empty_message(real_data: Path, fmt: str, names: list[str]) -> None:
    paths = [need(real_data / n) for n in names]
    # Binance frame by frame, so the check sees every frame (the block path's output equals it:
    # tests/venues/test_binance_block.py)
    chunks = BinanceDecoder(fast=False).run(paths) if fmt == "binance" else get_format(fmt).decode(paths)
    tables = merge(list(chunks))
    reasons = tables["rejected"].column("reason").to_pylist() if "rejected" in tables else []
    assert "empty_message" not in reasons
