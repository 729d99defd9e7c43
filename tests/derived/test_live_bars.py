"""LiveBars: late-data policy by hand, batch-split invariance (Hypothesis) and parity with time_bars."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeflow.derived import LiveBars
from tapeflow.derived.bars import STANDARD_INTERVALS, time_bars
from tapeflow.errors import ConfigError, TapeflowError
from tapeflow.schemas.records import BAR, F_GAP, F_MAYBE_BAD_BOOK, TRADE

S = 1_000_000_000
B, A, N = ord("B"), ord("A"), ord("N")


def trades(rows: list[tuple], venue: str = "v", symbol: str = "s") -> pa.Table:
    """rows: (ts_event_ns, price_nanos, size_nanos, side[, symbol[, flags]])."""
    n = len(rows)
    return TRADE.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] + 7 for r in rows],
        "venue": [venue] * n, "symbol": [r[4] if len(r) > 4 else symbol for r in rows],
        "sequence": list(range(n)), "trade_id": [f"t{i}" for i in range(n)],
        "price_nanos": [r[1] for r in rows], "size_nanos": [r[2] for r in rows],
        "aggressor_side": [r[3] for r in rows], "flags": [r[5] if len(r) > 5 else 0 for r in rows],
    })


def final_revisions(bars: pa.Table, interval: str) -> list[dict]:
    """The highest revision of each bar of one interval, revision reset to 0, in time_bars order."""
    best: dict[tuple, dict] = {}
    for r in bars.filter(pc.equal(bars.column("interval"), interval)).to_pylist():
        key = (r["venue"], r["symbol"], r["ts_event_ns"])
        if key not in best or best[key]["revision"] < r["revision"]:
            best[key] = r
    return [dict(best[k], revision=0) for k in sorted(best)]


def run(live: LiveBars, table: pa.Table, cuts: list[int]) -> pa.Table:
    out, prev = [], 0
    for c in [*sorted(cuts), table.num_rows]:
        out.append(live.add(table.slice(prev, c - prev)))
        prev = c
    out.append(live.close())
    return pa.concat_tables(out)


def test_watermark_emission_restatement_and_too_late_by_hand() -> None:
    live = LiveBars(("1s",), allowed_lateness_ns=S // 2, restate_horizon_ns=2 * S)
    # Bar [10s, 11s) stays open until the watermark (max ts - 0.5 s) reaches 11 s.
    assert live.add(trades([(10 * S, 100, 1, B), (11 * S + S // 4, 101, 2, A)])).num_rows == 0
    first = live.add(trades([(11 * S + S // 2, 102, 3, B)])).to_pylist()
    assert [(r["ts_event_ns"], r["volume_nanos"], r["revision"]) for r in first] == [(10 * S, 1, 0)]
    # A trade for the emitted bar, behind the watermark but within the horizon: revision 1, both trades.
    again = live.add(trades([(10 * S + 3, 90, 4, A)])).to_pylist()
    assert len(again) == 1
    r = again[0]
    assert (r["revision"], r["open_price_nanos"], r["close_price_nanos"]) == (1, 100, 90)
    assert (r["low_price_nanos"], r["volume_nanos"], r["trade_count"]) == (90, 5, 2)
    assert (r["buy_volume_nanos"], r["sell_volume_nanos"]) == (1, 4)
    assert r["vwap_price_nanos"] == 92  # (100*1 + 90*4) / 5 = 92
    # Max ts 11.5 s, watermark 11 s, horizon 2 s: a trade before 9 s is too late.
    assert live.add(trades([(9 * S - 1, 50, 1, B), (9 * S, 60, 1, B)])).to_pylist()[0]["revision"] == 0
    rej = live.drain_rejected().to_pylist()
    assert [(x["reason"], x["ts_event_ns"]) for x in rej] == [("too_late", 9 * S - 1)]
    assert "behind the watermark" in rej[0]["detail"] and rej[0]["raw"].startswith(b"{")
    assert live.drain_rejected().num_rows == 0
    assert (live.stats.too_late, live.stats.late, live.stats.restated) == (1, 2, 1)
    rest = live.close().to_pylist()
    assert [(x["ts_event_ns"], x["revision"]) for x in rest] == [(11 * S, 0)]


def test_advance_closes_bars_of_a_quiet_instrument() -> None:
    live = LiveBars(("1s", "1m"), allowed_lateness_ns=S // 2, restate_horizon_ns=10 * S)
    assert live.add(trades([(10 * S, 100, 1, B)])).num_rows == 0
    assert live.advance("v", "s", 10 * S + S // 4).num_rows == 0  # watermark 9.75 s: still open
    assert live.advance("v", "s", 5 * S).num_rows == 0  # time never goes back
    assert live.advance("v", "other", 99 * S).num_rows == 0  # never seen: nothing to close
    out = live.advance("v", "s", 11 * S + S // 2).to_pylist()
    assert [(r["interval"], r["ts_event_ns"], r["revision"]) for r in out] == [("1s", 10 * S, 0)]
    # The advanced clock decides lateness as a trade would have: this one restates the 1 s bar.
    again = live.add(trades([(10 * S + 1, 90, 1, A)])).to_pylist()
    assert [(r["interval"], r["revision"], r["trade_count"]) for r in again] == [("1s", 1, 2)]
    assert live.watermark_ns("v", "s") == 11 * S and live.watermark_ns("v", "x") is None


def test_negative_size_is_a_rejected_row_not_a_crash() -> None:
    live = LiveBars(("1s",))
    live.add(trades([(S, 100, -5, B), (S, 100, 5, B)]))
    rej = live.drain_rejected().to_pylist()
    assert [(r["reason"], r["detail"]) for r in rej] == [("negative", "trade t0 has size_nanos=-5")]
    # A rejected row still carries venue time: the clock moves (default lateness 1 s).
    out = live.add(trades([(5 * S, 100, -1, B)]))
    assert live.watermark_ns("v", "s") == 4 * S and live.stats.rejected == 2
    assert out.column("volume_nanos").to_pylist() == [5]
    assert live.close().num_rows == 0


def test_bad_arguments_raise() -> None:
    with pytest.raises(ConfigError):
        LiveBars(("7x",))
    with pytest.raises(ConfigError):
        LiveBars(allowed_lateness_ns=-1)
    with pytest.raises(TapeflowError, match="trade table"):
        LiveBars().add(BAR.empty_table())


def test_gap_flag_and_symbols_kept_apart() -> None:
    live = LiveBars(("1m",), allowed_lateness_ns=0)
    rows = [(0, 10, 1, B, "x"), (1, 20, 1, B, "y", F_GAP), (61 * S, 30, 1, B, "x"), (61 * S, 40, 1, B, "y")]
    out = live.add(trades(rows)).to_pylist()
    assert [(r["symbol"], r["open_price_nanos"], r["flags"]) for r in out] == [
        ("x", 10, 0), ("y", 20, F_MAYBE_BAD_BOOK)]


stream = st.lists(
    st.tuples(st.integers(0, 40 * S), st.integers(1, 2**62), st.integers(0, 2**40),
              st.sampled_from([B, A, N]), st.sampled_from(["x", "y"])),
    min_size=1, max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(rows=stream, data=st.data(), lateness=st.sampled_from([0, S // 3, 5 * S]))
def test_final_revisions_equal_time_bars_on_any_split(rows: list, data: st.DataObject, lateness: int) -> None:
    table = trades(rows)
    cuts = data.draw(st.lists(st.integers(0, len(rows)), max_size=6))
    # A horizon beyond the stream's span: nothing is too late, so every trade is in a bar.
    live = LiveBars(("1s", "5s", "1m"), allowed_lateness_ns=lateness, restate_horizon_ns=100 * S)
    out = run(live, table, cuts)
    assert live.stats.too_late == 0
    for interval in ("1s", "5s", "1m"):
        assert final_revisions(out, interval) == time_bars(table, interval).to_pylist()
    assert live.stats.emitted == out.num_rows
    # Each bar is emitted as revisions 0, 1, 2, ... in that order, and restatements are counted.
    seen: dict[tuple, list[int]] = {}
    for r in out.to_pylist():
        seen.setdefault((r["symbol"], r["interval"], r["ts_event_ns"]), []).append(r["revision"])
    assert all(revs == list(range(len(revs))) for revs in seen.values())
    assert live.stats.restated == sum(len(revs) - 1 for revs in seen.values())


@settings(max_examples=40, deadline=None)
@given(rows=stream, data=st.data())
def test_too_late_trades_are_the_only_ones_missing(rows: list, data: st.DataObject) -> None:
    table = trades(rows)
    cuts = data.draw(st.lists(st.integers(0, len(rows)), max_size=6))
    live = LiveBars(("1s", "15s"), allowed_lateness_ns=S, restate_horizon_ns=2 * S)
    out = run(live, table, cuts)
    rejected = live.drain_rejected()
    # Independent rule: too late when more than lateness + horizon behind the newest trade so far.
    ts = np.array([r[0] for r in rows])
    behind = np.zeros(len(rows), bool)
    for sym in ("x", "y"):
        mine = np.array([r[4] == sym for r in rows])
        behind[mine] = ts[mine] < np.maximum.accumulate(ts[mine]) - 3 * S if mine.any() else []
    assert sorted(rejected.column("ts_event_ns").to_pylist()) == sorted(ts[behind].tolist())
    assert set(rejected.column("reason").to_pylist()) <= {"too_late"}
    assert live.stats.too_late == int(behind.sum())
    kept = table.filter(pa.array(~behind))
    for interval in ("1s", "15s"):
        assert final_revisions(out, interval) == time_bars(kept, interval).to_pylist()


def test_state_pickles_mid_stream_and_resumes_identically() -> None:
    rng = np.random.default_rng(7)
    ts = np.cumsum(rng.integers(0, S // 5, 600)) - rng.integers(0, 3 * S, 600)
    rows = [(int(t), int(p), int(s), B) for t, p, s in
            zip(ts, rng.integers(10**13, 10**14, 600), rng.integers(1, 10**12, 600), strict=True)]
    table = trades(rows)
    a = LiveBars(allowed_lateness_ns=S, restate_horizon_ns=10 * S)
    first = a.add(table.slice(0, 300))
    b = pickle.loads(pickle.dumps(a))
    rest_a = pa.concat_tables([a.add(table.slice(300)), a.close()])
    rest_b = pa.concat_tables([b.add(table.slice(300)), b.close()])
    assert rest_a.equals(rest_b)
    assert a.stats == b.stats
    out = pa.concat_tables([first, rest_a])
    kept = table.filter(pa.array(~(ts < np.maximum.accumulate(ts) - 11 * S)))
    for interval in STANDARD_INTERVALS:
        assert final_revisions(out, interval) == time_bars(kept, interval).to_pylist()
