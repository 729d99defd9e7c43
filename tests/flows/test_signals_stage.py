"""The flow's signals stage: ``signal`` rows reach the lake and the signals output, equal row for
row to the batch detectors over the whole capture, and the thresholds file is re-read per batch."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from bytewax.outputs import DynamicSink, StatelessSinkPartition
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


class _Kill(DynamicSink):
    """Aborts the flow once, at the first item whose event time reaches ``at_ns`` (as a crash would:
    the epoch in flight is not committed)."""

    def __init__(self, at_ns: int, fired: list[int]) -> None:
        self.at_ns, self.fired = at_ns, fired

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition:
        return _KillPart(self)


class _KillPart(StatelessSinkPartition):
    def __init__(self, kill: _Kill) -> None:
        self.kill = kill

    def write_batch(self, items: list) -> None:
        for _, table in items:
            if self.kill.fired or "ts_event_ns" not in table.column_names or not table.num_rows:
                continue
            if pc.max(table.column("ts_event_ns")).as_py() >= self.kill.at_ns:
                self.kill.fired.append(self.kill.at_ns)
                raise RuntimeError(f"killed at {self.kill.at_ns}")


def test_a_kill_mid_day_resumed_from_bytewax_recovery_equals_the_uninterrupted_rows(day, batch_signals,
                                                                                    tmp_path: Path) -> None:
    # the flow killed at a random instant of the day and rerun on its recovery store: the signals
    # stage resumes from its snapshot (every detector's state, institutional's day windows
    # included), so the rows of the two runs together are the uninterrupted run's (live == batch,
    # the first test), none missing, none different; an epoch replayed after the kill repeats its rows
    import os
    import random
    from datetime import timedelta

    from bytewax.recovery import RecoveryConfig, init_db_dir

    files, _ = day
    seed = int(os.environ.get("TAPEFLOW_EVAL_SEED", random.randrange(1 << 30)))
    t0 = 1_704_205_800 * S  # the equity preset's start
    at_ns = t0 + random.Random(seed).randrange(90 * S, 420 * S)
    print(f"seed {seed}: killed at +{(at_ns - t0) / S:.1f} s of the 8 simulated minutes")
    (tmp_path / "recovery").mkdir()
    init_db_dir(tmp_path / "recovery", 1)
    fired: list[int] = []
    runs: list[list] = [[], []]
    for k in range(2):
        sinks = MarketSinks(signals=TestingSink(runs[k]), extra=(_Kill(at_ns, fired),))
        flow = build_market_flow(CaptureSource("sim", files, batch_events=2000), sinks,
                                 new_signals=signals_stage(DEFAULT_PATH, baselines=tmp_path / "_baselines"),
                                 raw=False, intervals=())
        recovery = RecoveryConfig(str(tmp_path / "recovery"))
        try:
            run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
        except Exception as exc:  # noqa: BLE001 - Bytewax re-raises the sink's error as its own
            assert k == 0 and "killed at" in repr(exc) + repr(exc.__cause__), exc
    assert fired == [at_ns]

    def rows(items: list) -> list[dict]:
        t = pa.concat_tables([t for _, t in items]) if items else SIGNAL.empty_table()
        return t.filter(pc.is_in(t.column("kind"), pa.array(LIVE_KINDS))).to_pylist()

    want = batch_signals.filter(pc.is_in(batch_signals.column("kind"), pa.array(LIVE_KINDS))).to_pylist()
    first, second = ({repr(r) for r in rows(run)} for run in runs)
    print(f"{len(want)} rows: {len(first)} before the kill, {len(second)} after the resume")
    assert len({repr(r) for r in want}) == len(want)
    assert first - second and second - first  # the rerun resumed mid-day: it neither started over nor ended
    assert first | second == {repr(r) for r in want}
