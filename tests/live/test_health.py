"""Latency circuit breaker and clock-skew detector: exact transitions on built batches, one real capture."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeflow.errors import ConfigError
from tapeflow.live.health import FeedHealth, LatencyBreaker, SkewDetector, median_int
from tapeflow.schemas.records import BAR, F_LAST, F_MAYBE_BAD_BOOK, TRADE
from tapeflow.venues.binance.parse import decode
from tests.conftest import need

MS = 1_000_000
T0 = 1_723_161_255_000_000_000
FRAMES = 5000  # trade frames of the real capture fed one by one to the breaker (keeps the test fast)


def trades(latencies_ms: list[float], *, t0: int = T0, symbol: str = "BTCUSDT", venue: str = "v",
           step_ms: int = 10) -> pa.Table:
    recv = [t0 + i * step_ms * MS for i in range(len(latencies_ms))]
    return TRADE.table({
        "ts_event_ns": [r - int(lat * MS) for r, lat in zip(recv, latencies_ms, strict=True)],
        "ts_recv_ns": recv, "sequence": list(range(len(recv))),
        "trade_id": [str(i) for i in range(len(recv))],
        "price_nanos": [1] * len(recv), "size_nanos": [1] * len(recv), "aggressor_side": [66] * len(recv),
        "flags": [F_LAST] * len(recv),
    }, constants={"venue": venue, "symbol": symbol})


def test_breaker_trips_once_and_recovers_after_the_streak() -> None:
    breaker = LatencyBreaker(threshold_ns=100 * MS, recover_ns=50 * MS, recover_batches=2)
    # median latency per batch: 10, 150 (trip), 80 (not good: > recover), 40, 200 (streak reset), 30, 20
    medians = [10, 150, 80, 40, 200, 30, 20, 10]
    states = []
    for i, m in enumerate(medians):
        out = breaker.observe({"trade": trades([m, m, m], t0=T0 + i * 10**9)})
        states.append(out["state"].to_pylist())
    assert states == [[], ["degraded"], [], [], [], [], ["recovered"], []]
    assert breaker.trips == 1
    assert not breaker.degraded("v", "BTCUSDT")


def test_breaker_median_ignores_one_late_message_and_rows_without_venue_time() -> None:
    breaker = LatencyBreaker(threshold_ns=100 * MS)
    batch = trades([5, 5, 900])  # one stale message: median 5 ms
    untimed = trades([5] * 4).set_column(0, "ts_event_ns", pa.array([-1] * 4, pa.int64()))
    assert breaker.observe({"trade": batch}).num_rows == 0
    assert breaker.observe({"trade": untimed}).num_rows == 0  # no venue time: nothing to judge
    tripped = breaker.observe({"trade": trades([500, 500, 5], t0=T0 + 10**9)})
    assert tripped["state"].to_pylist() == ["degraded"]


def test_breaker_processing_lag_and_per_instrument_state() -> None:
    breaker = LatencyBreaker(threshold_ns=100 * MS, recover_batches=1)
    a, b = trades([1, 1], symbol="A"), trades([1, 1], symbol="B", t0=T0 + 5 * 10**9)
    # the flow reaches both 50 ms after B's newest row was captured; A's newest is 5.05 s old: only A trips
    now = T0 + 5 * 10**9 + 60 * MS
    out = breaker.observe({"trade": pa.concat_tables([a, b])}, now_ns=now)
    assert list(zip(out["symbol"].to_pylist(), out["state"].to_pylist(), strict=True)) == [("A", "degraded")]
    assert "processing lag 5050.0 ms" in out["detail"][0].as_py()
    assert breaker.degraded("v", "A") and not breaker.degraded("v", "B")
    back = breaker.observe({"trade": trades([1], symbol="A", t0=T0 + 7 * 10**9)}, now_ns=T0 + 7 * 10**9 + MS)
    assert back["state"].to_pylist() == ["recovered"]
    assert back["until_ns"][0].as_py() == T0 + 7 * 10**9 + 1


def test_flag_marks_rows_inside_the_window_only() -> None:
    breaker = LatencyBreaker(threshold_ns=100 * MS, recover_batches=1)
    breaker.observe({"trade": trades([1], t0=T0)})
    breaker.observe({"trade": trades([500], t0=T0 + 10 * 10**9)})          # window opens at T0+10s
    breaker.observe({"trade": trades([1], t0=T0 + 20 * 10**9)})            # closes at T0+20s+1
    recv = [T0 + 5 * 10**9, T0 + 10 * 10**9, T0 + 15 * 10**9, T0 + 20 * 10**9, T0 + 21 * 10**9]
    bars = BAR.table({c: [0] * 5 for c in BAR.column_names if c not in ("venue", "symbol", "interval",
                                                                        "ts_recv_ns")}
                     | {"ts_recv_ns": recv, "interval": ["1s"] * 5},
                     constants={"venue": "v", "symbol": "BTCUSDT"})
    other = BAR.table({c: bars[c] for c in BAR.column_names if c != "symbol"}, constants={"symbol": "ETH"})
    assert (BAR.table({c: bars[c] for c in BAR.column_names}).column_names == BAR.column_names)
    flagged = breaker.flag(bars)
    assert [f & F_MAYBE_BAD_BOOK for f in flagged["flags"].to_pylist()] == [0, 4, 4, 4, 0]
    assert breaker.flag(other)["flags"].to_pylist() == [0] * 5


def test_breaker_state_survives_pickle_and_rejects_bad_settings() -> None:
    breaker = LatencyBreaker(threshold_ns=100 * MS, recover_batches=2)
    breaker.observe({"trade": trades([500])})
    clone = pickle.loads(pickle.dumps(breaker))
    for _ in range(2):
        out = clone.observe({"trade": trades([1], t0=T0 + 10**9)})
    assert out["state"].to_pylist() == ["recovered"]
    with pytest.raises(ConfigError, match="recover_ns"):
        LatencyBreaker(threshold_ns=10, recover_ns=20)


def test_skew_negative_latency_and_drift_then_clear() -> None:
    skew = SkewDetector(negative_tolerance_ns=5 * MS, drift_ns=200 * MS, warmup_batches=3, recover_batches=2)
    medians = [20, 20, 20, 20, 400, 20, 20, -50, -50, 20, 20]
    rows = []
    for i, m in enumerate(medians):
        out = skew.observe({"trade": trades([m] * 3, t0=T0 + i * 10**9)})
        rows.append([(s, u >= 0) for s, u in zip(out["state"].to_pylist(), out["until_ns"].to_pylist(),
                                                  strict=True)])
    # drift opens at batch 4, two clean batches close it; negative latency opens at 7, closes at 10
    assert rows == [[], [], [], [], [("skew", False)], [], [("skew", True)], [("skew", False)], [], [],
                    [("skew", True)]]
    assert skew.events == 2


def test_feed_health_judges_latency_net_of_the_clock_offset() -> None:
    """A venue clock 1 s ahead of ours: one skew row, and only the 300 ms congestion trips the breaker
    (a plain breaker never would: every raw latency is negative)."""
    health = FeedHealth(LatencyBreaker(threshold_ns=100 * MS, recover_batches=2))
    plain = LatencyBreaker(threshold_ns=100 * MS)
    medians = [-1000] * 6 + [-700] * 2 + [-1000] * 4
    seen = []
    for i, m in enumerate(medians):
        batch = {"trade": trades([m] * 3, t0=T0 + i * 10**9)}
        assert plain.observe(batch).num_rows == 0
        seen.append(health.observe(batch)["state"].to_pylist())
    assert seen == [["skew"], [], [], [], [], [], ["degraded"], [], [], ["recovered"], [], []]
    assert health.skew.offset_ns("v") == -1000 * MS
    flagged = health.flag(trades([0] * 12, t0=T0, step_ms=1000))["flags"].to_pylist()
    assert [f & F_MAYBE_BAD_BOOK for f in flagged] == [0] * 6 + [4] * 4 + [0] * 2


def test_real_capture_clock_is_behind_binance(real_data: Path) -> None:
    """The hftbacktest capture's clock ran ~1.27 s behind Binance: one skew window, never cleared.

    The offset is checked against the median of recv_ns - T (ms) over the raw trade lines, computed
    here from the file; with that offset, the breaker trips exactly once per run of trade frames (of
    the first 5000) whose corrected latency is above 20 ms (runs counted from the raw lines).
    """
    path = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    raw = []
    with gzip.open(path) as f:
        for line in f:
            recv, _, body = line.partition(b" ")
            if b"@trade" in body[:40]:
                raw.append(int(recv) - orjson.loads(body)["data"]["T"] * MS)
    raw_lat = np.array(raw)
    trade = pa.concat_tables([c.tables["trade"] for c in decode([path]) if "trade" in c.tables])
    assert trade.num_rows == len(raw_lat)
    frames = np.flatnonzero(np.diff(trade["ts_recv_ns"].to_numpy())) + 1
    bounds = list(zip([0, *frames.tolist()], [*frames.tolist(), trade.num_rows], strict=True))
    assert len(bounds) == len(raw_lat)  # one trade per line in this capture: a frame is a line

    skew = SkewDetector()
    chunk = 2000
    opened = [skew.observe(trade.slice(i, chunk)) for i in range(0, trade.num_rows, chunk)]
    status = pa.concat_tables(opened)
    assert status["state"].to_pylist() == ["skew"] and status["until_ns"][0].as_py() == -1
    offset = skew.offset_ns("binance-usdm")
    assert abs(offset - np.median(raw_lat)) < 5 * MS
    assert -1_300 * MS < offset < -1_240 * MS

    breaker = LatencyBreaker(threshold_ns=20 * MS, recover_batches=1, clock_offset_ns=offset)
    trips = sum(breaker.observe(trade.slice(a, b - a))["state"].to_pylist().count("degraded")
                for a, b in bounds[:FRAMES])
    high = (raw_lat[:FRAMES] - offset) > 20 * MS
    runs = int(high[0]) + int(np.count_nonzero(high[1:] & ~high[:-1]))
    assert runs > 0 and breaker.trips == trips == runs


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-2**62, 2**62), min_size=1, max_size=100))
def test_median_int_is_numpys_median_truncated(values: list[int]) -> None:
    assert median_int(values) == int(np.median(values))
    assert median_int(np.asarray(values, np.int64)) == int(np.median(np.asarray(values, np.int64)))


@pytest.mark.parametrize("n", [20_000, 20_001])
def test_median_int_of_a_capture_batch(n: int) -> None:
    # a capture replay's 20,000-row batch takes the np.partition path; seed printed on failure
    seed = 27
    values = np.random.default_rng(seed).integers(-2**62, 2**62, n)
    assert median_int(values) == int(np.median(values)), f"seed {seed}"
