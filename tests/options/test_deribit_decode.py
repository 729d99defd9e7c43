"""Deribit option names and tickers: parsed fields, and every damaged frame a dead letter with its reason."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from tapeflow.errors import BadInput
from tapeflow.options.deribit import DeribitTickerDecoder
from tapeflow.options.instruments import parse_option_name
from tapeflow.options.records import OPTION_TICKER
from tapeflow.wire.capture import RECV, CaptureLine, read_capture
from tapeflow.wire.rejects import Rejects

TICKER = {"underlying_price": 2115.89, "underlying_index": "ETH-9APR21", "timestamp": 1617644856302,
          "state": "open", "mark_price": 0.084155, "mark_iv": 78.74, "interest_rate": 0.0,
          "instrument_name": "ETH-9APR21-1950-C", "index_price": 2103.4,
          "greeks": {"vega": 0.46511, "theta": -5.09811, "rho": 0.16173, "gamma": 0.00134, "delta": 0.8609}}


def _frame(data: dict | None = None, channel: str = "ticker.ETH-9APR21-1950-C.raw") -> str:
    return json.dumps({"jsonrpc": "2.0", "method": "subscription",
                       "params": {"channel": channel, "data": TICKER if data is None else data}})


def _ns(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


@pytest.mark.parametrize(("name", "underlying", "expiry", "strike", "call"), [
    ("BTC-30APR21-60000-C", "BTC", (2021, 4, 30, 8), 60_000, True),
    ("ETH-6APR21-2400-P", "ETH", (2021, 4, 6, 8), 2_400, False),
    ("BTC-25MAR22-400000-C", "BTC", (2022, 3, 25, 8), 400_000, True),
    ("XRP_USDC-30MAY25-2d2-C", "XRP_USDC", (2025, 5, 30, 8), 2.2, True),  # linear: d is the decimal point
])
def test_option_names_parse(name: str, underlying: str, expiry: tuple[int, ...], strike: float,
                            call: bool) -> None:
    opt = parse_option_name(name)
    assert (opt.underlying, opt.expiry_ns, opt.strike_nanos, opt.is_call) == (
        underlying, _ns(*expiry), round(strike * 1e9), call)


@pytest.mark.parametrize(("name", "reason"), [
    ("BTC-31FEB21-60000-C", "bad_field"),  # no such date
    ("BTC-30ABC21-60000-C", "bad_field"),  # no such month
    ("BTC-30APR21-60000-X", "bad_field"),  # neither call nor put
    ("BTC-30APR21-0-C", "bad_field"),  # zero strike
    ("btc-30apr21-60000-c", "bad_field"),
    ("", "bad_field"),
    ("BTC-PERPETUAL", "unsupported_channel"),  # instruments, but no options: ignored by rule
    ("BTC-25JUN21", "unsupported_channel"),
    ("BTC-CS-19MAY26-70000_75000", "unsupported_channel"),
])
def test_names_that_are_no_option_say_why(name: str, reason: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_option_name(name)
    assert info.value.reason == reason
    assert repr(name) in info.value.detail


def _decode(frames: list[str]) -> tuple[DeribitTickerDecoder, dict]:
    d = DeribitTickerDecoder()
    for i, f in enumerate(frames):
        d.feed(CaptureLine(1_617_644_856_902_155_000 + i, RECV, "", f.encode(), f"test:{i + 1}"))
    return d, d.flush(0, "test").tables


def test_a_ticker_becomes_one_row_with_our_iv_beside_the_venues() -> None:
    d, tables = _decode([_frame()])
    row = tables["option_ticker"].to_pylist()[0]
    assert "rejected" not in tables
    assert row["symbol"] == "ETH-9APR21-1950-C" and row["underlying"] == "ETH" and row["option_type"] == "C"
    assert row["ts_event_ns"] == 1_617_644_856_302_000_000 and row["ts_recv_ns"] == 1_617_644_856_902_155_000
    assert row["expiry_ns"] == _ns(2021, 4, 9, 8)
    assert row["strike_price_nanos"] == 1_950 * 10**9
    assert row["underlying_price_nanos"] == 2_115_890_000_000 and row["mark_price_nanos"] == 84_155_000
    assert row["t_years"] == pytest.approx((_ns(2021, 4, 9, 8) - 1_617_644_856_302_000_000) / (365 * 86400e9))
    assert row["mark_iv"] == pytest.approx(0.7874) and row["venue_delta"] == 0.8609
    assert row["iv_reason"] == "ok"
    assert abs(row["iv"] - row["mark_iv"]) < 0.005  # this ticker's mark is 0.13 vol points off its mark_iv
    assert abs(row["delta_at_mark_iv"] - row["venue_delta"]) < 1e-4
    assert tables["option_ticker"].schema == OPTION_TICKER.arrow_schema()


def test_older_and_newer_shapes_both_parse() -> None:
    old = {k: v for k, v in TICKER.items() if k not in ("greeks", "interest_rate", "index_price")}
    old.update(mark_price=0, state="closed", estimated_delivery_price="expired", delivery_price=2100.5)
    new = dict(TICKER, mark_price=0.0841, estimated_delivery_price=2103.4)
    _, tables = _decode([_frame(old), _frame(new)])
    rows = tables["option_ticker"].to_pylist()
    assert [r["iv_reason"] for r in rows] == ["non_positive_price", "ok"]
    assert np.isnan(rows[0]["venue_delta"]) and rows[1]["venue_delta"] == 0.8609


@pytest.mark.parametrize(("frame", "reason"), [
    (_frame()[:-20], "truncated"),
    ("not json", "bad_json"),
    ("[1, 2]", "bad_shape"),
    (_frame(dict(TICKER, mark_price="abc")), "bad_number"),
    (_frame(dict(TICKER, mark_price=-0.1)), "negative"),
    (_frame(dict(TICKER, mark_iv=None)), "missing_field"),
    (_frame({k: v for k, v in TICKER.items() if k != "underlying_price"}), "missing_field"),
    (_frame(dict(TICKER, mark_iv="NaN")), "bad_number"),
    (_frame(dict(TICKER, mark_iv=-5)), "negative"),
    (_frame(dict(TICKER, greeks={"delta": "x"})), "bad_number"),
    (_frame(dict(TICKER, greeks=[1])), "bad_shape"),
    (_frame(dict(TICKER, timestamp="soon")), "bad_number"),
    (_frame(dict(TICKER, timestamp=10**17)), "bad_timestamp"),
    (_frame(dict(TICKER, instrument_name="ETH-9APR21-1950")), "bad_field"),
    (_frame(dict(TICKER, instrument_name="BTC-PERPETUAL")), "unsupported_channel"),
    (_frame(channel="book.ETH-9APR21-1950-C.raw"), "unsupported_channel"),
    (json.dumps({"jsonrpc": "2.0", "id": 3, "error": {"code": 11050, "message": "bad_request"}}),
     "venue_error"),
    (json.dumps({"jsonrpc": "2.0", "method": "public/hello"}), "unknown_message"),
    (json.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {"channel": "ticker.X.raw"}}),
     "missing_field"),
])
def test_every_damaged_frame_is_a_dead_letter_with_its_reason(frame: str, reason: str) -> None:
    d, tables = _decode([frame, _frame()])  # the good frame after it still decodes
    assert tables["option_ticker"].num_rows == 1
    dead = tables["rejected"].to_pylist()
    assert [r["reason"] for r in dead] == [reason]
    assert dead[0]["raw"] == frame.encode() and dead[0]["location"] == "test:1"


def test_answers_and_heartbeats_are_quiet_frames() -> None:
    heartbeat = {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "heartbeat"}}
    answer = {"jsonrpc": "2.0", "id": 0, "result": ["ticker.X.raw"]}
    d, tables = _decode([json.dumps(answer), json.dumps(heartbeat)])
    assert tables == {}
    assert d.quiet_frames == {"response": 1, "heartbeat": 1}


def test_a_cryptofeed_configuration_header_is_skipped(tmp_path: Path) -> None:
    """Newer cryptofeed logs open with ``configuration: {...}`` (the 2021-04-05 Deribit capture does):
    the file's header, not a frame, and no reason to call the file no capture."""
    path = tmp_path / "DERIBIT.ws.1.0"
    path.write_text('configuration: {"ticker": ["ETH-USD-9APR21-1950-C"]}\n'
                    "wss://www.deribit.com/ws/api/v2 <-> 1617644856.505972\n"
                    f"1617644856.902155: {_frame()}\n")
    rejects = Rejects("deribit")
    lines = list(read_capture(path, rejects))
    assert [ln.kind for ln in lines] == ["open", "recv"] and len(rejects) == 0
    chunks = list(DeribitTickerDecoder().run([path]))
    assert sum(c.counts().get("option_ticker", 0) for c in chunks) == 1
    assert not any("rejected" in c.tables for c in chunks)
