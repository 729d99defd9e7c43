"""Binance COIN-M derivatives streams (``markPrice``, ``forceOrder``, ``!forceOrder@arr``, each
pair's ``indexPrice``) through the Binance connector and the replay server: live rows == the
``binance-delivery`` file decode, row for row, on every real COIN-M websocket message the data
folder holds (Tardis's binance-delivery mapper pairs)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from tapeflow.cli import main
from tapeflow.derivatives import decode, decoder
from tapeflow.errors import ConfigError
from tapeflow.live.cli import client_options
from tapeflow.live.connector import ConnectorSettings
from tapeflow.replay import ReplayServer
from tapeflow.schemas import ALL_RECORDS
from tapeflow.storage import lake
from tapeflow.venues.base import merge
from tapeflow.venues.binance.client import BinanceDerivativesClient
from tapeflow.venues.binance.replay import BinanceReplay, stream_key
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need
from tests.derivatives.live_streams import (
    PAIRS,
    real_frames,
    records,
    rows,
    run_live,
    symbols_of,
    write_capture,
)
from tests.replay.helpers import session

VENUE, FORMAT = "binance-coinm", "binance-delivery"
SETTINGS = ConnectorSettings(seed=3, stale_after_s=60)


@pytest.fixture
def coinm(real_data: Path) -> list[bytes]:
    need(real_data / PAIRS)
    frames = real_frames(real_data, VENUE)
    streams = sorted(msgspec.json.decode(f)["stream"] for f in frames)
    assert streams == ["btcusd@indexPrice@1s", "btcusd_200925@forceOrder", "btcusd_200925@markPrice@1s"]
    return frames


def _client(symbols: list[str], **options: object):
    def make(srv: ReplayServer) -> BinanceDerivativesClient:
        return BinanceDerivativesClient(symbols, market="coinm", endpoint=srv.ws_url, settings=SETTINGS,
                                        **options)
    return make


def test_coinm_live_through_the_replay_server_equals_the_file_decode(tmp_path: Path,
                                                                     coinm: list[bytes]) -> None:
    path = write_capture(tmp_path / "coinm.jsonl", coinm)
    batch = merge(list(decode(FORMAT, [path])))
    client, srv, batches = run_live(_client(symbols_of(coinm, VENUE)), "binance", [path])
    live = records(batches)
    assert "btcusd@indexPrice@1s" in client.streams()
    assert srv.bad_lines == 0 and srv.frames_served == len(coinm)
    assert "rejected" not in live and "rejected" not in batch
    assert set(live) == set(batch) == {"mark_price", "index_price", "liquidation"}
    for name in batch:
        assert rows(live[name]) == rows(batch[name]), name
        assert set(live[name].column("venue").to_pylist()) == {VENUE}
    # the indexPrice frame's index is the pair's, the liquidation Binance's SELL of 3 contracts
    assert live["index_price"].column("symbol").to_pylist() == ["BTCUSD"]
    assert live["liquidation"].num_rows == 1


def test_coinm_all_market_liquidations(tmp_path: Path, coinm: list[bytes]) -> None:
    path = write_capture(tmp_path / "coinm.jsonl", coinm)
    batch = merge(list(decode(FORMAT, [path])))
    _, _, batches = run_live(_client(["BTCUSD_PERP"], all_liquidations=True, index_price=False), "binance",
                             [path])
    live = records(batches)
    assert rows(live["liquidation"]) == rows(batch["liquidation"]) and batch["liquidation"].num_rows == 1
    assert "index_price" not in live and "mark_price" not in live  # neither subscribed for BTCUSD_PERP
    assert b'"stream":"!forceOrder@arr"' in b"".join(f.data for b in batches for f in b.frames)


_DAMAGE = [
    (b'"e":"markPriceUpdate"', b'"p":"', b'"p":"x'),
    (b'"e":"indexPriceUpdate"', b'"p":"', b'"p":"1e'),
    (b'"e":"forceOrder"', b'"S":"', b'"S":"Q'),
    (b'"e":"forceOrder"', b'"o":{', b'"o_":{'),
]


def test_coinm_bad_frames_are_the_file_decodes_dead_letters(tmp_path: Path, coinm: list[bytes]) -> None:
    damaged = [next(f for f in coinm if kind in f).replace(old, new, 1) for kind, old, new in _DAMAGE]
    path = write_capture(tmp_path / "coinm.jsonl", coinm + damaged)
    batch = merge(list(decode(FORMAT, [path])))
    _, _, batches = run_live(_client(symbols_of(coinm, VENUE)), "binance", [path])
    live = records(batches)
    want = batch["rejected"].to_pylist()
    got = live["rejected"].to_pylist()
    assert len(want) == len(damaged)
    assert [(r["reason"], r["raw"]) for r in got] == [(r["reason"], r["raw"]) for r in want]
    assert all(r["reason"] not in ("", "internal") and r["detail"] for r in got)
    for name in ("mark_price", "index_price", "liquidation"):  # the good frames' rows are all there
        assert rows(live[name]) == rows(batch[name]), name


def test_coinm_subscription_ack_is_binances_and_a_control_frame(tmp_path: Path, coinm: list[bytes]) -> None:
    path = write_capture(tmp_path / "coinm.jsonl", coinm)
    with ReplayServer("binance", [path]).run_in_thread() as srv:
        subscribe = {"method": "SUBSCRIBE", "id": 7,
                     "params": ["btcusd@indexPrice@1s", "btcusd_200925@markPrice@1s"]}
        got = session(srv.ws_url + "/ws", [subscribe], expect=3)
    assert json.loads(got[0]) == {"result": None, "id": 7}
    events = sorted(json.loads(g)["e"] for g in got[1:])  # raw streams: the bare events
    assert events == ["indexPriceUpdate", "markPriceUpdate"]
    dec = decoder(FORMAT)
    # the ack as the server sent it and as Tardis recorded Binance's: control frames, no dead letter
    for i, ack in enumerate((got[0].encode(), b'{"id": 1000, "result": null}')):
        dec.feed(CaptureLine(1, RECV, "", ack, f"live:{i}"))
    assert "rejected" not in dec.flush(0, VENUE).tables and dec.quiet_frames["subscription answer"] == 2


def test_coinm_client_streams_and_options() -> None:
    opts = client_options(["market=coinm"])  # `tapeflow live --derivatives-option market=coinm`
    client = BinanceDerivativesClient(["btcusd_perp", "BTCUSD_240927", "ETHUSD_PERP"], **opts)
    assert client.venue == VENUE and client.make_decoder().venue == VENUE
    assert client.streams() == [
        "btcusd_perp@markPrice@1s", "btcusd_240927@markPrice@1s", "ethusd_perp@markPrice@1s",
        "btcusd@indexPrice@1s", "ethusd@indexPrice@1s",
        "btcusd_perp@forceOrder", "btcusd_240927@forceOrder", "ethusd_perp@forceOrder",
    ]
    assert client.ws_url().startswith("wss://dstream.binance.com/stream?streams=btcusd_perp@markPrice@1s/")
    usdm = BinanceDerivativesClient(["BTCUSDT"])
    assert usdm.venue == "binance-usdm" and not any("indexPrice" in s for s in usdm.streams())
    with pytest.raises(ConfigError, match="COIN-M"):
        BinanceDerivativesClient(["BTCUSDT"], index_price=True)
    with pytest.raises(ConfigError, match="coinm"):
        BinanceDerivativesClient(["BTCUSD_PERP"], market="delivery")


def test_coinm_replay_keys_and_keepalive(tmp_path: Path, coinm: list[bytes]) -> None:
    adapter = BinanceReplay()
    adapter.load([write_capture(tmp_path / "coinm.jsonl", coinm)])
    # a client asking for the 3 s index gets the tape's 1 s one, as for markPrice
    assert stream_key("BTCUSD@indexPrice") == stream_key("btcusd@indexPrice@1s") == ("indexprice", "btcusd")
    assert ("indexprice", "btcusd") in adapter.keys
    # no depth on the tape, but only futures publish these streams: dstream's 3-minute pings
    assert adapter.ws_keepalive("/stream") == (180.0, 600.0)


@pytest.mark.realdata
def test_tapeflow_live_coinm_derivatives_into_the_lake(tmp_path: Path, coinm: list[bytes]) -> None:
    path = write_capture(tmp_path / "coinm.jsonl", coinm)
    batch = merge(list(decode(FORMAT, [path])))
    with ReplayServer("binance", [path]).run_in_thread() as srv:
        code = main(["live", "--venue", "binance", "--symbols", ",".join(symbols_of(coinm, VENUE)),
                     "--derivatives-only", "--derivatives-option", "market=coinm",
                     "--endpoint", srv.ws_url, "--idle-exit", "2s", "--lake", str(tmp_path / "lake"),
                     "--no-clickhouse", "--journal", str(tmp_path / "journal")])
    assert code == 0
    for name in ("mark_price", "index_price", "liquidation"):
        stored = lake.read(ALL_RECORDS[name], tmp_path / "lake")
        assert sorted(map(repr, rows(stored))) == sorted(map(repr, rows(batch[name]))), name
        assert set(stored.column("venue").to_pylist()) == {VENUE}
