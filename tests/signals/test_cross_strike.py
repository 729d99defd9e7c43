"""The cross-strike detector on hand-built option trades: a coordinated flow alerts once with its
strikes as evidence; a market maker's round trips, flow both ways across strikes, one large print
and a perpetual's trades do not; bad inputs get clear errors; ``tapeflow signals detect --format
options`` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kernels.codes import ASK, BID
from quality import run_suite
from tapeflow.cli import main
from tapeflow.errors import InputError
from tapeflow.options.chain import price_tickers
from tapeflow.schemas.records import TRADE
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.cross_strike import detect, option_flows, read_options_input
from tapeflow.simulator.option_chain import option_symbol

S = 1_000_000_000
T0 = 1_704_067_200 * S
EXPIRY = T0 + 30 * 86_400 * S + 8 * 3600 * S
STRIKES = (54_000, 56_000, 58_000, 60_000, 62_000, 64_000, 66_000)
NAMES = [option_symbol("BTC", EXPIRY, k, k >= 60_000) for k in STRIKES]
PARAMS = dict(load(DEFAULT_PATH).for_instrument("cross_strike", "BTC", None))


def _tickers() -> pa.Table:
    n = len(STRIKES)
    from kernels.options_reference import black76_price

    strike = np.array(STRIKES, float)
    is_call = strike >= 60_000
    t = (EXPIRY - T0) / (365 * 86_400 * S)
    coin = black76_price(60_000.0, strike, t, 0.0, 0.5, is_call) / 60_000.0
    return price_tickers({
        "ts_event_ns": [T0] * n, "ts_recv_ns": [T0] * n, "symbol": NAMES, "underlying": ["BTC"] * n,
        "expiry_ns": [EXPIRY] * n, "strike_price_nanos": (strike * S).astype(np.int64), "is_call": is_call,
        "underlying_price_nanos": [60_000 * S] * n, "mark_price_nanos": np.round(coin * S).astype(np.int64),
        "mark_iv": [0.5] * n, "venue_delta": [np.nan] * n}, "sim")


def _trades(rows: list[tuple[float, str, int, float]]) -> pa.Table:
    """Background: 60 one-contract trades, both ways, over the first 10 minutes; then ``rows``
    (seconds after T0, symbol, +1 buy / -1 sell, contracts)."""
    rng = np.random.default_rng(3)
    back = [(float(s), NAMES[int(i)], int(d), 1.0) for s, i, d in
            zip(np.sort(rng.uniform(1, 600, 60)), rng.integers(0, len(NAMES), 60), rng.choice([1, -1], 60),
                strict=True)]
    rows = sorted(back + rows)
    n = len(rows)
    return TRADE.table({
        "ts_event_ns": [T0 + int(r[0] * S) for r in rows], "ts_recv_ns": [T0 + int(r[0] * S) for r in rows],
        "symbol": [r[1] for r in rows], "sequence": np.arange(n), "trade_id": [str(i) for i in range(n)],
        "price_nanos": [10_000_000] * n, "size_nanos": [int(r[3] * S) for r in rows],
        "aggressor_side": [BID if r[2] > 0 else ASK for r in rows], "flags": [0] * n,
    }, constants={"venue": "sim"})


def _coordinated(t0: float, legs: list[int], side: int) -> list[tuple[float, str, int, float]]:
    return [(t0 + 3 * j + 0.5 * c, NAMES[i], side, 4.0) for j, i in enumerate(legs) for c in range(3)]


def test_a_coordinated_flow_alerts_once_with_its_strikes() -> None:
    alerts = detect(_trades(_coordinated(700, [1, 3, 5], -1)), _tickers(), PARAMS)
    assert alerts.num_rows == 1
    row = alerts.to_pylist()[0]
    assert (row["kind"], row["side"], row["symbol"]) == ("cross_strike", -1, "BTC")
    assert row["detector"] == "cross_strike/1"
    assert T0 + 700 * S <= row["start_ns"] <= row["end_ns"] == row["ts_event_ns"] <= T0 + 712 * S
    evidence = json.loads(row["evidence"])
    assert set(evidence["strikes"]) == {NAMES[1], NAMES[3], NAMES[5]} and evidence["weighting"] == "vega"
    assert evidence["expiries"] == ["31JAN24"] and evidence["n_strikes"] == 3
    assert 0.0 < row["confidence"] < 1.0 and row["score"] >= 1.0
    suite = run_suite("signals", alerts)
    assert suite.passed, suite.failed


def test_two_strikes_are_not_enough() -> None:
    assert detect(_trades(_coordinated(700, [1, 3], 1)), _tickers(), PARAMS).num_rows == 0


def test_market_maker_round_trips_and_two_way_flow_do_not_alert() -> None:
    # the same volume bought and sold back 5 s later in each strike (a maker's short holding)
    round_trips = [(700 + 2 * j + d * 5, NAMES[i], s * (1 - 2 * d), 12.0)
                   for j, (i, s) in enumerate(zip([0, 2, 4, 6], [1, -1, 1, -1], strict=True)) for d in (0, 1)]
    # buying three strikes while selling three others as hard
    two_way = _coordinated(900, [0, 2, 4], 1) + _coordinated(901, [1, 3, 5], -1)
    # one large print in one strike
    block = [(1100.0, NAMES[3], 1, 60.0)]
    assert detect(_trades(round_trips + two_way + block), _tickers(), PARAMS).num_rows == 0


def test_an_option_traded_both_ways_takes_no_part() -> None:
    # each strike bought three times and sold once in between: net 13 of 23 contracts traded
    two_way = [(700 + 4 * j + c, NAMES[i], -1 if c == 1 else 1, 5.0 if c == 1 else 6.0)
               for j, i in enumerate([0, 2, 4]) for c in range(4)]
    assert detect(_trades(two_way), _tickers(), PARAMS).num_rows == 0
    # the same flow passes once one-sidedness is relaxed below 13/23: the rule is what refused it
    assert detect(_trades(two_way), _tickers(), dict(PARAMS, one_sided=0.5)).num_rows == 1


def test_a_holding_longer_than_the_flow_is_a_flow() -> None:
    # bought in two children per strike, sold back 20 s later: at the third strike the market
    # can only see a one-way flow (the detector is causal), so it alerts, once
    legs = [(700 + j + d * 0.2, NAMES[i], 1, 6.0) for j, i in enumerate([0, 2, 4]) for d in (0, 1)]
    back = [(720 + j, NAMES[i], -1, 12.0) for j, i in enumerate([0, 2, 4])]
    alerts = detect(_trades(legs + back), _tickers(), PARAMS)
    assert alerts.num_rows == 1 and alerts.column("ts_event_ns")[0].as_py() == T0 + int(702.2 * S)


def test_the_perpetual_is_left_out_and_a_trade_before_any_ticker_is_counted() -> None:
    trades = _trades(_coordinated(700, [1, 3, 5], 1) + [(750.0, "BTC-PERPETUAL", 1, 500.0)])
    early = TRADE.table({c: trades.column(c).slice(0, 1) for c in TRADE.column_names})
    early = early.set_column(0, trades.schema.field("ts_event_ns"), pa.array([T0 - S], pa.int64()))
    flows = option_flows(pa.concat_tables([early, trades]), _tickers())
    (f,) = flows.values()
    assert f["unpriced"] == 1 and "BTC-PERPETUAL" not in set(f["symbol"].tolist())
    assert detect(trades, _tickers(), PARAMS).num_rows == 1


def test_bad_options_input_gets_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_options_input([tmp_path / "missing"])
    pq.write_table(_trades([]), tmp_path / "trade.parquet")
    with pytest.raises(InputError, match="needs trade and option_ticker"):
        read_options_input([tmp_path])
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="cannot read"):
        read_options_input([tmp_path / "bad.parquet"])


def test_signals_detect_with_the_options_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(_trades(_coordinated(700, [1, 3, 5], 1)), src / "trade.parquet")
    pq.write_table(_tickers(), src / "option_ticker.parquet")
    assert main(["signals", "detect", "--format", "options", str(src), "--out", str(tmp_path / "sig")]) == 0
    assert "cross_strike 1" in capsys.readouterr().out
    table = pq.read_table(tmp_path / "sig" / "signals.parquet")
    assert table.column("kind").to_pylist() == ["cross_strike"]
