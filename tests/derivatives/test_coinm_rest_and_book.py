"""Binance COIN-M beyond its websocket derivatives channels: the REST poller preset (``binance_coinm``:
premium index and open interest, with COIN-M's weights) and the book feed (``BinanceClient(market=
"coinm")``, dstream depth with the USD-M protocol), each against the replay server on loopback."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from tapeflow.derivatives.poll_config import binance_coinm
from tapeflow.derivatives.stream import PollFeed, parse_polls
from tapeflow.live import ConnectorSettings
from tapeflow.replay import ReplayServer
from tapeflow.venues.binance.client import BinanceClient
from tests.conftest import need
from tests.live.conna_support import (
    assert_journal_equals_live,
    journal_file,
    live_tables,
    run_client,
    statuses,
)

# the shapes of Binance's COIN-M API reference (GET /dapi/v1/premiumIndex, /dapi/v1/openInterest)
PREMIUM = (b'[{"symbol":"BTCUSD_PERP","pair":"BTCUSD","markPrice":"11029.69574559",'
           b'"indexPrice":"10979.14437500","estimatedSettlePrice":"10981.74168236","lastFundingRate":"0.00071003","interestRate":"0.00010000",'
           b'"nextFundingTime":1596096000000,"time":1596094042000}]')
OPEN_INTEREST = (b'{"symbol":"BTCUSD_PERP","pair":"BTCUSD","openInterest":"15004","contractType":"PERPETUAL",'
                 b'"time":1591261042378}')


def test_coinm_poll_preset() -> None:
    venue = binance_coinm(("BTCUSD_PERP", "BTCUSD_240927"))
    assert venue.fmt == "binance-delivery" and venue.base_url == "https://dapi.binance.com"
    assert [(e.path, dict(e.params)["symbol"], e.interval_s, e.weight) for e in venue.endpoints] == [
        ("/dapi/v1/premiumIndex", "BTCUSD_PERP", 10.0, 10),
        ("/dapi/v1/openInterest", "BTCUSD_PERP", 15.0, 1),
        ("/dapi/v1/premiumIndex", "BTCUSD_240927", 10.0, 10),
        ("/dapi/v1/openInterest", "BTCUSD_240927", 15.0, 1)]
    assert (venue.budget_weight, venue.budget_window_s) == (2400, 60.0)
    assert not any("insurance" in e.path for e in venue.endpoints)  # COIN-M documents none


def test_coinm_polls_on_loopback(tmp_path: Path) -> None:
    tape = tmp_path / "coinm.txt"  # the websocket side has nothing to do here: one mark frame
    tape.write_text('1700000000000000000 {"stream":"btcusd_perp@markPrice@1s","data":'
                    '{"e":"markPriceUpdate","E":1,"s":"BTCUSD_PERP","p":"1","P":"1","r":"","T":0}}\n')
    bodies = {"/dapi/v1/premiumIndex": [PREMIUM], "/dapi/v1/openInterest": [OPEN_INTEREST]}
    with ReplayServer("binance", [tape], rest_bodies=bodies).run_in_thread() as srv:
        feed = PollFeed(parse_polls("binance_coinm:BTCUSD_PERP", srv.rest_url))
        got: dict = {}
        deadline = time.monotonic() + 30
        try:
            while len(got) < 4 and time.monotonic() < deadline:
                got.update(feed.take())
                time.sleep(0.05)
        finally:
            feed.close()
    assert "rejected" not in got
    rows = {name: got[name].to_pylist()[0] for name in ("mark_price", "index_price", "funding_rate",
                                                         "open_interest")}
    assert {r["venue"] for r in rows.values()} == {"binance-coinm"}
    assert {r["symbol"] for r in rows.values()} == {"BTCUSD_PERP"}
    assert rows["mark_price"]["mark_price_nanos"] == 11029_695745590
    assert rows["index_price"]["index_price_nanos"] == 10979_144375000
    assert rows["funding_rate"]["funding_rate"] == 0.00071003
    assert rows["funding_rate"]["funding_time_ns"] == 1596096000000 * 1_000_000
    assert rows["open_interest"]["open_interest_nanos"] == 15004 * 10**9
    assert rows["open_interest"]["ts_event_ns"] == 1591261042378 * 1_000_000


@pytest.mark.realdata
def test_coinm_book_feed_syncs_on_dstream_depth(real_data: Path, tmp_path: Path) -> None:
    """No COIN-M depth is recorded anywhere in the data folder: the real USD-M capture's first lines
    (depth diffs linked by ``pu``, trades, bookTickers, a REST snapshot) with the symbol renamed
    ``BTCUSD_PERP`` stand in for it, COIN-M's depth protocol being USD-M's. The client asks the COIN-M
    paths (``/stream`` on dstream, ``/dapi/v1/depth``), syncs once without a gap, writes venue
    ``binance-coinm`` rows and journals under ``binance-coinm``, and the journal's batch decode equals
    the live rows."""
    src = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    capture = tmp_path / "coinm_btcusd_perp.jsonl"
    with gzip.open(src, "rb") as fh, open(capture, "wb") as dst:
        for _, line in zip(range(3000), fh, strict=False):
            dst.write(line.replace(b"BTCUSDT", b"BTCUSD_PERP").replace(b"btcusdt", b"btcusd_perp"))
    client_urls: list[str] = []
    with ReplayServer("binance", [capture], speed=20).run_in_thread() as srv:
        client = BinanceClient(["BTCUSD_PERP"], market="coinm", endpoint=srv.ws_url,
                               rest_endpoint=srv.rest_url, journal=tmp_path / "journal", trade_stream="trade",
                               settings=ConnectorSettings(seed=1, stale_after_s=20))
        client_urls += [client.ws_url(), client.snapshot_url("BTCUSD_PERP")]
        batches = run_client(srv, client, lambda data: data.startswith(b'{"stream"'))
    assert "/dapi/v1/depth?symbol=BTCUSD_PERP" in client_urls[1]
    assert "btcusd_perp@depth@100ms" in client_urls[0]
    states = [r["state"] for r in statuses(batches)]
    assert states.count("synced") == 1 and "gap" not in states, states
    live = live_tables(batches)
    assert set(live["book_delta"].column("venue").to_pylist()) == {"binance-coinm"}
    assert set(live["book_delta"].column("symbol").to_pylist()) == {"BTCUSD_PERP"}
    assert live["trade"].num_rows > 0 and live["quote"].num_rows > 0
    journal = journal_file(tmp_path / "journal", "binance-coinm")
    assert_journal_equals_live("binance", journal, live)
