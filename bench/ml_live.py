"""Live scoring cost: ``tapeflow.ml.live.LivePredictor`` fed one new 1 s grid row per micro-batch (the
worst case: every batch rebuilds the buffer's features and scores it), per model kind.

The goal: a 1 s grid row scored in at most 50 ms of CPU per instrument, so one core keeps up with 20
instruments on the 1 s grid with room to spare.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench import Goal, Report

FIGURES = (
    Goal("live scoring per 1 s grid row (TCN champion)", "ms", 50.0, "no live scoring",
         higher_is_better=False),
)
S = 1_000_000_000
MINUTES = 10


class _Fixed:
    def __init__(self, art: object) -> None:
        self.art = art

    def current(self, venue: str, symbol: str) -> tuple[str, int, object]:
        return "bench", 1, self.art


def run(report: Report) -> None:
    """Simulate a day, train each kind quickly, then time the live scorer grid row by grid row."""
    import pyarrow.compute as pc

    from kernels.ml_train import TrainConfig
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.ml import training_examples
    from tapeflow.ml.artifact import train_artifact
    from tapeflow.ml.dataset import segment
    from tapeflow.ml.examples import ExampleParams
    from tapeflow.ml.live import LivePredictor
    from tapeflow.ml.walkforward import WalkForwardConfig
    from tapeflow.schemas.records import TRADE
    from tapeflow.simulator import simulate
    from tapeflow.wire.capture import merge

    minutes = 3 if report.quick else MINUTES
    with tempfile.TemporaryDirectory() as tmp:
        files = sorted(simulate(11, 1, minutes * 60 * S, Path(tmp), "equity", progress=False).files)
        chunks: list = []
        snaps, _ = snapshots_for_format("sim", files, levels=10, interval_ns=S, on_chunk=chunks.append)
    trades = merge(chunks)[TRADE.name].sort_by("ts_recv_ns")
    params = ExampleParams()
    day = segment(training_examples(snaps, trades), 10, params, "day")
    cfg = WalkForwardConfig(horizon_s=10, train=TrainConfig(max_steps=200))
    venue, symbol = snaps.column("venue")[0].as_py(), snaps.column("symbol")[0].as_py()
    ts = snaps.column("ts_event_ns")
    recv = trades.column("ts_recv_ns")
    report.section(f"live scoring: one new 1 s grid row per micro-batch, {snaps.num_rows} rows ({minutes} "
                   "simulated minutes, one instrument)")
    for kind in ("logreg", "mlp", "tcn"):
        predictor = LivePredictor(_Fixed(train_artifact([day], params, kind, cfg)))
        warm = 30
        for i in range(warm):  # the jitted forward pass compiles on its first shapes
            predictor.apply(venue, symbol, snaps.slice(i, 1), None)
        rows, prev = 0, ts[warm - 1].as_py()
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(warm, snaps.num_rows):
            t = ts[i].as_py()
            mine = trades.filter(pc.and_(pc.greater(recv, prev - S), pc.less_equal(recv, t - S)))
            out, _ = predictor.apply(venue, symbol, snaps.slice(i, 1), mine)
            rows += out.num_rows
            prev = t
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        report.add(f"LivePredictor ({kind})", rows, (cpu, wall), ours=True,
                   note=f"{cpu / max(rows, 1) * 1e3:.1f} ms CPU per grid row")
        if kind == "tcn":
            report.record(FIGURES[0], cpu / max(rows, 1) * 1e3,
                          note=f"{rows} rows, one per batch; up to 150 s of grid rows rebuilt per batch")
