"""The book stage: fixed cost per micro-batch (live) and whole-partition rebuild throughput (batch).

Not a test: timings print, nothing fails. Inputs (``TAPEFLOW_REAL_DATA``, default ``../shared/data``):

- L2: the Binance USD-M BTCUSDT capture, 445,522 depth rows (decoded by tapeflow);
- L3: the CME ES MBO day (68,792 order events), tiled ``ES_COPIES`` times for the rebuild rows
  (each copy shifted by whole days, so every copy starts with its own snapshot).

**Per micro-batch** (the live flow's book stage, ``BookStage.apply``): after a 20,000-row warm-up
of the same instrument, ``CALLS`` consecutive batches of 1, 10 and 100 rows; the figure is the
median wall time of the calls that emitted nothing (no quote, no snapshot: the fixed cost every
batch pays), and the row also gives the median of all calls. **Rebuild** (the batch entry points,
``BookStage.replay`` over a whole partition): ``book_snapshots`` and ``quotes_from_deltas`` on the
capture, ``l3_book_snapshots`` on the tiled ES day; median of 3 after a warm-up (CPU time).

Run alone: ``python -m bench.book_stage`` (``make bench`` runs every module).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pyarrow as pa

from bench import Report, median_time

SECOND_NS = 1_000_000_000
DAY_NS = 86_400 * SECOND_NS
CAPTURE = "binance/usdm_btcusdt_20240808.gz"
ES_MBO = "databento/glbx/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
ES_COPIES = 5
WARMUP_ROWS = 20_000
CALLS = 2_000
SIZES = (1, 10, 100)
# this module run on the code before this work (39260b0), same machine and session (load 0.5 for
# the per-batch figures, 4-9 for the rebuilds: ranges over runs)
BEFORE_US = {"l2": "91 us", "l3": "162 us"}
BEFORE_RATE = {"book_snapshots": "7.6-8.0 M/s", "quotes_from_deltas": "6.1-8.1 M/s",
               "l3_book_snapshots": "1.7-1.9 M/s"}
GOAL_US = 15.0


def _root() -> Path:
    return Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data"))


def _deltas() -> pa.Table | None:
    path = _root() / CAPTURE
    if not path.exists():
        return None
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    return merge(list(get_format("binance").decode([path])))["book_delta"].combine_chunks()


def _events() -> pa.Table | None:
    path = _root() / ES_MBO
    if not path.exists():
        return None
    from tapeflow.venues.databento.parse import decode_all

    return decode_all([path])["order_event"].combine_chunks()


def _tiled(events: pa.Table, copies: int) -> pa.Table:
    parts = []
    for k in range(copies):
        t = events
        for col in ("ts_event_ns", "ts_recv_ns"):
            shifted = pa.array(events.column(col).to_numpy() + k * DAY_NS, pa.int64())
            t = t.set_column(t.schema.get_field_index(col), col, shifted)
        parts.append(t)
    return pa.concat_tables(parts).combine_chunks()


def _per_batch(report: Report, kind: str, name: str, table: pa.Table) -> None:
    from tapeflow.book.stage import BookStage

    for size in SIZES:
        stage = BookStage(kind, 10, SECOND_NS)
        stage.apply({name: table.slice(0, WARMUP_ROWS)})
        calls = min(CALLS, (table.num_rows - WARMUP_ROWS) // size)
        batches = [{name: table.slice(WARMUP_ROWS + i * size, size)} for i in range(calls)]
        every, quiet = [], []
        c0 = time.process_time()
        for batch in batches:
            t0 = time.perf_counter()
            out = stage.apply(batch)
            dt = time.perf_counter() - t0
            every.append(dt)
            if not (out["quote"].num_rows or out["book_snapshot"].num_rows):
                quiet.append(dt)
        cpu = time.process_time() - c0
        quiet_us = statistics.median(quiet) * 1e6 if quiet else float("nan")
        report.add(f"BookStage.apply {kind} {size}-event batches", calls * size, (cpu, sum(every)), ours=True,
                   note=f"median {statistics.median(every) * 1e6:,.1f} us/batch; {quiet_us:,.1f} us over the "
                        f"{len(quiet)} of {calls} that emit nothing")
        if size == 1 and quiet:
            report.figure(f"book stage fixed cost, 1-event {kind.upper()} batch", quiet_us, "us",
                          goal=GOAL_US, before=BEFORE_US[kind], higher_is_better=False,
                          note="median wall of the batches that emit nothing")


def _rebuild(report: Report, label: str, events: int, fn: object, before: str) -> None:
    cost = median_time(fn)  # type: ignore[arg-type]
    row = report.add(f"{label} (whole partition)", events, cost, ours=True,
                     note=f"{cost[0] * 1e3:,.1f} ms cpu")
    report.figure(f"{label} rebuild", row.events_per_s / 1e6, "M events/s", goal=None, before=before,
                  note="whole partition, median of 3")


def run(report: Report) -> None:
    """Time the book stage per micro-batch and the batch rebuilds."""
    from tapeflow.book.l2 import book_snapshots, quotes_from_deltas
    from tapeflow.book.l3 import l3_book_snapshots

    report.section("book stage: cost per micro-batch (live) and whole-partition rebuild (batch)")
    deltas, events = _deltas(), _events()
    if deltas is None:
        report.note(f"{CAPTURE} not found (TAPEFLOW_REAL_DATA): L2 rows skipped")
    if events is None:
        report.note(f"{ES_MBO} not found (TAPEFLOW_REAL_DATA): L3 rows skipped")
    if deltas is not None:
        _per_batch(report, "l2", "book_delta", deltas)
    if events is not None:
        _per_batch(report, "l3", "order_event", events)
    if deltas is not None:
        n = deltas.num_rows
        _rebuild(report, "book_snapshots L2 1 s grid", n,
                 lambda: book_snapshots(deltas, levels=10, interval_ns=SECOND_NS),
                 BEFORE_RATE["book_snapshots"])
        _rebuild(report, "quotes_from_deltas", n, lambda: quotes_from_deltas(deltas),
                 BEFORE_RATE["quotes_from_deltas"])
    if events is not None:
        tiled = _tiled(events, ES_COPIES)
        _rebuild(report, f"l3_book_snapshots ES MBO x{ES_COPIES} 1 s grid", tiled.num_rows,
                 lambda: l3_book_snapshots(tiled, levels=10, interval_ns=SECOND_NS),
                 BEFORE_RATE["l3_book_snapshots"])
    report.note("per batch: wall time (the figure a live flow pays); rebuild: CPU time, median of 3")


if __name__ == "__main__":
    rep = Report()
    run(rep)
    print(rep.render())
