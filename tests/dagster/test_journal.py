"""A day rebuilt from the live journal equals what the live stages emit for the same frames.

The first 20,000 frames of the real Binance USD-M capture are journaled as a live connector
would (``tapeflow.journal.Journal``); the landing sensor finds the journal day, the run rebuilds
it, and the live flow's own stages (``BookStage``, ``LiveBars``) fed the same frames in
micro-batches emit the same snapshots and time bars.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.conftest import need
from tests.dagster.conftest import Deployment, check_results, materializations, materialize

FRAMES = 20_000
DAY = "2024-08-08"


@pytest.mark.realdata
def test_journal_day_equals_the_live_stages(real_data: Path, tmp_path: Path) -> None:
    from dagster_project.sensors import landing_sensor
    from tapeflow.book.stage import BookStage
    from tapeflow.derived import LiveBars
    from tapeflow.journal import Journal
    from tapeflow.live.frames import RawFrame
    from tapeflow.schemas import concat
    from tapeflow.schemas.records import BAR, BBO, BOOK_DELTA, BOOK_SNAPSHOT, TRADE
    from tapeflow.storage import lake
    from tapeflow.venues import get_format

    with gzip.open(need(real_data / "binance" / "usdm_btcusdt_20240808.gz"), "rb") as f:
        lines = [next(f) for _ in range(FRAMES)]
    frames = []
    for line in lines:
        recv, _, payload = line.rstrip(b"\n").partition(b" ")
        rest = b"lastUpdateId" in payload[:20]
        frames.append(RawFrame("binance-usdm", int(recv), payload, "rest" if rest else "ws"))
    with Journal(tmp_path / "journal") as journal:
        journal.append(frames)
    [journal_file] = Journal(tmp_path / "journal").files("binance-usdm")

    dep = Deployment(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    tick = landing_sensor(dg.build_sensor_context(instance=instance, resources=dep.resources()))
    [add] = tick.dynamic_partitions_requests
    instance.add_dynamic_partitions("instruments", list(add.partition_keys))
    [request] = tick.run_requests
    assert request.partition_key == f"{DAY}|binance-usdm.BTCUSDT"
    result = materialize(dep, instance, partition_key=request.partition_key)
    assert result.success
    meta = materializations(result)
    # independent: the trade frames of the journal
    trade_frames = sum(b'@trade"' in line for line in lines)
    assert meta["trades"][request.partition_key]["dagster/row_count"] == trade_frames
    evaluations = check_results(result)
    assert [k for k, ev in evaluations.items() if not ev.passed and ev.severity.value == "ERROR"] == []
    # the REST snapshot arrives after newer diffs: the BBO rows built from those diffs wait for it
    # (F_MAYBE_BAD_BOOK) and leave the sequence chain, so the re-anchor's step back is no warning
    [rest_ns] = [frame.ts_recv_ns for frame in frames if frame.channel == "rest"]
    bbo = lake.read(BBO, dep.lake, venue="binance-usdm", symbol="BTCUSDT", date=DAY)
    waiting = sum(ts < rest_ns for ts in bbo.column("ts_recv_ns").to_pylist())
    monotonic = evaluations[("bbo", "sequence_monotonic")]
    assert monotonic.passed and monotonic.metadata["unexpected_count"].value == 0
    assert monotonic.metadata["details"].value["rows_left_out"] == waiting > 0

    stage, bars = BookStage("auto"), LiveBars()
    snaps, live_bars = [], []
    for chunk in get_format("binance").decode([journal_file]):
        deltas = chunk.get(BOOK_DELTA)
        for start in range(0, deltas.num_rows, 2_000):
            snaps.append(stage.apply({BOOK_DELTA.name: deltas.slice(start, 2_000)})[BOOK_SNAPSHOT.name])
        live_bars.append(bars.add(chunk.get(TRADE)))
    snaps.append(stage.close()[BOOK_SNAPSHOT.name])
    live_bars.append(bars.close())
    batch_snaps = lake.read(BOOK_SNAPSHOT, dep.lake, venue="binance-usdm", symbol="BTCUSDT", date=DAY)
    assert batch_snaps.num_rows > 60 and batch_snaps.equals(concat(BOOK_SNAPSHOT, snaps))

    batch_bars = lake.read(BAR, dep.lake, venue="binance-usdm", symbol="BTCUSDT", date=DAY)
    batch_bars = batch_bars.filter(pc.invert(pc.match_substring(batch_bars.column("interval"), ":")))
    final = _final(concat(BAR, live_bars))
    key = [("interval", "ascending"), ("ts_event_ns", "ascending")]
    assert batch_bars.num_rows == final.num_rows > 100
    batch_bars, final = (t.drop_columns(["revision"]).sort_by(key) for t in (batch_bars, final))
    assert batch_bars.equals(final)


def _final(bars: pa.Table) -> pa.Table:
    last: dict[tuple[str, int], int] = {}
    for i, (interval, ts) in enumerate(zip(bars.column("interval").to_pylist(),
                                           bars.column("ts_event_ns").to_pylist(), strict=True)):
        last[(interval, ts)] = i  # revisions come in order: the last one is final
    return bars.take(pa.array(np.array(sorted(last.values()), np.int64)))
