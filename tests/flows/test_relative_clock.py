"""Replaying an old capture live: against today's clock every batch of the 2024 Binance capture is
years late and the absolute health stage degrades the instrument at once; the relative one
(``TAPEFLOW_LIVE_CLOCK=relative``) judges latency against the feed's own recent level, so it stays
quiet through a constant offset and a 10x replay speed, and still trips on a real stall."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.live.batching import cut_batches
from tapeflow.live.health import FeedHealth, LatencyBreaker
from tapeflow.live.relative import RelativeHealth
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import binance_prefix

SECOND = 1_000_000_000
TODAY_NS = 2 * 365 * 86_400 * SECOND  # how far "now" is ahead of the capture's own clock
PROCESSING_NS = 20_000_000  # the flow reaches a batch 20 ms after its last row was captured


def _batches(speed: float = 1.0) -> list[dict[str, pa.Table]]:
    tables = merge(list(get_format("binance").decode([binance_prefix()])))
    if speed != 1.0:
        # a replay at `speed` compresses capture time: ts_recv - ts_event drifts by (1/speed - 1) s per s
        t0 = min(int(t["ts_recv_ns"].to_numpy().min()) for t in tables.values() if t.num_rows)
        for name, t in tables.items():
            recv = t0 + ((t["ts_recv_ns"].to_numpy() - t0) / speed).astype(np.int64)
            i = t.column_names.index("ts_recv_ns")
            tables[name] = t.set_column(i, t.schema.field(i), pa.array(recv, pa.int64()))
    return list(cut_batches(tables, 500, SECOND))


def _run(health: object, batches: list[dict[str, pa.Table]], stall: range = range(0)) -> list[dict]:
    rows = []
    for k, batch in enumerate(batches):
        last = max(int(t["ts_recv_ns"].to_numpy().max()) for t in batch.values())
        now = last + TODAY_NS + PROCESSING_NS + (3 * SECOND if k in stall else 0)
        rows += health.observe(batch, now_ns=now).to_pylist()  # type: ignore[attr-defined]
    return rows


@pytest.mark.realdata
def test_absolute_clock_degrades_an_old_capture_the_relative_one_does_not() -> None:
    batches = _batches()
    assert len(batches) > 40
    absolute = _run(FeedHealth(LatencyBreaker(SECOND)), batches)
    assert [r["state"] for r in absolute].count("degraded") == 1  # at once, and never recovers
    assert not [r for r in absolute if r["state"] == "recovered"]
    relative = RelativeHealth(LatencyBreaker(SECOND))
    assert _run(relative, batches) == []
    feed_ns, lag_ns = relative.offsets_ns("binance-usdm")
    assert abs(lag_ns - TODAY_NS - PROCESSING_NS) < SECOND // 1000
    assert -2 * SECOND < feed_ns < 0  # this capture's clock runs ~1.2 s behind Binance's


@pytest.mark.realdata
def test_relative_clock_follows_a_fast_replay_and_trips_on_a_stall() -> None:
    fast = _batches(speed=10)
    assert _run(RelativeHealth(LatencyBreaker(SECOND)), fast) == []
    batches = _batches()
    stall = range(20, 26)  # six batches reach the flow 3 s late
    rows = _run(RelativeHealth(LatencyBreaker(SECOND, recover_batches=3)), batches, stall)
    assert [r["state"] for r in rows] == ["degraded", "recovered"]
    first = min(int(t["ts_recv_ns"].to_numpy().min()) for t in batches[stall.start].values())
    assert rows[0]["ts_recv_ns"] == first
    # recovered with the third good batch after the stall
    assert rows[1]["until_ns"] == max(int(t["ts_recv_ns"].to_numpy().max())
                                      for t in batches[stall.stop + 2].values()) + 1
