"""The flow's signals stage: ``signal`` rows reach the lake and the signals output, equal row for
row to the batch detectors over the whole capture, and the thresholds file is re-read per batch."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from bytewax.testing import TestingSink, run_main

from flows.market import MarketSinks, build_market_flow, signals_stage
from flows.sinks import TableSink
from flows.sources import CaptureSource
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import SIGNAL
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.detect import detect_format
from tapeflow.signals.stream import LiveSignals
from tapeflow.storage import lake

S = 1_000_000_000
KEY = [(c, "ascending") for c in ("venue", "symbol", "kind", "side", "ts_event_ns", "detector")]
# the stage's detectors
LIVE_KINDS = ("whale", "withdrawal", "spoofing", "iceberg", "spike", "hidden", "wall", "creep", "contraction",
              "absorption", "stealth", "institutional")
L3_KINDS = ("spoofing", "iceberg")


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    from tapeflow.simulator import simulate

    root = tmp_path_factory.mktemp("sigsim")
    # 8 simulated minutes: longer than the look-back (5 x 1 min of 100 ms grid rows), so the
    # stage cuts its look-back several times; 12 episodes per hour so some are planted
    summary = simulate(7311, 1, 8 * 60 * S, root, "equity", progress=False, episodes_per_hour=12)
    return sorted(summary.files), root


@pytest.fixture(scope="module")
def batch_signals(day) -> pa.Table:
    files, _ = day
    return detect_format("sim", files, load(DEFAULT_PATH))


def test_flow_signals_reach_the_lake_and_the_signals_output_equal_to_batch(day, batch_signals,
                                                                         tmp_path: Path) -> None:
    files, _ = day
    seen: list = []
    sinks = MarketSinks(tables=TableSink(lake_root=tmp_path / "lake"), signals=TestingSink(seen))
    flow = build_market_flow(CaptureSource("sim", files, batch_events=3000), sinks,
                             new_signals=signals_stage(DEFAULT_PATH), raw=False, intervals=())
    run_main(flow)
    assert {name for name, _ in seen} == {SIGNAL.name}
    live = pa.concat_tables([t for _, t in seen]).sort_by(KEY)
    stored = lake.read(SIGNAL, tmp_path / "lake").select(SIGNAL.column_names).sort_by(KEY)
    every = batch_signals
    batch = every.filter(pc.is_in(every.column("kind"), pa.array(LIVE_KINDS))).sort_by(KEY)
    l3 = batch.filter(pc.is_in(batch.column("kind"), pa.array(L3_KINDS))).num_rows
    print(f"signals: {batch.num_rows} batch ({l3} spoofing / iceberg), {live.num_rows} live")
    assert l3 > 0, "the simulated day planted no spoof or iceberg the detectors find"
    assert batch.num_rows > l3, "the simulated day planted no whale or withdrawal the detectors find"
    assert live.to_pylist() == batch.to_pylist()
    assert stored.to_pylist() == batch.to_pylist()


@pytest.mark.parametrize("batch_events", [250, 700, 4000])
def test_the_stage_carries_the_l3_detectors_across_micro_batches(day, batch_signals,
                                                                 batch_events: int) -> None:
    # every live detector fed the simulated L3 market's decoded records in micro-batches: for
    # spoofing and icebergs the per-order state, the iceberg chains, the layers looked back on and
    # the depth baseline (cut after 5 one-minute blocks of the 8 minutes) carried; row for row
    # equal to detect_format, through a pickle round trip of the stage half way
    from tapeflow.live.batching import cut_batches
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    files, _ = day
    decoded = merge(list(get_format("sim").decode(files)))
    stage = LiveSignals(DEFAULT_PATH)
    batches = list(cut_batches(decoded, batch_events, None))
    parts = []
    for i, b in enumerate(batches):
        if i == len(batches) // 2:
            stage = pickle.loads(pickle.dumps(stage))  # a Bytewax recovery snapshot mid-stream
        parts.append(stage.apply("sim", "SIMA", b))
    parts.append(stage.close())
    live = pa.concat_tables(parts)
    live = live.filter(pc.is_in(live.column("kind"), pa.array(LIVE_KINDS))).sort_by(KEY)
    batch = batch_signals.filter(pc.is_in(batch_signals.column("kind"), pa.array(LIVE_KINDS))).sort_by(KEY)
    l3 = batch.filter(pc.is_in(batch.column("kind"), pa.array(L3_KINDS))).num_rows
    orders = stage.stream.detectors["orders"]
    print(f"{len(parts)} batches: {batch.num_rows} rows ({l3} spoofing / iceberg), {live.num_rows} live; "
          f"depth baseline from grid row {orders.depth_first_row}")
    assert orders.depth_first_row > 0  # the look-back was cut
    assert l3 > 0
    for kind in ("spike", "hidden", "wall"):
        assert pc.sum(pc.equal(batch.column("kind"), kind)).as_py(), f"the simulated day has no {kind} alert"
    # the L2 look-back is bounded (no wall stands at the end): 5 whole blocks of 600 grid rows
    # before the newest row's block
    l2 = stage.stream.detectors["l2"]
    assert l2.first_row > 0 and len(l2.grid["ts"]) <= 6 * 600
    assert (l2.trades["ts_recv_ns"] > l2.grid["recv"][0]).all()
    assert live.to_pylist() == batch.to_pylist()


def test_an_edited_thresholds_file_is_taken_and_a_bad_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.toml"
    shutil.copy(DEFAULT_PATH, path)
    stage = LiveSignals(path, min_interval_s=0.0)
    before = stage.reloader.current.for_instrument("whale", "SIMA")
    path.write_text(DEFAULT_PATH.read_text().replace("block_x_median = 20.0", "block_x_median = 25.0"))
    stage.apply("sim", "SIMA", {})
    assert stage.reloader.reloads == 1
    assert stage.reloader.current.for_instrument("whale", "SIMA")["block_x_median"] == 25.0
    assert before["block_x_median"] == 20.0
    path.write_text("default_preset = [\n")
    stage.apply("sim", "SIMA", {})
    assert stage.reloader.reloads == 1 and len(stage.rejected) == 1
    assert "keeping the previous ones" in stage.rejected[0]
    assert stage.reloader.current.for_instrument("whale", "SIMA")["block_x_median"] == 25.0
    # Bytewax recovery snapshots the stage: it pickles, thresholds and rejections with it
    again = pickle.loads(pickle.dumps(stage))
    assert again.reloader.current == stage.reloader.current and again.rejected == stage.rejected


def test_a_bad_thresholds_file_fails_the_flow_at_build_time(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("default_preset = 3\n")
    with pytest.raises(ConfigError):
        signals_stage(path)
