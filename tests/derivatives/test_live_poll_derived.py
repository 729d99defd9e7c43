"""The polled rows through the live derived stage (flows.derivatives.polls_stream): insurance-fund
stress (tapeflow/derivatives/live_stress.py) and open-interest change from polled open interest, with
their signals, live == batch on a session the replay server serves over REST."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from flows.derivatives import PollSource, polls_stream
from flows.operators import gather
from tapeflow.derivatives.derived import InsuranceStressConfig, insurance_stress
from tapeflow.derivatives.derived_signals import batch_signals
from tapeflow.derivatives.live_derived import DerivedConfig, batch_derived
from tapeflow.derivatives.live_stress import STRESS, LiveStress, stress_record
from tapeflow.derivatives.poll_config import binance_usdm
from tapeflow.replay import ReplayServer
from tapeflow.schemas.derivatives import INSURANCE_FUND
from tapeflow.schemas.records import INSURANCE_STRESS
from tapeflow.signals.config import DEFAULT_PATH, load

S = 1_000_000_000
MS = 1_000_000
T0 = 1_718_173_800_000  # ms


def _funds(rng: random.Random, n: int) -> pa.Table:
    rows = []
    for i in range(n):
        fund = rng.choice([("binance-usdm", "BTCUSDT", "USDT"), ("binance-usdm", "BTCUSDT", "USDC"),
                           ("okx", "BTC-USDT", "USDT")])
        rows.append({"ts_event_ns": T0 * MS + i // 2 * S, "ts_recv_ns": T0 * MS + i * S,
                     "venue": fund[0], "symbol": fund[1], "asset": fund[2],
                     "balance_nanos": rng.randint(50, 120) * 10**9})
    return INSURANCE_FUND.table({k: [r[k] for r in rows] for k in rows[0]})


def test_live_stress_equals_the_batch_levels_however_cut() -> None:
    seed = random.randrange(2**32)
    print("seed", seed)
    rng = random.Random(seed)
    funds = _funds(rng, 300)
    want = insurance_stress(funds).to_pylist()
    assert {r["level"] for r in want} == {0, 1, 2, 3}  # every level is reached
    for _ in range(3):
        stage, got, start = LiveStress(), [], 0
        while start < funds.num_rows:
            size = rng.randint(1, 40)
            for name, table in stage.update({"insurance_fund": funds.slice(start, size)}):
                assert name == STRESS
                got += table.to_pylist()
            start += size
        key = lambda r: (r["venue"], r["symbol"], r["asset"], r["ts_event_ns"])  # noqa: E731
        assert sorted(got, key=key) == sorted(want, key=key)


def test_a_fund_older_than_its_latest_is_too_late() -> None:
    def fund(ts: int, balance: int, asset: str = "USDT") -> pa.Table:
        return INSURANCE_FUND.table({"ts_event_ns": [ts], "ts_recv_ns": [ts], "venue": ["okx"],
                                     "symbol": ["BTC-USDT"], "asset": [asset], "balance_nanos": [balance]})

    stage = LiveStress(InsuranceStressConfig())
    first = stage.update({"insurance_fund": fund(10, 100)})
    assert [t.column("level").to_pylist() for _, t in first] == [[0]]
    out = dict(stage.update({"insurance_fund": pa.concat_tables([fund(9, 50), fund(9, 50, "USDC")])}))
    assert out["rejected"].column("reason").to_pylist() == ["too_late"]  # USDT's latest is 10
    assert out[STRESS].column("asset").to_pylist() == ["USDC"]  # another fund: its own clock
    # the same time again counts (a poll answered twice), against the carried peak of 100
    out = dict(stage.update({"insurance_fund": fund(10, 80)}))
    assert out[STRESS].column("drawdown").to_pylist() == [0.2] and "rejected" not in out
    assert stage.late_rows == 1


def _open_interest(i: int, oi: str) -> bytes:
    return json.dumps({"openInterest": oi, "symbol": "BTCUSDT", "time": T0 + 700 + 1000 * i}).encode()


def _insurance(i: int, balance: str) -> bytes:
    # the shape of Binance's API reference (GET /fapi/v1/insuranceBalance), as in test_decoders
    return json.dumps({"symbols": ["BTCUSDT"], "assets": [
        {"asset": "USDT", "marginBalance": balance, "updateTime": T0 + 900 + 1000 * i}]}).encode()


def test_polled_session_gives_stress_and_oi_surge_signals_live_equal_to_batch(tmp_path: Path) -> None:
    """A session of Binance REST answers served by the replay server (each served once, in order,
    the last again and again): open interest 1,000 -> 1,200 one second apart (+20 % over the 2 s
    window: one ``oi_surge`` at the shipped 5 %, computed once the polls' clock is past it, before
    the end), a fund 100 -> 95 -> 85 -> 70 (drawdowns 5, 15, 30 %: levels 1, 2, 3, so
    ``insurance_stress`` at 2 and at 3). The mark is not polled (see below)."""
    bodies = {
        "/fapi/v1/openInterest": [_open_interest(i, oi) for i, oi in enumerate(
            ["1000", "1000", "1000", "1200", "1200", "1200", "1200", "1200"])],
        "/fapi/v1/insuranceBalance": [_insurance(i, b) for i, b in enumerate(["100", "95", "85", "70"])],
    }
    tape = tmp_path / "tape.txt"  # the websocket side has nothing to do here: one mark frame
    frame = {"stream": "btcusdt@markPrice@1s", "data": {"e": "markPriceUpdate", "E": T0, "s": "BTCUSDT",
                                                        "p": "60000", "i": "60000", "r": "", "T": 0}}
    tape.write_text(f"{T0 * MS} {json.dumps(frame)}\n")
    config = DerivedConfig(interval_ns=S, max_staleness_ns=5 * S, window_ns=2 * S, lateness_ns=2 * S)
    thresholds = load(DEFAULT_PATH)
    out: list = []
    with ReplayServer("binance", [tape], rest_bodies=bodies).run_in_thread() as srv:
        venue = binance_usdm(("BTCUSDT",), srv.rest_url, mark_interval_s=30, open_interest_interval_s=0.05,
                             insurance_fund_interval_s=0.05)
        # the mark is not polled: whenever its one answer came relative to the open interest's, its
        # fixed time was too early or too late for the stage (half the runs failed): the mark is
        # no input of the stress and OI-change signals under test
        venue = dataclasses.replace(venue, endpoints=[
            e for e in venue.endpoints if e.path != "/fapi/v1/premiumIndex"])
        flow = Dataflow("polled_derived")
        op.output("out", polls_stream(flow, PollSource([venue], duration_ns=2 * S), config,
                                      thresholds=thresholds), TestingSink(out))
        run_main(flow)
        served = dict(srv.rest_served)
    assert all(served[path] >= len(b) for path, b in bodies.items()), served  # every body went out
    got = gather(out)
    assert "rejected" not in got, got.get("rejected")  # no answer came too late for the stage
    polled = {name: got[name] for name in ("open_interest", "insurance_fund")}
    want = batch_derived(polled, config)
    assert set(want) == {"open_interest_change"}  # the one mark is after the last grid time: no basis
    for name in want:
        assert sorted(map(repr, got[name].to_pylist())) == sorted(map(repr, want[name].to_pylist())), name
    signals = got["signal"].to_pylist()
    batch = batch_signals(polled, thresholds, config).to_pylist()
    assert sorted(map(repr, signals)) == sorted(map(repr, batch))
    kinds = sorted((r["kind"], r["side"], r["ts_event_ns"]) for r in signals)
    assert kinds == [("insurance_stress", 0, (T0 + 2900) * MS), ("insurance_stress", 0, (T0 + 3900) * MS),
                     ("oi_surge", 1, (T0 + 4000) * MS)]
    assert [json.loads(r["evidence"])["level"] for r in signals if r["kind"] == "insurance_stress"] == [2, 3]
    # the stress rows are stored too, as the insurance_stress record: the batch definition's rows
    stored = stress_record(insurance_stress(polled["insurance_fund"]))
    # (one per polled balance: the last body is answered again and again)
    assert stored.num_rows == polled["insurance_fund"].num_rows >= 4
    assert stored.column("level").to_pylist()[:4] == [0, 1, 2, 3]
    assert got[STRESS].schema == INSURANCE_STRESS.arrow_schema()
    assert sorted(map(repr, got[STRESS].to_pylist())) == sorted(map(repr, stored.to_pylist()))
