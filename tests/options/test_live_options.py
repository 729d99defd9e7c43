"""The live options stage: Deribit ticker captures through the Bytewax options flow (``flows.options``)
give ``option_ticker`` and ``option_surface`` rows equal, row for row, to ``tapeflow options
--surface`` over the same files, whatever the micro-batch size; the grid's lateness rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bytewax.testing import TestingSink, run_main

from flows.market import MarketSinks
from flows.operators import gather
from flows.options import OptionCaptureSource, build_options_flow
from tapeflow.cli import main
from tapeflow.errors import ConfigError
from tapeflow.options.live import LiveSurfaces
from tapeflow.options.surface import BadSurfaceInput, surface_records, surfaces
from tests.conftest import need
from tests.options.test_surface import MIN, T0, _table, _tickers

SORT_T = [(c, "ascending") for c in ("symbol", "ts_event_ns", "ts_recv_ns")]
SORT_S = [(c, "ascending") for c in ("symbol", "ts_event_ns", "expiry_ns")]


def _rows(table: pa.Table, order: list) -> list[dict]:
    rows = table.sort_by(order).to_pylist()
    return [{k: ("nan" if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]


def _live(paths: list[Path], batch_events: int) -> tuple[dict[str, pa.Table], list]:
    got, dead = [], []
    flow = build_options_flow(OptionCaptureSource(paths, batch_events=batch_events),
                              MarketSinks(tables=TestingSink(got), dead_letters=TestingSink(dead)))
    run_main(flow)
    return gather(got), dead


def _batch(paths: list[Path], tmp: Path) -> tuple[pa.Table, pa.Table]:
    out, surf = tmp / "t.parquet", tmp / "s.parquet"
    assert main(["options", "--format", "deribit", *map(str, paths), "--out", str(out), "--surface",
                 str(surf), "--quiet", "--allow-rejects"]) == 0
    return pq.read_table(out), surface_records(pq.read_table(surf), "deribit")


@pytest.mark.realdata
@pytest.mark.parametrize("batch_events", [7, 20_000])
def test_live_equals_batch_row_for_row_on_the_real_captures(real_data: Path, tmp_path: Path,
                                                           batch_events: int) -> None:
    folder = need(real_data / "options" / "deribit")
    paths = sorted(folder.glob("cryptofeed_DERIBIT*"))
    if len(paths) != 2:
        pytest.skip(f"expected the two Deribit captures in {folder}, found {len(paths)}")
    live, dead = _live(paths, batch_events)
    tickers, surface = _batch(paths, tmp_path)
    print(f"batch_events {batch_events}: live {live['option_ticker'].num_rows} tickers, "
          f"{live['option_surface'].num_rows} surface rows, {sum(t.num_rows for _, t in dead)} dead letters")
    assert (live["option_ticker"].num_rows, live["option_surface"].num_rows) == (365, 36)
    assert _rows(live["option_ticker"], SORT_T) == _rows(tickers, SORT_T)
    assert _rows(live["option_surface"], SORT_S) == _rows(surface, SORT_S)
    assert all(name == "rejected" for name, _ in dead) and dead  # book.* / trades.*: ignored by rule


def test_synthetic_chain_live_equals_batch_at_every_batch_size(tmp_path: Path) -> None:
    """Two underlyings over 5 minutes, tickers every 20 s: every grid time has a full smile."""
    strikes = np.array([80.0, 90.0, 100.0, 110.0, 120.0])
    lines = ["wss://www.deribit.com/ws/api/v2 <-> 1617000000.0"]
    table = _table(*[_tickers(0.5 + 0.01 * i, T0 + i * 20_000_000_000 + 1_000_000, strikes, u)
                     for i in range(15) for u in ("BTC", "ETH")])
    for row in table.to_pylist():
        name = f"{row['underlying']}-30JUN21-{row['strike_price_nanos'] // 10**9}-{row['option_type']}"
        data = {"instrument_name": name, "timestamp": row["ts_event_ns"] // 1_000_000,
                "underlying_price": row["underlying_price_nanos"] / 1e9,
                "mark_price": row["mark_price_nanos"] / 1e9, "mark_iv": 50.0}
        frame = {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": f"ticker.{name}.raw",
                                                                         "data": data}}
        lines.append(f"{row['ts_event_ns'] / 1e9:.6f}: {json.dumps(frame)}")
    capture = tmp_path / "chain.txt"
    capture.write_text("\n".join(lines) + "\n")
    tickers, surface = _batch([capture], tmp_path)
    assert np.isfinite(surface.column("atm_iv").to_numpy()).all() and surface.num_rows == 10
    for batch_events in (1, 9, 10_000):
        live, _ = _live([capture], batch_events)
        assert _rows(live["option_surface"], SORT_S) == _rows(surface, SORT_S), batch_events
        assert _rows(live["option_ticker"], SORT_T) == _rows(tickers, SORT_T), batch_events


def test_grid_times_are_emitted_once_final_and_late_tickers_are_counted() -> None:
    strikes = np.array([90.0, 100.0, 110.0])
    first = _table(_tickers(0.5, T0 + 1_000, strikes))  # grid time T0 + 1 min
    second = _table(_tickers(0.5, T0 + MIN + 10_000_000_000, strikes))  # 10 s past it
    third = _table(_tickers(0.5, T0 + 2 * MIN - 30_000_000_000, strikes))
    whole = surface_records(surfaces(pa.concat_tables([first, second, third])), "deribit")
    live = LiveSurfaces("deribit", lateness_ns=5_000_000_000)
    assert live.add(first).num_rows == 0  # T0 + 1 min not final until a ticker 5 s past it
    out = [live.add(second)]
    assert out[0].column("ts_event_ns").to_pylist() == [T0 + MIN]
    late = _table(_tickers(0.6, T0 + MIN - 1, strikes))  # belongs to an emitted snapshot
    out.append(live.add(late))
    assert live.late == late.num_rows and out[-1].num_rows == 0
    out += [live.add(third), live.flush()]
    got = pa.concat_tables(out).column("ts_event_ns").to_pylist()
    assert got == [T0 + MIN, T0 + 2 * MIN] == sorted(set(whole.column("ts_event_ns").to_pylist()))
    with pytest.raises(BadSurfaceInput, match="must be positive"):
        LiveSurfaces("deribit", step_ns=0)


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one file"):
        OptionCaptureSource([])
    with pytest.raises(ConfigError, match="not found"):
        OptionCaptureSource([tmp_path / "missing.txt"])


@pytest.mark.realdata
def test_tapeflow_live_replays_a_capture_through_the_options_flow_into_the_lake(real_data: Path,
                                                                                 tmp_path: Path) -> None:
    from tapeflow.options.records import OPTION_SURFACE, OPTION_TICKER
    from tapeflow.storage import lake

    paths = sorted(need(real_data / "options" / "deribit").glob("cryptofeed_DERIBIT*"))
    if len(paths) != 2:
        pytest.skip(f"expected the two Deribit captures, found {len(paths)}")
    root = tmp_path / "lake"
    assert main(["live", "--capture", *map(str, paths), "--format", "deribit-options", "--lake", str(root),
                 "--no-clickhouse"]) == 0
    tickers, surface = _batch(paths, tmp_path)
    stored_t = lake.read(OPTION_TICKER, root).select(OPTION_TICKER.column_names)
    stored_s = lake.read(OPTION_SURFACE, root).select(OPTION_SURFACE.column_names)
    assert _rows(stored_t, SORT_T) == _rows(tickers.select(stored_t.column_names), SORT_T)
    assert _rows(stored_s, SORT_S) == _rows(surface.select(stored_s.column_names), SORT_S)
