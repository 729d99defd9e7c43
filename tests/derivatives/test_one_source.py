"""One source per derived row (tapeflow/derivatives/sources.py): an instrument both streamed and
polled gets its basis from the stream alone; the polls stay the fallback for what the stream does
not carry. Live (the market flow with a feed and polls, from the replay server) == batch."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from bytewax.testing import TestingSink, run_main

from flows.derivatives import POLL_DERIVED, DerivativesFeedSource, PollSource
from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from tapeflow.derivatives import decode
from tapeflow.derivatives.live_derived import DerivedConfig, batch_derived
from tapeflow.derivatives.poll_config import binance_usdm
from tapeflow.derivatives.sources import StreamOwner, batch_one_source
from tapeflow.replay import ReplayServer
from tapeflow.venues.base import merge

S = 1_000_000_000
MS = 1_000_000
T0 = 1_718_173_800_000  # ms, a whole second


def _frame(ms: int) -> str:
    data = {"e": "markPriceUpdate", "E": T0 + ms, "s": "BTCUSDT", "p": f"{60030 + ms // 1000}",
            "i": "60000", "r": "", "T": 0}
    frame = json.dumps({"stream": "btcusdt@markPrice@1s", "data": data}, separators=(",", ":"))
    return f"{(T0 + ms) * MS} {frame}"  # compact, as the venue sends it (the replay reads no other)


def _premium(symbol: str, mark: str, index: str) -> dict:
    return {"symbol": symbol, "markPrice": mark, "indexPrice": index, "estimatedSettlePrice": index,
            "lastFundingRate": "0.0001", "interestRate": "0.0001", "nextFundingTime": T0 + 3_600_000,
            "time": T0 + 2000}


def _seen(row: dict) -> tuple:  # a row less its receive time (the replay's live clock)
    return tuple(v for k, v in row.items() if k != "ts_recv_ns")


def _keys(table: pa.Table) -> list[tuple]:
    return list(zip(*(table.column(c).to_pylist() for c in ("venue", "symbol", "interval", "ts_event_ns")),
                    strict=True))


def test_streamed_and_polled_instrument_has_one_basis_row_per_key(tmp_path: Path) -> None:
    """BTCUSDT is streamed (marks T0..T0+4 s) and polled (premiumIndex at T0+2 s, whose answer also
    holds ETHUSDT, streamed by no one): the polls' BTCUSDT basis at T0+2 s would double the feed's;
    it gives way, ETHUSDT's stays (the fallback), and so does the polled open interest's change."""
    tape = tmp_path / "tape.jsonl"
    tape.write_text("\n".join(_frame(1000 * i) for i in range(5)) + "\n")
    bodies = {
        "/fapi/v1/premiumIndex": [json.dumps([_premium("BTCUSDT", "60040", "59990"),
                                              _premium("ETHUSDT", "3003", "3000")]).encode()],
        "/fapi/v1/openInterest": [json.dumps({"openInterest": "1000", "symbol": "BTCUSDT",
                                              "time": T0 + 2000}).encode()],
        "/fapi/v1/insuranceBalance": [json.dumps({"symbols": ["BTCUSDT"], "assets": [
            {"asset": "USDT", "marginBalance": "100", "updateTime": T0 + 2000}]}).encode()],
    }
    config = DerivedConfig(interval_ns=S, max_staleness_ns=5 * S, window_ns=2 * S)
    out: list = []
    with ReplayServer("binance", [tape], rest_bodies=bodies).run_in_thread() as srv:
        feed = DerivativesFeedSource("binance", ["BTCUSDT"], endpoint=srv.ws_url, idle_stop_ns=2 * S)
        venue = binance_usdm(("BTCUSDT",), srv.rest_url, mark_interval_s=0.2, open_interest_interval_s=0.2,
                             insurance_fund_interval_s=0.2)
        polls = PollSource([venue], duration_ns=S)
        run_main(build_market_flow(None, MarketSinks(tables=TestingSink(out)), polls=polls,
                                   derivatives=feed, derived=config))
        served = dict(srv.rest_served)
    assert all(served[path] >= 1 for path in bodies), served
    got = gather(out)
    assert "rejected" not in got, got.get("rejected")

    feed_in = merge(list(decode("binance-futures", [tape])))
    polled = {}
    for name in ("mark_price", "index_price", "open_interest"):  # what came from the polls
        fed = {_seen(r) for r in feed_in[name].to_pylist()} if name in feed_in else set()
        polled[name] = pa.Table.from_pylist([r for r in got[name].to_pylist() if _seen(r) not in fed],
                                            schema=got[name].schema)
    assert set(polled["mark_price"].column("symbol").to_pylist()) == {"BTCUSDT", "ETHUSDT"}
    feed_derived = batch_derived(feed_in, config)
    poll_derived = batch_derived(polled, POLL_DERIVED)
    # without the rule, BTCUSDT at T0+2 s would be written twice, once per source
    both = set(_keys(feed_derived["derivative_basis"])) & set(_keys(poll_derived["derivative_basis"]))
    assert both == {("binance-usdm", "BTCUSDT", "1s", (T0 + 2000) * MS)}

    basis = got["derivative_basis"]
    assert len(_keys(basis)) == len(set(_keys(basis)))  # one row per key
    by_symbol = {r["symbol"]: r for r in basis.to_pylist() if r["ts_event_ns"] == (T0 + 2000) * MS}
    assert by_symbol["BTCUSDT"]["mark_price_nanos"] == 60032 * 10**9  # the stream's mark, not the poll's
    assert by_symbol["ETHUSDT"]["mark_price_nanos"] == 3003 * 10**9  # polled only: the poll's
    want = batch_one_source(feed_in, feed_derived, poll_derived)
    assert set(want) == {"derivative_basis", "open_interest_change"}  # the polled OI: the fallback
    for name, table in want.items():
        assert sorted(map(repr, got[name].to_pylist())) == sorted(map(repr, table.to_pylist())), name


def test_owner_drops_polled_rows_from_the_streams_first_time_on() -> None:
    owner = StreamOwner()
    marks = pa.table({"venue": ["okx", "okx"], "symbol": ["A", "A"], "ts_event_ns": [50, 30]})
    owner.saw({"mark_price": marks, "funding_rate": pa.table({"venue": ["okx"], "symbol": ["B"],
                                                              "ts_event_ns": [1]})})
    rows = pa.table({"venue": ["okx"] * 4, "symbol": ["A", "A", "B", "A"], "ts_event_ns": [29, 30, 40, 40]})
    kept = owner.keep([("derivative_basis", rows), ("open_interest_change", rows), ("rejected", rows)])
    assert [(n, t.column("ts_event_ns").to_pylist()) for n, t in kept] == [
        ("derivative_basis", [29, 40]), ("open_interest_change", [29, 30, 40, 40]),
        ("rejected", [29, 30, 40, 40])]
