"""One source per derived row (tapeflow/derivatives/sources.py): an instrument both streamed and
polled gets its basis from the stream alone; the polls stay the fallback for what the stream does
not carry. Live (the market flow with a feed and polls, from the replay server) == batch."""

from __future__ import annotations

import json
from pathlib import Path

import bytewax.operators as op
import pyarrow as pa
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from flows.derivatives import POLL_DERIVED, DerivativesFeedSource, PollSource, feed_and_polls_stream
from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from flows.sinks import TableSink
from tapeflow.batch.repairs import closed_windows, repair_days
from tapeflow.derivatives import decode
from tapeflow.derivatives.live_derived import DerivedConfig, batch_derived
from tapeflow.derivatives.poll_config import binance_usdm
from tapeflow.derivatives.sources import StreamOwner, batch_one_source
from tapeflow.errors import ConfigError
from tapeflow.replay import ReplayServer
from tapeflow.schemas.records import STATUS
from tapeflow.storage import lake
from tapeflow.storage.warehouse import Warehouse
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


def _premium_body(ms: int, mark: int) -> bytes:
    return json.dumps({**_premium("BTCUSDT", str(mark), "59990"), "time": T0 + ms}).encode()


def _gaps(table: pa.Table) -> list[tuple]:
    # the stream holes' gap rows (the connector's own STATUS rows aside)
    return sorted((r["venue"], r["symbol"], r["state"], r["ts_event_ns"], r["ts_recv_ns"], r["until_ns"])
                  for r in table.to_pylist() if r["detail"].startswith("stream silence"))


def test_a_silent_stream_hands_the_instrument_to_the_polls_and_takes_it_back(tmp_path: Path,
                                                                             dsn: str) -> None:
    """BTCUSDT is streamed at T0..T0+4 s and T0+12..14 s (silent 8 s) and polled at T0+2, 8 and 14 s;
    the stream's silence is 3 s. Each basis grid time has one row: the stream's while it carries
    the marks (its rows own 3 s each: T0..T0+6 s and T0+12 s on), the polls' in the hole (T0+7..11 s);
    the hand-over is a stale switch at T0+7 s and a recovered one at T0+12 s; the hole (T0+4..12 s)
    is one closed gap STATUS row in the lake's and the warehouse's status tables, where the gap
    repair finds it; and all of it equals ``batch_one_source`` of the batch functions."""
    tape = tmp_path / "tape.jsonl"
    tape.write_text("\n".join(_frame(1000 * i) for i in (0, 1, 2, 3, 4, 12, 13, 14)) + "\n")
    bodies = {
        "/fapi/v1/premiumIndex": [_premium_body(2000, 60040), _premium_body(8000, 60080),
                                  _premium_body(14000, 60140)],
        "/fapi/v1/openInterest": [json.dumps({"openInterest": "1000", "symbol": "BTCUSDT",
                                              "time": T0 + 2000}).encode()],
        "/fapi/v1/insuranceBalance": [json.dumps({"symbols": ["BTCUSDT"], "assets": [
            {"asset": "USDT", "marginBalance": "100", "updateTime": T0 + 2000}]}).encode()],
    }
    config = DerivedConfig(interval_ns=S, max_staleness_ns=5 * S, window_ns=2 * S)
    silence = 3 * S
    out: list = []
    with ReplayServer("binance", [tape], rest_bodies=bodies).run_in_thread() as srv:
        feed = DerivativesFeedSource("binance", ["BTCUSDT"], endpoint=srv.ws_url, idle_stop_ns=2 * S)
        # the marks a second apart, so the stream's tape (served at once) is in before the hole's answer
        venue = binance_usdm(("BTCUSDT",), srv.rest_url, mark_interval_s=1.0, open_interest_interval_s=5.0,
                             insurance_fund_interval_s=5.0)
        flow = Dataflow("one_source_silence")
        items = feed_and_polls_stream(flow, feed, PollSource([venue], duration_ns=2_500 * MS), config,
                                      silence_ns=silence)
        op.output("out", items, TestingSink(out))
        op.output("tables", items, TableSink(dsn=dsn, lake_root=tmp_path / "lake", tables=(STATUS.name,),
                                             flush_s=0))
        run_main(flow)
        served = dict(srv.rest_served)
    assert served["/fapi/v1/premiumIndex"] >= 2, served  # the hole's answer (T0+8 s) came
    got = gather(out)
    assert "rejected" not in got, got.get("rejected")

    feed_in = merge(list(decode("binance-futures", [tape])))
    polled = {}
    for name in ("mark_price", "index_price", "open_interest", "insurance_fund", "funding_rate"):
        fed = {_seen(r) for r in feed_in[name].to_pylist()} if name in feed_in else set()
        polled[name] = pa.Table.from_pylist([r for r in got[name].to_pylist() if _seen(r) not in fed],
                                            schema=got[name].schema)
    basis = got["derivative_basis"]
    assert len(_keys(basis)) == len(set(_keys(basis)))  # one row per key
    marks = {(r["ts_event_ns"] - T0 * MS) // S: r["mark_price_nanos"] // 10**9 for r in basis.to_pylist()}
    # the stream's mark (60030 + its second) while it owns, the poll's latest in the hole (T0+2 s:
    # 60040, then T0+8 s: 60080)
    polls = {7: 60040, 8: 60080, 9: 60080, 10: 60080, 11: 60080}
    assert marks == {t: polls.get(t, 60030 + min(t, 4) if t < 7 else 60030 + t)
                     for t in range(max(marks) + 1)}
    assert max(marks) >= 12
    switches = got["source_switch"].to_pylist()
    assert [(r["from_source"], r["to_source"], r["reason"], r["ts_event_ns"], r["primary_hole_from_ns"],
             r["primary_hole_to_ns"]) for r in switches] == [
        ("stream", "poll", "stale", (T0 + 7000) * MS, (T0 + 4000) * MS, -1),
        ("poll", "stream", "recovered", (T0 + 12000) * MS, (T0 + 4000) * MS, (T0 + 12000) * MS)]
    assert {r["instrument"] for r in switches} == {"BTCUSDT:mark_price"}

    hole = ("binance-usdm", "BTCUSDT", "gap", (T0 + 4000) * MS, (T0 + 4000) * MS, (T0 + 12000) * MS)
    assert _gaps(got["status"]) == [hole]
    stored = lake.read(STATUS, tmp_path / "lake")
    with Warehouse(dsn) as wh:
        assert _gaps(wh.fetch(STATUS)) == _gaps(stored) == [hole]
    # the gap repair reads it as a closed window of the feed's instrument-day
    windows = [w for w in closed_windows(stored) if w["detail"].startswith("stream silence")]
    assert [repair_days(w, w["venue"], w["symbol"], []) for w in windows] == [
        {("2024-06-12", "binance-usdm", "BTCUSDT")}]

    want = batch_one_source(feed_in, batch_derived(feed_in, config), batch_derived(polled, POLL_DERIVED),
                            polled, silence_ns=silence)
    for name, table in want.items():
        if name == "status":  # beside the connector's own STATUS rows
            assert _gaps(got[name]) == _gaps(table) == [hole]
            assert [r["detail"] for r in got[name].to_pylist() if r["detail"].startswith("stream silence")] \
                == table["detail"].to_pylist()
            continue
        assert sorted(map(repr, got[name].to_pylist())) == sorted(map(repr, table.to_pylist())), name
    assert set(want) == {"derivative_basis", "open_interest_change", "source_switch", "status"}


def _marks(*ts: int, symbol: str = "A") -> dict[str, pa.Table]:
    return {"mark_price": pa.table({"venue": ["okx"] * len(ts), "symbol": [symbol] * len(ts),
                                    "ts_event_ns": list(ts)})}


def _switch_rows(owner: StreamOwner, gaps: list[tuple] | None = None) -> list[tuple]:
    items = dict(owner.switches())
    if gaps is not None and "status" in items:
        gaps += [(r["state"], r["ts_recv_ns"], r["until_ns"]) for r in items["status"].to_pylist()]
    return [(r["reason"], r["ts_event_ns"], r["primary_hole_from_ns"], r["primary_hole_to_ns"])
            for r in items["source_switch"].to_pylist()] if "source_switch" in items else []


def test_owner_hands_a_silent_streams_holes_to_the_polls_whatever_arrives_first() -> None:
    # the stream at 0..4 and 12..14, silence 3: it owns [0, 7) and [12, 17); polls at 2, 8 and 20
    want = [("stale", 7, 4, -1), ("recovered", 12, 4, 12), ("stale", 17, 14, -1)]
    orders = {
        "stream first": [("saw", (0, 1, 2, 3, 4, 12, 13, 14)), ("polled", (2, 8, 20))],
        "as they come": [("saw", (0, 1, 2)), ("polled", (2,)), ("saw", (3, 4)), ("polled", (8,)),
                         ("saw", (13, 12, 14)), ("polled", (20,))],
    }
    for order, steps in orders.items():
        owner = StreamOwner(3)
        got: list[tuple] = []
        gaps: list[tuple] = []
        for what, ts in steps:
            getattr(owner, what)(_marks(*ts))
            got += _switch_rows(owner, gaps)
        assert got == want, order
        # the hole the stream came back from is a closed gap (its last row .. its first after);
        # the one it never left at the end closes at the polls' newest row (20)
        assert gaps == [("gap", 4, 12)], order
        end = dict(owner.end())
        assert [(r["state"], r["ts_event_ns"], r["ts_recv_ns"], r["until_ns"], r["venue"], r["symbol"])
                for r in end["status"].to_pylist()] == [("gap", 14, 14, 20, "okx", "A")], order
        assert "source_switch" not in end and owner.end() == []
        rows = [("derivative_basis", pa.table({"venue": ["okx"] * 8, "symbol": ["A"] * 8,
                                               "ts_event_ns": [-1, 0, 6, 7, 11, 12, 16, 17]}))]
        assert owner.keep(rows)[0][1]["ts_event_ns"].to_pylist() == [-1, 7, 11, 17]
        assert owner.keep_stream(rows)[0][1]["ts_event_ns"].to_pylist() == [0, 6, 12, 16]
    # a poll before the stream ever carried it, or of another instrument, switches nothing
    owner = StreamOwner(3)
    owner.polled(_marks(5))
    owner.saw(_marks(10))
    owner.polled(_marks(30, symbol="B"))
    assert _switch_rows(owner) == [] and owner.end() == []
    # no silence: the stream owns from its first row on, and nothing switches
    owner = StreamOwner(None)
    owner.saw(_marks(0, 100))
    owner.polled(_marks(50))
    assert owner.owned(("okx", "A", "mark_price"), 10**18) and _switch_rows(owner) == []
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="stream silence"):
            StreamOwner(bad)
