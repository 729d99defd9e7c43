"""The ``option_flow_signals`` asset: a simulated option chain's tickers and trades in the lake ->
the underlying-day's cross-strike ``signal`` rows, equal to ``tapeflow signals detect --format
options`` over the simulator's files, and the non-blocking ``planted_cross_strike`` check reporting
precision and recall against the planted flows."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.dagster.conftest import Deployment, check_results, materializations

S = 1_000_000_000
START_NS = 1_704_067_200 * S  # 2024-01-01 00:00 UTC
KEY = [(c, "ascending") for c in ("ts_event_ns", "side", "evidence")]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Deployment, Path]:
    from tapeflow.schemas.options import OPTION_TICKER
    from tapeflow.schemas.records import TRADE
    from tapeflow.simulator.options import simulate_options
    from tapeflow.storage.writer import Writer

    root = tmp_path_factory.mktemp("optsig")
    sim = root / "sim"
    simulate_options(20240101, 40 * 60 * S, sim, start_ns=START_NS, overlap=True)
    dep = Deployment(root / "dep")
    dep.landing.mkdir(parents=True)
    shutil.copy(sim / "episodes.parquet", dep.landing / "episodes.parquet")
    # what the upstream assets would have written: the chain's tickers and its option trades
    tickers = pq.read_table(next(sim.rglob("option_ticker.parquet"))).select(OPTION_TICKER.column_names)
    trades = pq.read_table(next(sim.rglob("trade.parquet"))).select(TRADE.column_names)
    with Writer(dep.lake) as writer:
        for record, table in ((OPTION_TICKER, tickers), (TRADE, trades)):
            slices = sorted({("sim", s, "2024-01-01") for s in table.column("symbol").to_pylist()})
            writer.replace(record, table.cast(record.arrow_schema()), partitions=slices)
    return dep, sim


def test_asset_rows_equal_the_detector_over_the_files_and_the_check_scores(chain, tmp_path: Path) -> None:
    from assets.option_signals import ASSET, CHECK
    from assets.options import UNDERLYINGS_NAME
    from dagster_project.definitions import build_definitions
    from tapeflow.cli import main
    from tapeflow.schemas.records import SIGNAL
    from tapeflow.storage import lake

    dep, sim = chain
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(UNDERLYINGS_NAME, ["sim.BTC"])
    defs = build_definitions("2024-01-01")
    asset = [a for a in defs.assets if ASSET in {k.to_user_string() for k in a.keys}]
    result = dg.materialize(asset, partition_key="2024-01-01|sim.BTC", resources=dep.resources(),
                            instance=instance, raise_on_error=False, selection=[ASSET])
    assert result.success
    stored = lake.read(SIGNAL, dep.lake, venue="sim", symbol="BTC").select(SIGNAL.column_names).sort_by(KEY)
    out = tmp_path / "signals"
    assert main(["signals", "detect", "--format", "options", str(sim / "options"), "--out", str(out)]) == 0
    want = pq.read_table(out).select(SIGNAL.column_names)
    want = want.filter(pc.equal(want.column("kind"), "cross_strike")).sort_by(KEY)
    assert want.num_rows >= 3, "the simulated chain planted no flow the detector finds"
    assert stored.to_pylist() == want.to_pylist()
    meta = materializations(result)[ASSET]["2024-01-01|sim.BTC"]
    assert meta["dagster/row_count"] == want.num_rows and meta["option_trades"] > 0
    check = check_results(result)[(ASSET, CHECK)]
    assert check.passed and check.metadata["episodes"].value > 0
    print({k: v.value for k, v in check.metadata.items()})
    assert check.metadata["recall"].value >= 0.5  # scored for real: the test in tests/signals bounds it
