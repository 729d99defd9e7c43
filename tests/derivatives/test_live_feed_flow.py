"""``tapeflow live --derivatives``: the derivatives websocket channels through the live flow, from a
replay server serving the real captures, into the lake, with their derived metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from bytewax.testing import TestingSink, run_main

from flows.derivatives import DerivativesFeedSource
from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from tapeflow.cli import main
from tapeflow.derivatives import decode
from tapeflow.derivatives.live_derived import DerivedConfig, batch_derived
from tapeflow.errors import ConfigError
from tapeflow.replay import ReplayServer
from tapeflow.schemas import ALL_RECORDS
from tapeflow.storage import lake
from tapeflow.venues.base import merge
from tests.conftest import need
from tests.derivatives.live_streams import FORMATS, PAIRS, real_frames, rows, symbols_of, write_capture

S = 1_000_000_000


@pytest.mark.realdata
def test_feed_and_derived_metrics_in_the_flow(tmp_path: Path, real_data: Path) -> None:
    need(real_data / PAIRS)
    frames = real_frames(real_data, "okx")
    path = write_capture(tmp_path / "okx.jsonl", frames)
    batch = merge(list(decode("okx", [path])))
    config = DerivedConfig(interval_ns=600 * S, max_staleness_ns=86_400 * S, window_ns=3600 * S)
    out: list = []
    with ReplayServer("okx", [path]).run_in_thread() as srv:
        source = DerivativesFeedSource("okx", symbols_of(frames, "okx"), endpoint=srv.ws_url,
                                       idle_stop_ns=2 * S)
        run_main(build_market_flow(None, MarketSinks(tables=TestingSink(out)), derivatives=source,
                                   derived=config))
    got = gather(out)
    for name in ("funding_rate", "mark_price", "index_price", "open_interest", "liquidation"):
        assert rows(got[name]) == rows(batch[name]), name
    want = batch_derived(batch, config)  # no row of these captures comes late
    assert set(want) == {"derivative_basis", "open_interest_change"}
    for name, table in want.items():
        assert sorted(map(repr, got[name].to_pylist())) == sorted(map(repr, table.to_pylist())), name
    assert "status" in got  # the connector's connected / disconnected rows


@pytest.mark.realdata
def test_tapeflow_live_derivatives_only_into_the_lake(tmp_path: Path, real_data: Path) -> None:
    need(real_data / PAIRS)
    frames = real_frames(real_data, "bybit")
    path = write_capture(tmp_path / "bybit.jsonl", frames)
    batch = merge(list(decode(FORMATS["bybit"], [path])))
    with ReplayServer("bybit", [path]).run_in_thread() as srv:
        code = main(["live", "--venue", "bybit", "--symbols", ",".join(symbols_of(frames, "bybit")),
                     "--derivatives-only", "--derivatives-option", "liquidations=both",
                     "--endpoint", srv.ws_url, "--idle-exit", "2s", "--lake", str(tmp_path / "lake"),
                     "--no-clickhouse", "--journal", str(tmp_path / "journal")])
    assert code == 0
    for name in ("funding_rate", "mark_price", "index_price", "open_interest", "liquidation"):
        stored = lake.read(ALL_RECORDS[name], tmp_path / "lake")
        assert sorted(map(repr, rows(stored))) == sorted(map(repr, rows(batch[name]))), name


def test_derivatives_need_a_venue_with_channels() -> None:
    kraken = ["live", "--venue", "kraken", "--symbols", "XBT/USD", "--derivatives", "--no-clickhouse"]
    assert main(kraken) != 0
    assert main(["live", "--derivatives", "--poll", "okx:BTC-USDT-SWAP", "--no-clickhouse"]) != 0
    from tapeflow.settings import LiveSettings

    with pytest.raises(ConfigError, match="DERIVATIVES"):
        LiveSettings.from_env({"TAPEFLOW_LIVE_POLL": "okx:BTC-USDT-SWAP",
                               "TAPEFLOW_LIVE_DERIVATIVES": "with"})
    with pytest.raises(ConfigError, match="with or only"):
        LiveSettings.from_env({"TAPEFLOW_LIVE_VENUE": "okx", "TAPEFLOW_LIVE_SYMBOLS": "X",
                               "TAPEFLOW_LIVE_DERIVATIVES": "yes"})
