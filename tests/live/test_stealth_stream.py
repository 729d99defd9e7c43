"""Creep and contraction through the flow's signals stage (``tapeflow.signals.stream_stealth``), fed
a simulated crypto market in micro-batches, equal the batch detectors over the whole day, row for
row: 15 minutes, longer than the look-back (the 10 baseline blocks of one minute and one more), so
the look-back is cut, and a recovery snapshot (pickle) half way."""

from __future__ import annotations

import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.detect import detect_format
from tapeflow.signals.stream import LiveSignals

S = 1_000_000_000
KINDS = ("creep", "contraction")
KEY = [(c, "ascending") for c in ("kind", "side", "ts_event_ns", "detector")]


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from tapeflow.simulator import simulate

    root = tmp_path_factory.mktemp("stealthsim")
    summary = simulate(4242, 1, 15 * 60 * S, root, "crypto", progress=False, episodes_per_hour=8,
                       overlap=True)
    return sorted(summary.files)


@pytest.mark.parametrize("batch_events", [2500])
def test_streaming_creep_and_contraction_equal_the_batch_detectors(day: list[Path],
                                                                  batch_events: int) -> None:
    from tapeflow.live.batching import cut_batches
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    batch = detect_format("sim", day, load(DEFAULT_PATH))
    batch = batch.filter(pc.is_in(batch.column("kind"), pa.array(KINDS))).sort_by(KEY)
    decoded = merge(list(get_format("sim").decode(day)))
    stage = LiveSignals(DEFAULT_PATH)
    batches = list(cut_batches(decoded, batch_events, None))
    parts = []
    for i, b in enumerate(batches):
        if i == len(batches) // 2:
            stage = pickle.loads(pickle.dumps(stage))  # a Bytewax recovery snapshot mid-stream
        parts.append(stage.apply("sim", "SIM-BTCUSDT", b))
    parts.append(stage.close())
    live = pa.concat_tables(parts)
    live = live.filter(pc.is_in(live.column("kind"), pa.array(KINDS))).sort_by(KEY)
    detector = stage.stream.detectors["stealth"]
    counts = {k: pc.sum(pc.equal(batch.column("kind"), k)).as_py() for k in KINDS}
    print(f"{len(batches)} batches: batch {counts}, live {live.num_rows}; look-back from grid row "
          f"{detector.first_row}, {len(detector.grid['ts'])} rows kept")
    assert all(counts.values()), f"the simulated day has no alert of some kind: {counts}"
    assert detector.first_row > 0  # the look-back was cut
    # bounded: 12 one-minute blocks of 100 ms grid rows at most (11 kept + the one filling)
    assert len(detector.grid["ts"]) <= 12 * 600
    assert live.to_pylist() == batch.to_pylist()
