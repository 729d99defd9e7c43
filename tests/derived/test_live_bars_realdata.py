"""LiveBars on real and simulated trades: every interval's final revisions equal batch time_bars."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.derived import LiveBars
from tapeflow.derived.bars import STANDARD_INTERVALS, time_bars
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.conftest import need
from tests.derived.conftest import MIDNIGHT_NS
from tests.derived.test_live_bars import final_revisions

S = 1_000_000_000


def shuffled_locally(table: pa.Table, window: int, seed: int) -> pa.Table:
    """Permute rows inside consecutive windows: trades arrive out of time order by up to a window."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.arange(i, min(i + window, table.num_rows)))
                            for i in range(0, table.num_rows, window)])
    return table.take(pa.array(order))


def live_in_batches(table: pa.Table, live: LiveBars, seed: int, max_batch: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < table.num_rows:
        n = int(rng.integers(1, max_batch))
        out.append(live.add(table.slice(i, n)))
        i += n
    out.append(live.close())
    return pa.concat_tables(out)


def assert_parity(out: pa.Table, kept: pa.Table) -> None:
    for interval in STANDARD_INTERVALS:
        assert final_revisions(out, interval) == time_bars(kept, interval).to_pylist(), interval


def test_binance_trades_out_of_order_restate_and_match_batch(binance_tables: dict,
                                                             binance_path: Path) -> None:
    with gzip.open(binance_path, "rt") as f:
        raw_trades = sum(1 for line in f if "@trade" in line)
    trades = shuffled_locally(binance_tables["trade"], window=300, seed=1)
    live = LiveBars(allowed_lateness_ns=S // 2, restate_horizon_ns=3600 * S)
    out = live_in_batches(trades, live, seed=2, max_batch=1500)
    assert live.stats.trades == raw_trades == 21313
    assert live.stats.too_late == 0 and live.stats.late > 0 and live.stats.restated > 0
    assert live.drain_rejected().num_rows == 0
    assert_parity(out, trades)
    day = final_revisions(out, "1d")
    assert sum(r["trade_count"] for r in day) == raw_trades
    revised = out.filter(pc.greater(out.column("revision"), 0))
    assert revised.num_rows == live.stats.restated


def test_binance_too_late_trades_are_exactly_those_behind_the_horizon(binance_tables: dict) -> None:
    trades = shuffled_locally(binance_tables["trade"], window=300, seed=3)
    live = LiveBars(allowed_lateness_ns=0, restate_horizon_ns=S)
    out = live_in_batches(trades, live, seed=4, max_batch=800)
    ts = trades.column("ts_event_ns").to_numpy()
    behind = ts < np.maximum.accumulate(ts) - S  # one instrument: the per-instrument rule is global here
    rejected = live.drain_rejected()
    assert live.stats.too_late == int(behind.sum()) == rejected.num_rows > 0
    assert sorted(rejected.column("ts_event_ns").to_pylist()) == sorted(ts[behind].tolist())
    assert set(rejected.column("reason").to_pylist()) == {"too_late"}
    assert_parity(out, trades.filter(pa.array(~behind)))


def test_tardis_trades_in_order(real_data: Path) -> None:
    path = need(real_data / "tardis" / "tardis_trades.csv")
    lines = path.read_text().splitlines()
    trades = merge(list(get_format("tardis").decode([path])))["trade"]
    live = LiveBars()
    out = live_in_batches(trades, live, seed=5, max_batch=700)
    assert trades.num_rows == len(lines) - 1 == 9999  # a header, then one trade per line
    assert live.stats.late == live.stats.restated == live.stats.too_late == 0
    assert_parity(out, trades)
    assert sum(r["trade_count"] for r in final_revisions(out, "1d")) == 9999


def test_simulated_trades_across_midnight(sim_tables: dict) -> None:
    trades = shuffled_locally(sim_tables["trade"], window=40, seed=6)
    live = LiveBars(allowed_lateness_ns=2 * S, restate_horizon_ns=600 * S)
    out = live_in_batches(trades, live, seed=7, max_batch=300)
    assert live.stats.too_late == 0
    assert_parity(out, trades)
    days = final_revisions(out, "1d")
    assert [(r["symbol"], r["ts_event_ns"]) for r in days] == [
        (s, d) for s in ("SIM-BTCUSDT", "SIM-ETHUSDT") for d in (MIDNIGHT_NS - 86_400 * S, MIDNIGHT_NS)]


def _dbn_records(path: Path) -> tuple[object, list]:
    import databento_dbn as dbn

    from tapeflow.venues.databento import framing

    decoder = dbn.DBNDecoder()
    decoder.write(framing.read_all(path))
    out = decoder.decode()
    return out[0], out[1:]


def test_live_minute_bars_equal_databento_ohlcv(real_data: Path) -> None:
    glbx = real_data / "databento" / "glbx"
    trades_path = need(glbx / "futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst")
    ohlcv_path = need(glbx / "futures_ohlcv-1m_2024-07-01T23-40_2024-07-02T00-10.dbn.zst")
    trades = merge(list(get_format("dbn").decode([trades_path])))["trade"]
    live = LiveBars(("1m",), allowed_lateness_ns=0)
    out = live_in_batches(trades, live, 8, 40)
    ours = {(r["symbol"], r["ts_event_ns"]): r for r in final_revisions(out, "1m")}
    # Databento's own bars (read with databento_dbn, not our decoder) for minutes wholly inside the
    # trades file's range, for the instruments it traded.
    meta, trade_records = _dbn_records(trades_path)
    symbol_of = {t.instrument_id: s for t, s in zip(trade_records, trades.column("symbol").to_pylist(),
                                                   strict=True)}
    _, bars = _dbn_records(ohlcv_path)
    theirs = [b for b in bars if b.instrument_id in symbol_of and meta.start <= b.ts_event
              and b.ts_event + 60 * S <= meta.end]
    assert len(theirs) == 4  # 23:58 .. 00:02: four whole minutes of the one traded contract
    for b in theirs:
        r = ours[(symbol_of[b.instrument_id], b.ts_event)]
        ohlc = (r["open_price_nanos"], r["high_price_nanos"], r["low_price_nanos"], r["close_price_nanos"])
        assert ohlc == (b.open, b.high, b.low, b.close)
        assert r["volume_nanos"] == b.volume * 1_000_000_000
