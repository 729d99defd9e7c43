"""Every real message and REST body of /work/shared/data/derivatives/nautilus_fixtures decoded field by
field; the expected values are read off the fixture files by hand."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tapeflow.derivatives import decoder
from tapeflow.schemas.records import ASK, UNDEF_PRICE, UNDEF_TS
from tapeflow.wire.capture import HTTP, RECV, CaptureLine
from tests.conftest import need

FIXTURES = "derivatives/nautilus_fixtures"
RECV_NS = 1_700_000_000_000_000_000
MS = 1_000_000
BN = 1_000_000_000


def _decode(root: Path, fmt: str, name: str, url: str = "") -> dict[str, list[dict[str, Any]]]:
    payload = need(root / FIXTURES / name).read_bytes()
    dec = decoder(fmt)
    dec.feed(CaptureLine(RECV_NS, HTTP if url else RECV, url, payload, name))
    tables = dec.flush(0, name).tables
    return {k: t.to_pylist() for k, t in tables.items()}


def _only(rows: dict[str, list[dict[str, Any]]], record: str) -> dict[str, Any]:
    assert "rejected" not in rows, rows.get("rejected")
    assert len(rows[record]) == 1, rows
    return rows[record][0]


def test_binance_mark_price_stream(real_data: Path) -> None:
    rows = _decode(real_data, "binance-futures", "binance_mark_price_stream.json")
    mark, index, funding = _only(rows, "mark_price"), _only(rows, "index_price"), _only(rows, "funding_rate")
    assert (mark["symbol"], mark["ts_event_ns"], mark["mark_price_nanos"]) == (
        "BTCUSDT",
        1562305380000 * MS,
        11794_150_000_000,
    )
    assert index["index_price_nanos"] == 11784_626_590_910 and index["ts_event_ns"] == 1562305380000 * MS
    assert funding["funding_rate"] == 0.00038167 and funding["funding_time_ns"] == 1562306400000 * MS
    assert math.isnan(funding["predicted_rate"]) and funding["settled"] == 0
    assert mark["venue"] == "binance-usdm" and mark["ts_recv_ns"] == RECV_NS


def test_binance_liquidation_stream(real_data: Path) -> None:
    row = _only(_decode(real_data, "binance-futures", "binance_liquidation_stream.json"), "liquidation")
    assert (row["symbol"], row["side"], row["price_nanos"], row["size_nanos"], row["ts_event_ns"]) == (
        "BTCUSDT",
        ASK,
        9910 * BN,
        14_000_000,
        1568014460893 * MS,
    )
    assert row["liquidation_id"] == ""


def test_binance_rest_open_interest(real_data: Path) -> None:
    url = "https://fapi.binance.com/fapi/v1/openInterest?symbol=BTCUSDT"
    row = _only(
        _decode(real_data, "binance-futures", "binance_http_futures_market_open_interest.json", url),
        "open_interest",
    )
    assert (row["symbol"], row["ts_event_ns"], row["open_interest_nanos"]) == (
        "BTCUSDT",
        1589437530011 * MS,
        10659_509_000_000,
    )
    assert row["open_interest_value_nanos"] == UNDEF_PRICE


def test_binance_rest_open_interest_history(real_data: Path) -> None:
    url = "https://fapi.binance.com/futures/data/openInterestHist?symbol=BTCUSDT&period=5m"
    rows = _decode(
        real_data, "binance-futures", "binance_http_futures_market_open_interest_historical.json", url
    )
    assert [
        (r["ts_event_ns"], r["open_interest_nanos"], r["open_interest_value_nanos"])
        for r in rows["open_interest"]
    ] == [
        (1583127900000 * MS, 20403_637_000_000, 150570784_078_099_790),
        (1583128200000 * MS, 20401_367_000_000, 149940752_144_644_480),
    ]


def test_binance_rest_premium_index(real_data: Path) -> None:
    url = "https://fapi.binance.com/fapi/v1/premiumIndex?symbol=BTCUSDT"
    rows = _decode(real_data, "binance-futures", "binance_http_futures_market_premium_index.json", url)
    assert _only(rows, "mark_price")["mark_price_nanos"] == 11793_631_045_620
    assert _only(rows, "index_price")["index_price_nanos"] == 11781_804_959_700
    funding = _only(rows, "funding_rate")
    assert funding["funding_rate"] == 0.00038246 and funding["funding_time_ns"] == 1597392000000 * MS
    assert funding["ts_event_ns"] == 1597370495002 * MS


def test_binance_rest_funding_history(real_data: Path) -> None:
    url = "https://fapi.binance.com/fapi/v1/fundingRate?symbol=BTCUSDT"
    rows = _decode(real_data, "binance-futures", "binance_http_futures_market_funding_rate.json", url)
    assert [
        (r["funding_rate"], r["funding_time_ns"], r["ts_event_ns"], r["settled"])
        for r in rows["funding_rate"]
    ] == [
        (-0.0375, 1570608000000 * MS, 1570608000000 * MS, 1),
        (0.0001, 1570636800000 * MS, 1570636800000 * MS, 1),
    ]


def test_bybit_linear_ticker(real_data: Path) -> None:
    rows = _decode(real_data, "bybit", "bybit_ws_ticker_linear.json")
    ts = 1673272861686 * MS
    assert _only(rows, "mark_price")["mark_price_nanos"] == 17217_330_000_000
    assert _only(rows, "index_price")["index_price_nanos"] == 17227_360_000_000
    oi = _only(rows, "open_interest")
    assert (oi["open_interest_nanos"], oi["open_interest_value_nanos"]) == (
        68744_761_000_000,
        1183601235_910_000_000,
    )
    funding = _only(rows, "funding_rate")
    assert (funding["funding_rate"], funding["funding_time_ns"], funding["ts_event_ns"]) == (
        -0.000212,
        1673280000000 * MS,
        ts,
    )
    assert {r["ts_event_ns"] for t in rows.values() for r in t} == {ts}


def test_bybit_rest_funding_history(real_data: Path) -> None:
    url = "https://api.bybit.com/v5/market/funding/history?category=linear&symbol=BTCUSDT"
    rows = _decode(real_data, "bybit", "bybit_http_get_funding_history.json", url)
    assert [
        (r["symbol"], r["funding_rate"], r["funding_time_ns"], r["settled"]) for r in rows["funding_rate"]
    ] == [
        ("BTCUSDT", 0.0001, 1709884800000 * MS, 1),
        ("BTCUSDT", 0.00015, 1709856000000 * MS, 1),
    ]


def test_deribit_perpetual_ticker(real_data: Path) -> None:
    rows = _decode(real_data, "deribit", "deribit_ws_ticker_perpetual.json")
    ts = 1765541474086 * MS
    assert _only(rows, "mark_price")["mark_price_nanos"] == 92281_780_000_000
    assert _only(rows, "index_price")["index_price_nanos"] == 92263_550_000_000
    assert _only(rows, "open_interest")["open_interest_nanos"] == 1132329370 * BN
    funding = _only(rows, "funding_rate")
    assert (funding["funding_rate"], funding["funding_time_ns"]) == (0.0, UNDEF_TS)
    assert {r["ts_event_ns"] for t in rows.values() for r in t} == {ts}
    assert {r["symbol"] for t in rows.values() for r in t} == {"BTC-PERPETUAL"}


def test_okx_funding_rate_push(real_data: Path) -> None:
    funding = _only(_decode(real_data, "okx", "okx_ws_funding_rate.json"), "funding_rate")
    assert (funding["symbol"], funding["funding_rate"], funding["predicted_rate"]) == (
        "BTC-USDT-SWAP",
        0.0001,
        0.0002,
    )
    assert funding["funding_time_ns"] == 1744590349506 * MS and funding["ts_event_ns"] == 1744590349506 * MS


def test_okx_rest_funding_history(real_data: Path) -> None:
    url = "https://www.okx.com/api/v5/public/funding-rate-history?instId=BTC-USDT-SWAP"
    rows = _decode(real_data, "okx", "okx_http_get_funding_rate_history.json", url)
    # ten decimals: no nanos scale would hold them, the double closest to the text does
    assert [(r["funding_rate"], r["funding_time_ns"], r["settled"]) for r in rows["funding_rate"]] == [
        (0.0001515032, 1704067200000 * MS, 1),
        (-0.0000236017, 1704038400000 * MS, 1),
    ]


def test_okx_rest_index_and_mark(real_data: Path) -> None:
    url = "https://www.okx.com/api/v5/market/index-tickers?instId=BTC-USDT"
    index = _only(_decode(real_data, "okx", "okx_http_get_index_price.json", url), "index_price")
    assert (index["symbol"], index["index_price_nanos"], index["ts_event_ns"]) == (
        "BTC-USDT",
        103895 * BN,
        1746942707815 * MS,
    )
    url = "https://www.okx.com/api/v5/public/mark-price?instType=SWAP&instId=BTC-USDT-SWAP"
    mark = _only(_decode(real_data, "okx", "okx_http_get_mark_price.json", url), "mark_price")
    assert (mark["symbol"], mark["mark_price_nanos"], mark["ts_event_ns"]) == (
        "BTC-USDT-SWAP",
        84660_100_000_000,
        1744590349506 * MS,
    )


def test_every_fixture_is_decoded(real_data: Path) -> None:
    names = {p.name for p in need(real_data / FIXTURES).glob("*.json")}
    tested = {
        "binance_mark_price_stream.json",
        "binance_liquidation_stream.json",
        "binance_http_futures_market_open_interest.json",
        "binance_http_futures_market_open_interest_historical.json",
        "binance_http_futures_market_premium_index.json",
        "binance_http_futures_market_funding_rate.json",
        "bybit_ws_ticker_linear.json",
        "bybit_http_get_funding_history.json",
        "deribit_ws_ticker_perpetual.json",
        "okx_ws_funding_rate.json",
        "okx_http_get_funding_rate_history.json",
        "okx_http_get_index_price.json",
        "okx_http_get_mark_price.json",
    }
    assert names == tested


@pytest.mark.parametrize(
    "frame",
    [
        # Binance markPrice before the index was added (2019), and a delivery contract's (no r, no T)
        '{"e":"markPriceUpdate","E":1569888003001,"s":"BTCUSDT","p":"8291.34697815","r":"0.00010000","T":1569916800000}',
        '{"stream":"btcusd_200925@markPrice@1s","data":{"e":"markPriceUpdate","E":1592265602000,'
        '"s":"BTCUSD_200925","p":"9501.15723333","P":"9429.39675000"}}',
    ],
)
def test_older_binance_mark_shapes_parse(frame: str) -> None:
    dec = decoder("binance-futures")
    dec.feed(CaptureLine(RECV_NS, RECV, "", frame.encode(), "x"))
    tables = dec.flush(0, "x").tables
    assert set(tables) <= {"mark_price", "funding_rate"} and tables["mark_price"].num_rows == 1
