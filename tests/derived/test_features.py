"""Features on several grids, daily profiles and 20-day baselines (by hand and on a simulated market)."""

from __future__ import annotations

import datetime as dt
import math
import statistics

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.book.l2 import book_snapshots, quotes_from_deltas
from tapeflow.derived import BASELINE, PROFILE, baselines, daily_profile, features, metrics
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import BOOK_SNAPSHOT, METRIC, QUOTE, TRADE, UNDEF_PRICE
from tests.derived.conftest import MIDNIGHT_NS, same_rows

S = 1_000_000_000
DAY = 86_400 * S
B, A = ord("B"), ord("A")


@pytest.fixture(scope="module")
def sim_books(sim_tables: dict) -> tuple[pa.Table, pa.Table, pa.Table]:
    deltas = sim_tables["book_delta"]
    return book_snapshots(deltas, levels=10, interval_ns=S), quotes_from_deltas(deltas), sim_tables["trade"]


def test_minute_features_equal_metrics_on_minute_snapshots(sim_books: tuple, sim_tables: dict) -> None:
    snaps, quotes, trades = sim_books
    feats = features(snaps, quotes, trades, intervals=("1s", "1m"))
    second = feats.filter(pc.equal(feats.column("interval"), "1s"))
    minute = feats.filter(pc.equal(feats.column("interval"), "1m"))
    same_rows(second, metrics(snaps, quotes, trades))
    # Independent grid: the book rebuilt directly on minutes (its last instant may lie past the 1 s grid).
    direct = metrics(book_snapshots(sim_tables["book_delta"], levels=10, interval_ns=60 * S), quotes, trades,
                     interval="1m")
    last_second = {}
    for r in snaps.to_pylist():
        last_second[r["symbol"]] = max(last_second.get(r["symbol"], 0), r["ts_event_ns"])
    keep = [r for r in direct.to_pylist() if r["ts_event_ns"] <= last_second[r["symbol"]]]
    got = minute.to_pylist()
    assert len(got) == len(keep) >= 4  # two instruments, 2 minutes across midnight
    for x, y in zip(got, keep, strict=True):
        assert {k: v for k, v in x.items() if not (isinstance(v, float) and math.isnan(v))} == {
            k: v for k, v in y.items() if not (isinstance(v, float) and math.isnan(v))}


def _signed(trades: list[dict], lo: int, hi: int) -> int:
    sign = {B: 1, A: -1}
    return sum(x["size_nanos"] * sign.get(x["aggressor_side"], 0)
               for x in trades if lo < x["ts_recv_ns"] <= hi)


def test_cvd_restarts_after_midnight_on_the_simulated_market(sim_books: tuple) -> None:
    snaps, quotes, trades = sim_books
    m = metrics(snaps, quotes, trades)
    for symbol in ("SIM-BTCUSDT", "SIM-ETHUSDT"):
        mine = m.filter(pc.equal(m.column("symbol"), symbol)).to_pylist()
        t = trades.filter(pc.equal(trades.column("symbol"), symbol)).to_pylist()
        first_after = next(r for r in mine if r["ts_event_ns"] > MIDNIGHT_NS)
        at_midnight = next(r for r in mine if r["ts_event_ns"] == MIDNIGHT_NS)
        # Trades are received in order here, so the running max is the capture time itself.
        assert at_midnight["cvd_nanos"] == _signed(t, -1, MIDNIGHT_NS)
        assert first_after["cvd_nanos"] == _signed(t, MIDNIGHT_NS, first_after["ts_event_ns"])
        whole = _signed(t, -1, first_after["ts_event_ns"])
        assert _signed(t, MIDNIGHT_NS, first_after["ts_event_ns"]) != whole


def test_features_reject_mismatched_grids() -> None:
    empty = BOOK_SNAPSHOT.empty_table(), QUOTE.empty_table(), TRADE.empty_table()
    with pytest.raises(ConfigError):
        features(*empty, intervals=("2s", "3s"))
    with pytest.raises(ConfigError):
        features(*empty, intervals=())
    assert features(*empty).num_rows == 0


def trade_rows(rows: list[tuple]) -> pa.Table:
    """rows: (ts_event_ns, size, side, symbol)."""
    n = len(rows)
    return TRADE.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] + 1 for r in rows],
        "venue": ["v"] * n, "symbol": [r[3] for r in rows], "sequence": list(range(n)),
        "trade_id": [""] * n, "price_nanos": [100] * n, "size_nanos": [r[1] for r in rows],
        "aggressor_side": [r[2] for r in rows], "flags": [0] * n,
    })


def metric_rows(rows: list[tuple], interval: str = "1s") -> pa.Table:
    """rows: (ts_event_ns, symbol, spread_nanos, imbalance)."""
    n = len(rows)
    z = [0] * n
    return METRIC.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] for r in rows], "venue": ["v"] * n,
        "symbol": [r[1] for r in rows], "interval": [interval] * n, "sequence": z, "mid_price_nanos": z,
        "spread_nanos": [r[2] for r in rows], "spread_bps": [0.0] * n, "microprice_nanos": z,
        "bid_depth_nanos": z, "ask_depth_nanos": z, "imbalance": [r[3] for r in rows], "ofi_nanos": z,
        "cvd_nanos": z, "realized_vol": [0.0] * n, "flags": z,
    })


def test_daily_profile_by_hand() -> None:
    d0 = MIDNIGHT_NS
    sizes = list(range(1, 101))  # 1..100: nearest-rank p10 = 10, p50 = 50, p90 = 90, p99 = 99
    rows = [(d0 + i * S, s, B if i % 2 else A, "x") for i, s in enumerate(sizes)]
    rows += [(d0 - 1, 5000, B, "x"), (d0 + DAY, 7000, B, "x"), (d0 + 5, 3, B, "y")]
    m = pa.concat_tables([
        metric_rows([(d0 + S, "x", 4, -0.5), (d0 + 2 * S, "x", UNDEF_PRICE, math.nan),
                     (d0 + 3 * S, "x", 2, 0.25), (d0 + 4 * S, "x", 6, 0.0), (d0 + DAY, "x", 1, 1.0)]),
        metric_rows([(d0 + 5 * S, "x", 999, 1.0)], "1m"),  # another grid: not summarized
    ])
    got = {r["symbol"]: r for r in daily_profile(trade_rows(rows), m, "2024-01-02").to_pylist()}
    x, y = got["x"], got["y"]
    assert (x["date"], x["ts_event_ns"], x["trade_count"], x["volume_nanos"]) == ("2024-01-02", d0, 100, 5050)
    assert (x["buy_volume_nanos"], x["sell_volume_nanos"]) == (sum(sizes[1::2]), sum(sizes[0::2]))
    assert [x[f"size_p{q}_nanos"] for q in (10, 50, 90, 99)] == [10, 50, 90, 99]
    assert (x["metric_count"], x["spread_median_nanos"]) == (4, 4)  # spreads 2, 4, 6 (one side empty once)
    assert x["imbalance_abs_mean"] == 0.75 / 3
    assert (y["trade_count"], y["size_p99_nanos"]) == (1, 3)
    assert (y["metric_count"], y["spread_median_nanos"]) == (0, -1)
    assert math.isnan(y["imbalance_abs_mean"]) and x["ts_recv_ns"] == d0 + 99 * S + 1
    with pytest.raises(ConfigError):
        daily_profile(trade_rows(rows), m, "2024-13-01")


def _profiles(days: dict[int, tuple[int, int]], symbol: str = "x") -> pa.Table:
    """days: day index (since the epoch) -> (trade_count, volume_nanos); other fields fixed."""
    rows = []
    for d, (count, vol) in sorted(days.items()):
        rows.append({
            "ts_event_ns": d * DAY, "ts_recv_ns": d * DAY + 1, "venue": "v", "symbol": symbol,
            "date": (dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat(), "trade_count": count,
            "volume_nanos": vol, "buy_volume_nanos": 0, "sell_volume_nanos": 0, "size_p10_nanos": d,
            "size_p50_nanos": 2 * d, "size_p90_nanos": 3 * d, "size_p99_nanos": 4 * d, "metric_count": 1,
            "imbalance_abs_mean": d / 100, "spread_median_nanos": d % 7,
        })
    return PROFILE.table({n: [r[n] for r in rows] for n in PROFILE.column_names})


def test_baselines_use_the_previous_window_only() -> None:
    base = 19_700
    rng = np.random.default_rng(3)
    history = {base + i: (int(rng.integers(100, 999)), int(rng.integers(10**9, 10**12)))
               for i in range(30) if i not in (5, 17)}  # two missing days
    out = {r["date"]: r for r in baselines(_profiles(history), 20).to_pylist()}
    assert len(out) == len(history)
    day = base + 25
    r = out[(dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()]
    window = [history[d] for d in range(day - 20, day) if d in history]  # base+5 .. base+24, two missing
    assert r["days_used"] == len(window) == 18
    assert r["volume_mean_nanos"] == pytest.approx(statistics.fmean(v for _, v in window), rel=1e-15)
    assert r["volume_std_nanos"] == pytest.approx(statistics.stdev(v for _, v in window), rel=1e-12)
    assert r["trade_count_mean"] == pytest.approx(statistics.fmean(c for c, _ in window), rel=1e-15)
    assert r["trade_count_std"] == pytest.approx(statistics.stdev(c for c, _ in window), rel=1e-12)
    days_in = [d for d in range(day - 20, day) if d in history]
    assert r["size_p50_median_nanos"] == sorted(2 * d for d in days_in)[(50 * 18 + 99) // 100 - 1]
    assert r["imbalance_abs_mean"] == pytest.approx(statistics.fmean(d / 100 for d in days_in))
    first = out[(dt.date(1970, 1, 1) + dt.timedelta(days=base)).isoformat()]
    assert first["days_used"] == 0 and math.isnan(first["volume_mean_nanos"])
    assert first["size_p10_median_nanos"] == -1
    second = out[(dt.date(1970, 1, 1) + dt.timedelta(days=base + 1)).isoformat()]
    assert second["days_used"] == 1 and math.isnan(second["volume_std_nanos"])
    assert second["volume_mean_nanos"] == history[base][1]
    # A day with no profile of its own (tomorrow) still gets a baseline.
    ahead = baselines(_profiles(history), 20, days=[dt.date(1970, 1, 1) + dt.timedelta(days=base + 30)])
    assert ahead.schema == BASELINE.arrow_schema() and ahead.column("days_used").to_pylist() == [19]
    with pytest.raises(ConfigError):
        baselines(_profiles(history), 0)
