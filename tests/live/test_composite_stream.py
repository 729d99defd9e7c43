"""The stealth composite live (``tapeflow.signals.stream_composite``) equals ``tapeflow signals
detect``, row for row: a simulated crypto market with planted absorption, creep and contraction
(overlap mode, 15 minutes) through the flow's signals stage at two batch sizes, each with a
recovery snapshot (pickle) half way. The composite reads the rows of the stage's withdrawal,
hidden, absorption, creep and contraction detectors, which leave with different delays."""

from __future__ import annotations

import pickle
from pathlib import Path

import pyarrow as pa
import pytest

from tapeflow.signals import stream
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.stream import LiveSignals
from tests.live.stream_feeds import of_kind, overlap_day

S = 1_000_000_000
SYMBOL = "SIM-BTCUSDT"
COMPONENTS = ("withdrawal", "hidden", "absorption", "creep", "contraction")


@pytest.fixture(scope="module")
def day() -> tuple[list[Path], pa.Table]:
    # the day tests/live/test_absorption_stream.py reads too: simulated and detected once per process
    return overlap_day()


@pytest.mark.parametrize("batch_events", [4000, 9000])
def test_the_stealth_composite_through_the_stage_equals_detect(day, batch_events: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from tapeflow.live.batching import cut_batches
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    paths, every = day
    batch = of_kind(every, "stealth")
    # the composite and the detectors of its components (the L3 ones and the L2 iceberg give none)
    monkeypatch.setattr(stream, "LIVE_DETECTORS", {k: stream.LIVE_DETECTORS[k]
                                                   for k in ("l2", "stealth", "absorption", "composite")})
    stage = LiveSignals(DEFAULT_PATH)
    batches = list(cut_batches(merge(list(get_format("sim").decode(paths))), batch_events, None))
    parts = []
    for i, b in enumerate(batches):
        if i == len(batches) // 2:
            stage = pickle.loads(pickle.dumps(stage))  # a Bytewax recovery snapshot mid-stream
        parts.append(stage.apply("sim", SYMBOL, b))
    parts.append(stage.close())
    got = pa.concat_tables(parts)
    live = of_kind(got, "stealth")
    composite = stage.stream.detectors["composite"]
    counts = {k: of_kind(every, k).num_rows for k in COMPONENTS}
    print(f"{len(batches)} batches: components {counts}; stealth batch {batch.num_rows}, "
          f"live {live.num_rows}; {len(composite.rows['ts'])} component alerts kept")
    assert batch.num_rows >= 2, "the simulated day has too few stealth alerts to compare"
    for kind in COMPONENTS:  # what the composite read equals the batch's components
        assert of_kind(got, kind).to_pylist() == of_kind(every, kind).to_pylist(), kind
    assert len(composite.rows["ts"]) < sum(counts.values())  # the judged alerts are let go
    assert live.to_pylist() == batch.to_pylist()


def _rows(spec: list[tuple[str, int, int, float]]) -> pa.Table:
    """Component ``signal`` rows: (kind, side, seconds, confidence)."""
    from tapeflow.schemas.records import SIGNAL

    n = len(spec)
    return SIGNAL.table({
        "ts_event_ns": [t * S for _, _, t, _ in spec], "ts_recv_ns": [t * S + 7 for _, _, t, _ in spec],
        "kind": [k for k, _, _, _ in spec], "side": [s for _, s, _, _ in spec],
        "price_nanos": [0] * n, "size_nanos": [0] * n, "start_ns": [t * S for _, _, t, _ in spec],
        "end_ns": [t * S for _, _, t, _ in spec], "confidence": [c for _, _, _, c in spec],
        "score": [1.0] * n, "flags": [0] * n, "evidence": ["{}"] * n},
        constants={"venue": "sim", "symbol": "X", "detector": "test/1", "params_hash": "0" * 12})


def _grid(seconds: int) -> dict:
    import numpy as np

    return {"ts": np.array([seconds * S]), "recv": np.array([seconds * S + 5])}


def _trades(prints: list[tuple[int, int]]) -> pa.Table:
    """Trades (event second, capture second) of distinct prints."""
    return pa.table({"ts_event_ns": [e * S for e, _ in prints], "ts_recv_ns": [r * S for _, r in prints],
                     "price_nanos": [100 + i for i in range(len(prints))], "size_nanos": [1] * len(prints),
                     "aggressor_side": pa.array([1] * len(prints), pa.uint8())})


@pytest.mark.parametrize("case", ["hidden_late", "same_instant"])
def test_the_composite_waits_for_late_components_and_keeps_the_batch_order(case: str) -> None:
    """A hidden execution leaves the stage after the withdrawal that follows it (its print is
    complete only when the next print comes): the withdrawal's window must still see it. Two
    components at one instant come in the opposite of the batch's order: the window of the first
    in the batch's order must not see the second."""
    from tapeflow.signals import stealth
    from tapeflow.signals.stream import Feed
    from tapeflow.signals.stream_composite import StreamingComposite

    thresholds = load(DEFAULT_PATH)
    params = thresholds.for_instrument("stealth", "X", "crypto")
    composite = StreamingComposite("sim", "X", "crypto")
    if case == "hidden_late":
        withdrawal, hidden = _rows([("withdrawal", 1, 10, 0.9)]), _rows([("hidden", -1, 9, 0.8)])
        feeds = [Feed(_trades([(9, 9)]), _grid(10), None, 1, thresholds, False, (withdrawal,)),
                 Feed(_trades([(11, 11)]), _grid(12), None, 1, thresholds, False, (hidden,))]
        every = [withdrawal, hidden]
    else:  # the stage hands absorption on after withdrawal's rows; detect_tables lists it after
        creep, absorption = _rows([("creep", 1, 5, 0.7)]), _rows([("absorption", -1, 10, 0.6)])
        withdrawal = _rows([("withdrawal", 1, 10, 0.9)])
        feeds = [Feed(None, _grid(5), None, 1, thresholds, False, (creep,)),
                 Feed(None, _grid(10), None, 1, thresholds, False, (absorption, withdrawal))]
        every = [withdrawal, absorption, creep]
    feeds.append(Feed(None, None, None, 1, thresholds, True, ()))
    live = [t for f in feeds for t in composite.add(f)]
    batch = stealth.detect_composite(pa.concat_tables(every), params, "sim", "X").table()
    assert batch.num_rows == 1
    assert pa.concat_tables(live).to_pylist() == batch.to_pylist()
