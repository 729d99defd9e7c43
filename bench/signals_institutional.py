"""Institutional pressure kernels: events/s of each kernel beside its reference, same run.

``fill_flow`` (numba) against ``fill_flow_ref`` (pure Python) on a synthetic L3 tape (adds, fills
and cancels of random orders, two-sided quotes among them); ``day_bucket_baseline`` (JAX) against
``day_bucket_baseline_ref`` (NumPy) on 20 days of 1 s window sums in half-hour buckets. Compiled
kernels are warmed up first; references are timed on a slice where they are slow. Then the live
stage's detector in 2,500-event batches beside the batch detector over the same events.
"""

from __future__ import annotations

import numpy as np

from bench import Report, median_time
from kernels.codes import L3_ADD, L3_CANCEL, L3_FILL
from kernels.signals_institutional import (
    day_bucket_baseline,
    day_bucket_baseline_ref,
    fill_flow,
    fill_flow_ref,
)

EVENTS, DAYS, BINS_PER_DAY, BUCKETS = 1_000_000, 20, 23_400, 48


def run(report: Report) -> None:
    """Time ``fill_flow`` and ``day_bucket_baseline`` and their references; add them to ``report``."""
    rng = np.random.default_rng(0)
    report.section("institutional pressure kernels: numba / JAX vs reference")
    ts = np.cumsum(rng.integers(0, 50_000_000, EVENTS)).astype(np.int64)
    oid = rng.integers(1, EVENTS // 3, EVENTS).astype(np.uint64)
    action = rng.choice([L3_ADD, L3_FILL, L3_CANCEL], EVENTS, p=[0.5, 0.2, 0.3])
    side = rng.integers(0, 2, EVENTS)
    size = rng.integers(1, 500, EVENTS)
    touch = rng.uniform(size=EVENTS) < 0.5
    kw = dict(pair_ns=0, child_fill_ns=3_000_000_000, passive_weight=0.5)
    report.add("tapeflow fill_flow (numba)", EVENTS,
               median_time(lambda: fill_flow(ts, oid, action, side, size, touch, **kw)), ours=True)
    few = EVENTS // 20
    report.add("fill_flow reference (Python)", few,
               median_time(lambda: fill_flow_ref(ts[:few], oid[:few], action[:few], side[:few], size[:few],
                                                 touch[:few], **kw)), ours=False)
    n = DAYS * BINS_PER_DAY
    net = rng.normal(0, 1000, n)
    day = np.repeat(np.arange(DAYS), BINS_PER_DAY)
    bucket = np.tile(np.arange(BINS_PER_DAY) * BUCKETS // BINS_PER_DAY, DAYS)
    report.add("tapeflow day_bucket_baseline (JAX)", n,
               median_time(lambda: day_bucket_baseline(net, day, bucket, DAYS, BUCKETS, 20)), ours=True)
    report.add("day_bucket_baseline reference (NumPy)", n,
               median_time(lambda: day_bucket_baseline_ref(net, day, bucket, DAYS, BUCKETS, 20)), ours=False)
    report.note("events: order events (reference on 1/20), 1 s bins over 20 days of 6.5 h")
    _live(report, ts, oid, action, side, size, touch)


LIVE_EVENTS, LIVE_BATCH = 100_000, 2_500


def _live(report: Report, ts, oid, action, side, size, touch) -> None:
    """The live stage's institutional detector (``StreamingInstitutional``) over the first
    ``LIVE_EVENTS`` of the tape in ``LIVE_BATCH``-event batches, against the batch detector over
    the same events (once, whole)."""
    from tapeflow.signals import institutional
    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.signals.stream_institutional import StreamingInstitutional

    params = load(DEFAULT_PATH).for_instrument("institutional", "SIMA")
    n = LIVE_EVENTS
    ev = {"ts_event_ns": ts[:n] + 1_704_196_800 * 10**9, "order_id": oid[:n], "action": action[:n],
          "side_code": side[:n], "size_nanos": size[:n]}
    ev["ts_recv_ns"] = ev["ts_event_ns"]

    def live() -> None:
        stage = StreamingInstitutional("sim", "X")
        for a in range(0, n, LIVE_BATCH):
            stage.add({c: v[a:a + LIVE_BATCH] for c, v in ev.items()}, touch[a:a + LIVE_BATCH], params,
                      final=a + LIVE_BATCH >= n)

    live()  # compile
    report.add(f"tapeflow StreamingInstitutional ({LIVE_BATCH}-event batches)", n, median_time(live),
               ours=True)
    report.add("institutional.detect over the same events (one call)", n,
               median_time(lambda: institutional.detect(ev, touch[:n], params, "sim", "X")), ours=False)
