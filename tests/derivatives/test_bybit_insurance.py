"""Bybit v5 insurance pools over REST (``GET /v5/market/insurance``): polled by the ``bybit`` preset,
served by the replay server, decoded into ``insurance_fund`` rows. The body is the response example
of Bybit's API reference (bybit-exchange.github.io/docs/v5/market/insurance), not a capture."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from tapeflow.derivatives.poll_config import INSURANCE_FUND_INTERVAL_S
from tapeflow.derivatives.stream import PollFeed, parse_polls
from tapeflow.replay import ReplayServer
from tests.derivatives.test_poll import file_decode
from tests.flows.flowdata import binance_prefix

MS = 1_000_000
EXAMPLE = (b'{"retCode":0,"retMsg":"OK","result":{"updatedTime":"1714003200000","list":['
           b'{"coin":"USDT","symbols":"MERLUSDT,10000000AIDOGEUSDT,ZEUSUSDT","balance":"902178.57602476",'
           b'"value":"901898.0963091522"},'
           b'{"coin":"USDT","symbols":"SOLUSDT,OMNIUSDT,ALGOUSDT","balance":"14454.51626125",'
           b'"value":"14449.515598975464"},'
           b'{"coin":"USDT","symbols":"XLMUSDT,WUSDT","balance":"23.45018235","value":"22.992864174376344"},'
           b'{"coin":"USDT","symbols":"AGIUSDT,WIFUSDT","balance":"10002","value":"9998.896846613574"},'
           b'{"coin":"USDT","symbols":"","balance":"10148045273.618073","value":"10144896808.587431"}]},'
           b'"retExtInfo":{},"time":1714028451228}')
TICKERS = (b'{"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[{"symbol":"ETHUSDT",'
           b'"markPrice":"2000.5","indexPrice":"2000.1","openInterest":"3","fundingRate":"0.0001",'
           b'"nextFundingTime":"1673280000000"}]},"time":1673272861686}')


def _poll(bodies: dict[str, list[bytes]], want: str) -> dict:
    got: dict = {}
    with ReplayServer("binance", [binance_prefix(20)], rest_bodies=bodies).run_in_thread() as srv:
        [venue] = parse_polls("bybit:ETHUSDT", srv.rest_url)
        # the preset's own insurance endpoint at a 20 s interval: at its 300 s the first poll waited
        # a random 0-30 s (the jitter spreads endpoints out), ~15 s of idle test on average; now
        # 0-2 s, and the second poll (18 s on) comes after the loop has stopped
        [ins] = [ep for ep in venue.endpoints if ep.path == "/v5/market/insurance"]
        assert ins.interval_s == INSURANCE_FUND_INTERVAL_S
        eps = [replace(ep, interval_s=20.0) if ep is ins else ep for ep in venue.endpoints]
        feed = PollFeed([replace(venue, endpoints=eps)])
        deadline = time.monotonic() + 30
        try:
            while want not in got and time.monotonic() < deadline:
                got.update(feed.take())
                time.sleep(0.05)
        finally:
            feed.close()
        served = dict(srv.rest_served)
    assert served["/v5/market/insurance"] >= 1, served
    return got


def test_bybit_insurance_pools_are_polled_into_insurance_fund_rows() -> None:
    got = _poll({"/v5/market/tickers": [TICKERS], "/v5/market/insurance": [EXAMPLE]}, "insurance_fund")
    rows = got["insurance_fund"].to_pylist()
    assert [(r["venue"], r["symbol"], r["asset"], r["balance_nanos"], r["ts_event_ns"]) for r in rows] == [
        ("bybit", "10000000AIDOGEUSDT,MERLUSDT,ZEUSUSDT", "USDT", 902_178_576_024_760, 1714003200000 * MS),
        ("bybit", "ALGOUSDT,OMNIUSDT,SOLUSDT", "USDT", 14_454_516_261_250, 1714003200000 * MS),
        ("bybit", "WUSDT,XLMUSDT", "USDT", 23_450_182_350, 1714003200000 * MS),
        ("bybit", "AGIUSDT,WIFUSDT", "USDT", 10_002_000_000_000, 1714003200000 * MS),
        # the shared pool's 10,148,045,273.618073 USDT: past int64 nanos (9.2e9 units), exact in dec38
        ("bybit", "shared-USDT", "USDT", 10_148_045_273_618_073_000, 1714003200000 * MS)]
    assert "rejected" not in got


@pytest.mark.parametrize(("body", "reasons"), [
    (b'{"retCode":10001,"retMsg":"params error","result":{},"time":1}', ["venue_error"]),
    (EXAMPLE.replace(b'"updatedTime":"1714003200000"', b'"updatedTime":"soon"'), ["bad_timestamp"]),
    (EXAMPLE.replace(b'"balance":"10002"', b'"balance":"ten"'), ["bad_number"]),
    (EXAMPLE.replace(b'"symbols":"XLMUSDT,WUSDT"', b'"symbols":7'), ["bad_shape"]),
    (EXAMPLE.replace(b'"balance":"10002"', b'"balance":"-10002"'), ["negative"]),
    (EXAMPLE.replace(b'"balance":"10002"', b'"balance":"1.0000000001"'), ["bad_number"]),  # below the nano
    # 38 digits of nanos: past the column (29 digits of units)
    (EXAMPLE.replace(b'"balance":"10002"', b'"balance":"1' + b"0" * 29 + b'"'), ["out_of_range"]),
    (EXAMPLE.replace(b'"balance":"10002"', b'"balance":"1e99999999999"'), ["out_of_range"]),
])
def test_a_bad_insurance_body_or_pool_is_a_dead_letter(body: bytes, reasons: list[str]) -> None:
    got = file_decode("bybit", body, "https://api.bybit.com/v5/market/insurance")
    assert [r["reason"] for r in got.get("rejected", [])] == reasons
    # a bad body writes nothing; a bad pool costs itself alone
    whole = reasons[0] in ("venue_error", "bad_timestamp")
    assert len(got.get("insurance_fund", [])) == (0 if whole else 4)
