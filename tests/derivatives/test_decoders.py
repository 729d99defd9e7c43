"""What each derivatives decoder does beyond the oracle pairs: state across frames, control frames,
venue errors, REST endpoints, and values no pair carries. Expected values are read off the frames."""

from __future__ import annotations

from typing import Any

from tapeflow.derivatives import decoder
from tapeflow.schemas.records import ASK, BID
from tapeflow.wire.capture import HTTP, RECV, CaptureLine

RECV_NS = 1_700_000_000_000_000_000
MS = 1_000_000
BN = 1_000_000_000


def _run(fmt: str, *frames: str | tuple[str, str]) -> tuple[dict[str, list[dict[str, Any]]], Any]:
    dec = decoder(fmt)
    for i, f in enumerate(frames):
        url, body = f if isinstance(f, tuple) else ("", f)
        dec.feed(CaptureLine(RECV_NS + i, HTTP if url else RECV, url, body.encode(), f"t:{i + 1}"))
    tables = dec.flush(0, "t").tables
    return {k: t.to_pylist() for k, t in tables.items()}, dec


def _reasons(rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [r["reason"] for r in rows.get("rejected", [])]


def test_bybit_delta_before_snapshot_writes_what_it_carries_and_later_deltas_keep_the_state() -> None:
    snap = (
        '{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1000,"data":{"symbol":"BTCUSDT","markPrice":"1.5",'
        '"indexPrice":"1.4","openInterest":"10","openInterestValue":"15","nextFundingTime":"28800000",'
        '"fundingRate":"0.0001"}}'
    )
    head = '{"topic":"tickers.BTCUSDT","type":"delta","ts":2000,'
    delta = head + '"data":{"symbol":"BTCUSDT","fundingRate":"-0.0002"}}'
    rows, _ = _run("bybit", delta, snap, delta)
    assert "rejected" not in rows
    assert [(r["ts_event_ns"], r["funding_rate"], r["funding_time_ns"]) for r in rows["funding_rate"]] == [
        (2000 * MS, -0.0002, -1),  # a capture that starts mid-stream: no funding time known yet
        (1000 * MS, 0.0001, 28800000 * MS),
        (2000 * MS, -0.0002, 28800000 * MS),
    ]
    assert [r["open_interest_value_nanos"] for r in rows["open_interest"]] == [15 * BN]
    assert len(rows["mark_price"]) == 1  # the delta moved only the funding rate


def test_bybit_rest_tickers_and_open_interest() -> None:
    tickers = (
        '{"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[{"symbol":"ETHUSDT",'
        '"markPrice":"2000.5","indexPrice":"2000.1","openInterest":"3","fundingRate":"0.0001",'
        '"nextFundingTime":"1673280000000"}]},"time":1673272861686}'
    )
    oi = (
        '{"retCode":0,"retMsg":"OK","result":{"symbol":"BTCUSD","category":"inverse","list":[{"openInterest":'
        '"461134384.00000000","timestamp":"1669571400000"}]},"time":1669571723790}'
    )
    err = '{"retCode":10001,"retMsg":"params error","result":{},"time":1}'
    rows, _ = _run(
        "bybit",
        ("https://api.bybit.com/v5/market/tickers?category=linear", tickers),
        ("https://api.bybit.com/v5/market/open-interest?symbol=BTCUSD", oi),
        ("https://api.bybit.com/v5/market/tickers", err),
        ("https://api.bybit.com/v5/market/kline", tickers),
    )
    assert rows["mark_price"][0]["mark_price_nanos"] == 2000_500_000_000
    assert [(r["symbol"], r["open_interest_nanos"], r["ts_event_ns"]) for r in rows["open_interest"]] == [
        ("ETHUSDT", 3 * BN, 1673272861686 * MS),
        ("BTCUSD", 461134384 * BN, 1669571400000 * MS),
    ]
    assert _reasons(rows) == ["venue_error", "unsupported_channel"]


def test_binance_mark_price_array_coin_m_venue_and_errors() -> None:
    arr = (
        '{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate","E":1,"s":"BTCUSD_PERP","p":"1.0",'
        '"r":"0.0001","T":5},{"e":"markPriceUpdate","E":2,"s":"ETHUSD_PERP","p":"2.0","r":"","T":5}]}'
    )
    rows, dec = _run(
        "binance-delivery",
        arr,
        '{"id":1,"result":null}',
        '{"code":-1121,"msg":"Invalid symbol."}',
        ("https://dapi.binance.com/dapi/v1/klines", "[]"),
    )
    assert [(r["venue"], r["symbol"], r["mark_price_nanos"]) for r in rows["mark_price"]] == [
        ("binance-coinm", "BTCUSD_PERP", BN),
        ("binance-coinm", "ETHUSD_PERP", 2 * BN),
    ]
    assert [r["symbol"] for r in rows["funding_rate"]] == ["BTCUSD_PERP"]  # an empty r is no rate
    assert _reasons(rows) == ["venue_error", "unsupported_channel"]
    assert dec.quiet_frames["subscription answer"] == 1


def test_okx_option_mark_rounds_to_the_nano_and_errors_are_dead_letters() -> None:
    mark = (
        '{"arg":{"channel":"mark-price","instId":"ETH-USD-211231-9600-C"},"data":[{"instId":'
        '"ETH-USD-211231-9600-C","instType":"OPTION","markPx":"3.8005764218904408","ts":"1640183727000"}]}'
    )
    rows, dec = _run(
        "okx",
        mark,
        '{"event":"subscribe","arg":{"channel":"mark-price"}}',
        '{"event":"error","code":"60012","msg":"Invalid request"}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[]}]}',
    )
    assert rows["mark_price"][0]["mark_price_nanos"] == 3_800_576_422
    assert _reasons(rows) == ["venue_error", "unsupported_channel"]
    assert dec.quiet_frames["subscribe event"] == 1


def test_okx_insurance_fund_rest() -> None:
    # the response shape of OKX's API reference (GET /api/v5/public/insurance-fund); no capture holds one
    body = (
        '{"code":"0","msg":"","data":[{"details":[{"adlType":"","amt":"","balance":"1343.1308",'
        '"ccy":"ETH","maxBal":"","maxBalTs":"","decRate":"","ts":"1704883083000","type":"regular_update"}],'
        '"instFamily":"ETH-USD","instType":"OPTION","total":"1369179138.7489"}]}'
    )
    rows, _ = _run("okx", ("https://www.okx.com/api/v5/public/insurance-fund?instType=OPTION&ccy=ETH", body))
    assert rows["insurance_fund"] == [
        {
            "ts_event_ns": 1704883083000 * MS,
            "ts_recv_ns": RECV_NS,
            "venue": "okx",
            "symbol": "ETH-USD",
            "asset": "ETH",
            "balance_nanos": 1343_130_800_000,
        }
    ]


def test_okx_funding_rate_without_ts_takes_the_capture_time() -> None:
    push = (
        '{"arg":{"channel":"funding-rate","instId":"SOS-USDT-SWAP"},"data":[{"fundingTime":"1640851200000",'
        '"instId":"SOS-USDT-SWAP","instType":"SWAP","nextFundingRate":"0.0003"}]}'
    )
    rows, _ = _run("okx", push)
    row = rows["funding_rate"][0]
    assert (
        row["ts_event_ns"] == RECV_NS
        and row["predicted_rate"] == 0.0003
        and row["funding_rate"] != row["funding_rate"]
    )


def test_deribit_price_index_heartbeats_and_spread_marks() -> None:
    index = (
        '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"deribit_price_index.btc_usd",'
        '"data":{"timestamp":1550588002899,"price":3937.89,"index_name":"btc_usd"}}}'
    )
    spread = (
        '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-FS-30SEP22_PERP.raw",'
        '"data":{"timestamp":1662681659203,"instrument_name":"BTC-FS-30SEP22_PERP","mark_price":-10.12,'
        '"open_interest":0}}}'
    )
    rows, dec = _run(
        "deribit",
        index,
        spread,
        '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}',
        '{"jsonrpc":"2.0","id":3,"error":{"message":"Invalid params","code":-32602}}',
    )
    assert [(r["symbol"], r["index_price_nanos"]) for r in rows["index_price"]] == [
        ("btc_usd", 3937_890_000_000)
    ]
    assert rows["mark_price"][0]["mark_price_nanos"] == -10_120_000_000
    assert _reasons(rows) == ["venue_error"]
    assert dec.quiet_frames["rpc answer or heartbeat"] == 1


def test_bitmex_index_symbols_settled_instruments_and_resting_liquidations() -> None:
    partial = (
        '{"table":"instrument","action":"partial","data":[{"symbol":".BXBT","state":"Unlisted",'
        '"lastPrice":42000.5,"timestamp":"2024-01-01T00:00:00.000Z"},{"symbol":"XBTZ19","state":"Settled",'
        '"markPrice":7000,"timestamp":"2024-01-01T00:00:00.000Z"},{"symbol":"XBTUSD","state":"Open",'
        '"fundingRate":0.0001,"indicativeFundingRate":0.0002,"fundingTimestamp":"2024-01-01T04:00:00.000Z",'
        '"markPrice":42001,"indicativeSettlePrice":42000.5,"openInterest":100,'
        '"timestamp":"2024-01-01T00:00:00.000Z"}]}'
    )
    update = (
        '{"table":"instrument","action":"update","data":[{"symbol":"XBTUSD","indicativeFundingRate":0.0003,'
        '"timestamp":"2024-01-01T00:00:05.000Z"}]}'
    )
    liq = '{"table":"liquidation","action":"update","data":[{"orderID":"x","symbol":"XBTUSD","leavesQty":5}]}'
    rows, _ = _run("bitmex", partial, update, liq)
    assert "rejected" not in rows
    t0 = 1_704_067_200 * BN
    assert [(r["symbol"], r["index_price_nanos"]) for r in rows["index_price"]] == [
        (".BXBT", 42000_500_000_000),
        ("XBTUSD", 42000_500_000_000),
    ]  # index symbols: Unlisted is their state
    assert [r["symbol"] for r in rows["mark_price"]] == ["XBTUSD"]  # the settled future writes nothing
    assert [
        (r["ts_event_ns"], r["funding_rate"], r["predicted_rate"], r["funding_time_ns"])
        for r in rows["funding_rate"]
    ] == [(t0, 0.0001, 0.0002, t0 + 4 * 3600 * BN), (t0 + 5 * BN, 0.0001, 0.0003, t0 + 4 * 3600 * BN)]


def test_liquidation_sides_are_the_order_sides() -> None:
    bybit = (
        '{"topic":"liquidation.BTCUSDT","type":"snapshot","ts":1,"data":{"updatedTime":1,"symbol":"BTCUSDT",'
        '"side":"Buy","size":"1","price":"2"}}'
    )  # a long position liquidated: a sell order
    binance = '{"e":"forceOrder","E":1,"o":{"s":"BTCUSDT","S":"BUY","q":"1","p":"2","T":1}}'
    okx = (
        '{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkPx":"2","side":"sell",'
        '"posSide":"long","sz":"1","ts":"1"}],"instId":"BTC-USDT-SWAP"}]}'
    )
    assert _run("bybit", bybit)[0]["liquidation"][0]["side"] == ASK
    assert _run("binance-futures", binance)[0]["liquidation"][0]["side"] == BID
    assert _run("okx", okx)[0]["liquidation"][0]["side"] == ASK


def test_binance_insurance_balance() -> None:
    # the response shape of Binance's API reference (GET /fapi/v1/insuranceBalance); no capture holds one
    body = (
        '{"symbols":["BTCUSDT","BNBUSDT"],"assets":[{"asset":"USDC","marginBalance":"299999998.6497832",'
        '"updateTime":1718173800000},{"asset":"USDT","marginBalance":"793930579.315848",'
        '"updateTime":1718173800000}]}'
    )
    rows, _ = _run(
        "binance-futures",
        ("https://fapi.binance.com/fapi/v1/insuranceBalance?symbol=BTCUSDT", body),
        ("https://fapi.binance.com/fapi/v1/insuranceBalance", f"[{body}]"),
    )
    assert [
        (r["symbol"], r["asset"], r["balance_nanos"], r["ts_event_ns"]) for r in rows["insurance_fund"]
    ] == [
        ("BNBUSDT,BTCUSDT", "USDC", 299999998_649783200, 1718173800000 * MS),
        ("BNBUSDT,BTCUSDT", "USDT", 793930579_315848000, 1718173800000 * MS),
    ] * 2


def test_numbers_beyond_a_double_or_the_decimal_context_are_dead_letters() -> None:
    huge_rate = (
        '{"arg":{"channel":"funding-rate","instId":"X-USDT-SWAP"},"data":[{"instId":"X-USDT-SWAP",'
        '"fundingRate":"1e999","fundingTime":"1"}]}'
    )
    long_mark = (
        '{"arg":{"channel":"mark-price","instId":"X-USDT-SWAP"},"data":[{"instId":"X-USDT-SWAP",'
        f'"markPx":"0.{"1" * 60}","ts":"1"}}]}}'
    )
    rows, _ = _run("okx", huge_rate, long_mark)
    assert _reasons(rows) == ["out_of_range"]
    assert rows["mark_price"][0]["mark_price_nanos"] == 111_111_111  # 60 decimals, rounded to the nano


def test_bybit_v2_scaled_values_beyond_int64_before_scaling() -> None:
    # openInterestE8 of 18317600000 is 183.176: as an integer it would pass int64 once in nanos
    snap = (
        '{"topic":"instrument_info.100ms.BTCPERP","type":"snapshot","data":{"symbol":"BTCPERP",'
        '"markPriceE4":"212094700","openInterestE8":"18317600000","fundingRateE6":"-900",'
        '"predictedFundingRateE6":"-614","nextFundingTime":"2022-06-21T16:00:00Z"},"timestampE6":"1655804220916799"}'
    )
    rows, _ = _run("bybit", snap)
    assert rows["mark_price"][0]["mark_price_nanos"] == 21209_470_000_000
    assert rows["open_interest"][0]["open_interest_nanos"] == 183_176_000_000
    funding = rows["funding_rate"][0]
    assert (funding["funding_rate"], funding["predicted_rate"]) == (-0.0009, -0.000614)
    assert funding["ts_event_ns"] == 1655804220916799000 and funding["funding_time_ns"] == 1655827200 * BN


def test_okx_v3_liquidation_types_and_unknown_tables() -> None:
    liq = (
        '{"table":"swap/liquidation","data":[{"loss":"0","size":"8","price":"3.523",'
        '"created_at":"2020-12-18T00:30:58.374Z","type":"%s","instrument_id":"UNI-USD-SWAP"}]}'
    )
    rows, _ = _run("okx", liq % "3", liq % "4", liq % "9", '{"table":"swap/depth","data":[{"asks":[]}]}')
    assert [r["side"] for r in rows["liquidation"]] == [ASK, BID]
    assert _reasons(rows) == ["bad_side", "unsupported_channel"]


def test_times_beyond_int64_ns_are_dead_letters_not_a_broken_chunk() -> None:
    # found by the damage test: one such row made the whole chunk's columns fail to build
    v2 = (
        '{"topic":"instrument_info.100ms.BTCPERP","type":"snapshot","data":{"symbol":"BTCPERP",'
        '"markPriceE4":"212094700"},"timestampE6":"9999999999999999"}'
    )
    v3 = (
        '{"table":"swap/liquidation","data":[{"size":"8","price":"3.523","created_at":"9999-12-18T00:30:58.374Z",'
        '"type":"3","instrument_id":"UNI-USD-SWAP"}]}'
    )
    month13 = (
        '{"table":"swap/mark_price","data":[{"instrument_id":"X","mark_price":"1",'
        '"timestamp":"2019-13-01T00:00:00Z"}]}'
    )
    rows, _ = _run("bybit", v2, v2.replace('"9999999999999999"', "-99999999999999999999"))
    assert _reasons(rows) == ["out_of_range", "bad_timestamp"]
    rows, _ = _run("okx", v3, month13)
    assert _reasons(rows) == ["bad_timestamp", "bad_timestamp"]
