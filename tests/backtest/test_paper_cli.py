"""``tapeflow paper``: the paper flow over a capture writes its rows to the lake and the warehouse,
equal to the backtest of that capture; the kill file stops it; bad settings are clear errors."""

from __future__ import annotations

import pytest

from tapeflow.cli import main
from tapeflow.errors import ConfigError
from tests.conftest import need

TICK, LOT = 100_000_000, 1_000_000


@pytest.fixture
def capture(real_data, tmp_path):
    """The first 20,000 lines (~1.3 minutes) of the Binance capture: the command replays all of it."""
    import gzip

    full = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    short = tmp_path / "usdm_btcusdt_20240808.gz"
    with gzip.open(full, "rb") as src, gzip.open(short, "wb") as dst:
        for k, line in enumerate(src):
            if k == 20_000:
                break
            dst.write(line)
    return short


def _args(path, lake, *extra):
    return ["paper", "--strategy", "market_maker", "--capture", str(path), "--format", "binance",
            "--tick-nanos", str(TICK), "--lot-nanos", str(LOT), "--lake", str(lake), *extra]


def test_paper_command_writes_the_backtests_fills_to_the_lake(capture, tmp_path, capsys):
    from tapeflow.backtest.engine import Backtest, BacktestConfig
    from tapeflow.backtest.feed import build_feed
    from tapeflow.backtest.models import ConstantLatency, Fees, PowerProbQueue
    from tapeflow.backtest.strategies import MarketMaker
    from tapeflow.schemas.paper import PAPER_FILL, PAPER_ORDER, PAPER_POSITION
    from tapeflow.storage import lake
    from tapeflow.wire.capture import merge
    from tapeflow.wire.registry import get_format

    path = capture
    dsn = f"chdb:{tmp_path / 'wh'}"
    assert main(_args(path, tmp_path / "lake", "--taker-fee", "0.0004", "--maker-fee", "-0.00005",
                      "--clickhouse", dsn)) == 0
    out = capsys.readouterr().out
    fills = lake.read(PAPER_FILL, tmp_path / "lake").sort_by([("ts_event_ns", "ascending"),
                                                              ("order_id", "ascending")])
    orders = lake.read(PAPER_ORDER, tmp_path / "lake")
    last = lake.read(PAPER_POSITION, tmp_path / "lake").sort_by("ts_event_ns").to_pylist()[-1]
    tables = merge(list(get_format("binance").decode([path])))
    latency = ConstantLatency(0, 1_000_000, 1_000_000)
    book = {k: tables[k] for k in ("book_delta", "trade")}
    feed = build_feed(book, latency, tick_nanos=TICK, lot_nanos=LOT)
    config = BacktestConfig(latency, PowerProbQueue(3), Fees(-0.00005, 0.0004))
    ref = Backtest(feed, MarketMaker(qty=0.001, max_position=0.01), config).run()
    print(out)
    assert fills.num_rows == ref.fills.num_rows > 20
    assert fills.column("ts_event_ns").to_pylist() == sorted(ref.fills.column("ts_ns").to_pylist())
    assert orders.num_rows >= ref.counts["orders"]
    assert last["equity"] == pytest.approx(ref.equity.column("equity")[-1].as_py(), abs=1e-9)
    assert f"{fills.num_rows} fills" in out and "BTCUSDT" in out
    from tapeflow.storage.warehouse import Warehouse

    with Warehouse(dsn) as wh:  # the warehouse holds the lake's rows
        assert wh.count(PAPER_FILL) == fills.num_rows and wh.count(PAPER_POSITION) > 100


def test_kill_file_halts_the_command(capture, tmp_path, capsys):
    from tapeflow.schemas.paper import PAPER_FILL
    from tapeflow.schemas.records import STATUS
    from tapeflow.storage import lake

    path = capture
    kill = tmp_path / "STOP"
    kill.write_text("")
    assert main(_args(path, tmp_path / "lake", "--kill-file", str(kill))) == 0
    status = [r for r in lake.read(STATUS, tmp_path / "lake").to_pylist() if r["detail"].startswith("paper ")]
    assert [r["state"] for r in status] == ["killed"]
    assert lake.read(PAPER_FILL, tmp_path / "lake").num_rows == 0
    assert "HALTED" in capsys.readouterr().out


def test_bad_paper_settings_are_clear_errors(tmp_path):
    from tapeflow.backtest.paper_cli import PaperSettings

    with pytest.raises(ConfigError, match="tick and lot"):
        PaperSettings("market_maker", 0, 1)
    with pytest.raises(ConfigError, match="TAPEFLOW_PAPER is not set"):
        PaperSettings.from_env({})
    with pytest.raises(ConfigError, match="not valid paper settings"):
        PaperSettings.from_env({"TAPEFLOW_PAPER": "{\"nope\": 1}"})
    assert main(["paper", "--strategy", "idle", "--tick-nanos", "1", "--lot-nanos", "1"]) != 0
