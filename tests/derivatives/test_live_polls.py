"""The derivatives REST pollers inside the live flow, against the replay server's recorded REST bodies
(derivatives/nautilus_fixtures): beside the Binance websocket feed, and alone through ``tapeflow live``.
Every polled row equals the file decode of the same body (all but its receive time)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, run_main

from flows.derivatives import PollSource
from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from flows.sources import LiveSource
from tapeflow.cli import main
from tapeflow.derivatives.stream import parse_polls
from tapeflow.errors import ConfigError
from tapeflow.live import ConnectorSettings
from tapeflow.replay import ReplayServer
from tapeflow.schemas.derivatives import MARK_PRICE, OPEN_INTEREST
from tapeflow.settings import LiveSettings
from tapeflow.storage import lake
from tests.conftest import need
from tests.derivatives.test_poll import BODIES, FIXTURES, PREMIUM, file_decode
from tests.derivatives.test_poll import OPEN_INTEREST as OI_PATH
from tests.flows.flowdata import binance_prefix

SECOND = 1_000_000_000


def _bodies(real_data: Path) -> dict[str, list[bytes]]:
    """The recorded premiumIndex and openInterest bodies, the open interest's ``time`` set to the
    premium body's. The two were recorded 92 days apart (2020-05-14 and 2020-08-14); a live poller
    gets both near one clock. Left apart, an open-interest row polled before the first mark opened
    that instrument's 1 s grid 92 days before the mark's time, and the run wrote ~7.9 M grid rows
    (42 s instead of 5, depending on the first polls' jitter)."""
    bodies = {path: need(real_data / FIXTURES / BODIES[path]).read_bytes() for path in (PREMIUM, OI_PATH)}
    premium_time = re.search(rb'"time":\s*(\d+)', bodies[PREMIUM])
    assert premium_time is not None
    oi, n = re.subn(rb'("time":\s*)\d+', lambda m: m.group(1) + premium_time.group(1), bodies[OI_PATH])
    assert n == 1
    return {PREMIUM: [bodies[PREMIUM]], OI_PATH: [oi]}


def _expected(bodies: dict[str, list[bytes]], rest_url: str, served: dict[str, int]) -> dict[str, list]:
    """Each record's rows: the file decode of every body the server answered, receive time left out."""
    want: dict[str, list] = {}
    for path, query in ((PREMIUM, "?symbol=BTCUSDT"), (OI_PATH, "?symbol=BTCUSDT")):
        decoded = file_decode("binance-futures", bodies[path][0], f"{rest_url}{path}{query}")
        for name, rows in decoded.items():
            want.setdefault(name, []).extend(_strip(rows) * served[path])
    return want


def _strip(rows: list[dict[str, Any]]) -> list[tuple]:
    return sorted(tuple(sorted((k, v) for k, v in r.items() if k != "ts_recv_ns")) for r in rows)


def _rows(table: Any) -> list[tuple]:
    def spell(v: Any) -> Any:
        return "NaN" if isinstance(v, float) and v != v else v

    return _strip([{k: spell(v) for k, v in r.items()} for r in table.to_pylist()])


@pytest.mark.realdata
def test_polls_beside_the_websocket_feed_reach_the_sinks(tmp_path: Path, real_data: Path) -> None:
    bodies = _bodies(real_data)
    tables: list = []
    with ReplayServer("binance", [binance_prefix(400)], speed=5, rest_bodies=bodies).run_in_thread() as srv:
        source = LiveSource("binance", ["BTCUSDT"], endpoint=srv.ws_url, rest_endpoint=srv.rest_url,
                            journal=None, idle_stop_ns=3 * SECOND,
                            client_options={"trade_stream": "trade", "settings": ConnectorSettings(seed=1)})
        polls = PollSource(parse_polls("binance_usdm:BTCUSDT", srv.rest_url), duration_ns=4 * SECOND)
        run_main(build_market_flow(source, MarketSinks(tables=TestingSink(tables)), polls=polls))
        served = dict(srv.rest_served)
    out = gather(tables)
    assert served[PREMIUM] >= 1 and served[OI_PATH] >= 1, served  # both endpoints were polled
    want = _expected(bodies, srv.rest_url, served)
    for record in (MARK_PRICE, OPEN_INTEREST):
        assert _rows(out[record.name]) == sorted(want[record.name]), record.name
    assert set(want) - {"rejected"} <= set(out)  # index and funding rows from premiumIndex too
    assert out["book_snapshot"].num_rows > 0  # the venue feed ran beside the polls


@pytest.mark.realdata
def test_tapeflow_live_polls_alone_into_the_lake(tmp_path: Path, real_data: Path) -> None:
    bodies = _bodies(real_data)
    with ReplayServer("binance", [binance_prefix(50)], rest_bodies=bodies).run_in_thread() as srv:
        code = main(["live", "--poll", "binance_usdm:BTCUSDT", "--poll-url", srv.rest_url, "--duration", "3s",
                     "--lake", str(tmp_path / "lake"), "--no-clickhouse", "--journal", str(tmp_path / "j")])
        served = dict(srv.rest_served)
    assert code == 0
    want = _expected(bodies, srv.rest_url, served)
    got = lake.read(MARK_PRICE, tmp_path / "lake")
    assert served[PREMIUM] >= 1 and _rows(got) == sorted(want[MARK_PRICE.name])


def test_a_bad_poll_spec_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown derivatives poll venue 'bitmex'.*binance_usdm"):
        LiveSettings.from_env({"TAPEFLOW_LIVE_POLL": "bitmex:XBTUSD"})
    with pytest.raises(ConfigError, match="names no symbol"):
        LiveSettings.from_env({"TAPEFLOW_LIVE_POLL": "okx:"})
    assert LiveSettings.from_env({"TAPEFLOW_LIVE_POLL": "okx:BTC-USDT-SWAP"}).polls == "okx:BTC-USDT-SWAP"
    assert main(["live", "--poll", "nowhere:X", "--no-clickhouse"]) != 0


def test_bybit_tickers_poll_brings_mark_index_funding_and_open_interest(tmp_path: Path) -> None:
    """One v5 tickers request per symbol carries all four (the body is the shape of Bybit's API
    reference, as in test_decoders)."""
    import time

    from tapeflow.derivatives.poll_config import bybit
    from tapeflow.derivatives.stream import PollFeed

    body = (b'{"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[{"symbol":"ETHUSDT",'
            b'"markPrice":"2000.5","indexPrice":"2000.1","openInterest":"3","fundingRate":"0.0001",'
            b'"nextFundingTime":"1673280000000"}]},"time":1673272861686}')
    venue = bybit(("ETHUSDT",))
    assert [(e.path, dict(e.params)) for e in venue.endpoints] == [
        ("/v5/market/tickers", {"category": "linear", "symbol": "ETHUSDT"}), ("/v5/market/insurance", {})]
    assert [e.weight for e in venue.endpoints] == [1, 1]
    assert (venue.budget_weight, venue.budget_window_s) == (600, 5.0)
    with pytest.raises(ConfigError, match="linear or inverse"):
        bybit(("ETHUSDT",), category="spot")
    with ReplayServer("binance", [binance_prefix(20)], rest_bodies={"/v5/market/tickers": [body]}
                      ).run_in_thread() as srv:
        feed = PollFeed(parse_polls("bybit:ETHUSDT", srv.rest_url))
        got: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        try:
            while len(got) < 4 and time.monotonic() < deadline:
                got.update(feed.take())
                time.sleep(0.05)
        finally:
            feed.close()
    assert {"mark_price", "index_price", "funding_rate", "open_interest"} <= set(got)
    assert got["mark_price"].column("mark_price_nanos").to_pylist() == [2000_500_000_000]
    assert got["open_interest"].column("open_interest_nanos").to_pylist() == [3_000_000_000]
