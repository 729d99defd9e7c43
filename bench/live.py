"""Live flow: throughput per Bytewax worker and event-to-bar/metric latency at paced rates.

Input: the real Binance USD-M BTCUSDT capture (depth diffs, trades, bookTickers), decoded by
tapeflow. Sections, all on one Bytewax worker in this process:

- throughput of the market flow (``flows.market.build_market_flow``: book, 1s snapshots, bars on
  every standard interval, metrics, one item per table) fed pre-decoded 10k-event micro-batches,
  against a per-event Bytewax flow keeping a cryptofeed-style dict book (one item per event);
- the same flow end to end from the replay server on loopback: the real ``BinanceClient``
  (websocket, REST snapshot, JSON decode, sync) through ``LiveSource``;
- the ClickHouse sink (chdb, idempotent) on the flow's decoded rows;
- latency: events arrive on a schedule at 10k and 100k events/s (1 ms ticks) and every poll of the
  source hands the flow all that has arrived as one micro-batch (as a connector does); for every
  ``bar`` and ``metric`` item reaching the sink, latency = arrival at the sink - scheduled arrival
  of the oldest event in the batch being processed (an upper bound for the event that closed the
  bar or grid point; lag behind the schedule counts, so a flow that cannot keep up shows it).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from bench import Report

EVENT_TABLES = ("book_delta", "trade", "quote")
THROUGHPUT_BATCH = 10_000
REPLAY_LINES = 20_000
PACED = ((10_000, 4.0), (100_000, 3.0))  # (events/s, seconds)
TICK_NS = 1_000_000
CAPTURE = "binance/usdm_btcusdt_20240808.gz"


def _capture() -> Path | None:
    path = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data")) / CAPTURE
    return path if path.exists() else None


def _events(tables: dict[str, pa.Table]) -> int:
    return sum(t.num_rows for n, t in tables.items() if n in EVENT_TABLES)


class _CountPartition(StatelessSinkPartition[Any]):
    def __init__(self, on_items: Callable[[list[Any]], None]) -> None:
        self._on_items = on_items

    def write_batch(self, items: list[Any]) -> None:
        self._on_items(items)


class _Count(DynamicSink[Any]):
    """Counts items (and lets a callback see them): measures the flow, not a store."""

    def __init__(self, on_items: Callable[[list[Any]], None] | None = None) -> None:
        self.items = 0
        self.last_ns = 0
        self._cb = on_items

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountPartition:
        def seen(items: list[Any]) -> None:
            self.items += len(items)
            self.last_ns = time.perf_counter_ns()
            if self._cb is not None:
                self._cb(items)
        return _CountPartition(seen)


def _market(source: Any, sink: Any) -> Dataflow:
    from flows.market import MarketSinks, build_market_flow

    return build_market_flow(source, MarketSinks(tables=sink))


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - t0


def _throughput(report: Report, decoded: dict[str, pa.Table]) -> None:
    from flows.sources import cut_batches

    batches = list(cut_batches({n: decoded[n] for n in EVENT_TABLES}, THROUGHPUT_BATCH, None))
    n = _events(decoded)
    run_main(_market(TestingSource(batches[:3]), _Count()))  # numba compile and imports, untimed
    t = _timed(lambda: run_main(_market(TestingSource(batches), _Count())))
    report.add("tapeflow market flow, 10k-event batches (book+snapshots+15 bar intervals+metrics)", n, t,
               ours=True, note=f"{len(batches)} batches, 1 worker")
    deltas = decoded["book_delta"]
    limit = min(deltas.num_rows, 200_000)
    cols = [deltas[c].to_numpy()[:limit] for c in ("side", "price_nanos", "size_nanos")]
    events = [("BTCUSDT", (int(s), int(p), int(z))) for s, p, z in zip(*cols, strict=True)]
    t = _timed(lambda: run_main(_dict_book_flow(events)))
    report.add("per-event Bytewax flow, dict book + best bid/ask (cryptofeed style)", limit, t, ours=False,
               note="one item per event")


def _dict_book_flow(events: list[tuple[str, tuple[int, int, int]]]) -> Dataflow:
    Book = dict[str, Any]

    def apply(book: Book | None, ev: tuple[int, int, int]) -> tuple[Book, tuple[int | None, int | None]]:
        book = book or {"B": {}, "A": {}, "best": {"B": None, "A": None}}
        side, price, size = ev
        key = "B" if side == 66 else "A"
        levels = book[key]
        if size:
            levels[price] = size
        else:
            levels.pop(price, None)
        best = book["best"][key]
        if size and (best is None or (price > best if key == "B" else price < best)):
            book["best"][key] = price
        elif not size and price == best:
            book["best"][key] = (max(levels) if key == "B" else min(levels)) if levels else None
        return book, (book["best"]["B"], book["best"]["A"])

    flow = Dataflow("dict_book")
    stream = op.input("in", flow, TestingSource(events))
    op.output("out", op.stateful_map("book", stream, apply), _Count())
    return flow


def _replay(report: Report, path: Path) -> None:
    import gzip
    import signal
    import subprocess
    import sys

    from flows.sources import LiveSource
    from tapeflow.live import ConnectorSettings

    prefix = Path(tempfile.mkdtemp(prefix="tapeflow-bench-")) / "usdm_prefix.txt"
    with gzip.open(path, "rb") as src, open(prefix, "wb") as dst:
        for i, line in enumerate(src):
            if i == REPLAY_LINES:
                break
            dst.write(line)
    # the server in a process of its own, as a venue would be: this process's CPU is the flow's
    server = subprocess.Popen([sys.executable, "-m", "tapeflow.cli", "replay-server", "--format", "binance",
                               str(prefix), "--as-fast-as-possible", "--progress-every", "60s"],
                              stdout=subprocess.PIPE, text=True)
    try:
        ws = rest = ""
        assert server.stdout is not None
        for line in server.stdout:
            if "websocket" in line:
                ws, rest = line.split()[2], line.split()[4]
                break
        rows = {"events": 0, "batches": 0}

        def count(items: list[Any]) -> None:
            rows["events"] += sum(t.num_rows for name, t in items if name in EVENT_TABLES)
            rows["batches"] += sum(name == "book_delta" for name, _ in items)

        sink = _Count(count)
        source = LiveSource("binance", ["BTCUSDT"], endpoint=ws, rest_endpoint=rest,
                            idle_stop_ns=1_000_000_000, client_options={"trade_stream": "trade",
                                            "settings": ConnectorSettings(seed=1, stale_after_s=30)})
        c0, t0 = time.process_time(), time.perf_counter_ns()
        run_main(_market(source, sink))
        cpu = time.process_time() - c0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    wall = (sink.last_ns - t0) / 1e9  # to the last output: the idle stop after the tape is not work
    report.add("tapeflow market flow from the replay server (BinanceClient, JSON decode, sync)",
               rows["events"], (cpu, wall), ours=True,
               note=f"{REPLAY_LINES:,} capture lines, server in its own process on loopback; "
                    f"{rows['batches']:,} micro-batches of book deltas")


def _sink(report: Report, decoded: dict[str, pa.Table]) -> None:
    from flows.sinks import ClickHouseSink

    deltas = decoded["book_delta"].slice(0, 200_000)
    batches = [deltas.slice(a, THROUGHPUT_BATCH) for a in range(0, deltas.num_rows, THROUGHPUT_BATCH)]
    root = Path(tempfile.mkdtemp(prefix="tapeflow-bench-ch-"))
    part = ClickHouseSink(f"chdb://{root}").build_part("bench", "0", None)
    try:
        part.write_batch(batches[:1])
        t = _timed(lambda: part.write_batch(batches[1:]))
    finally:
        part.close()
    report.add("ClickHouseSink (chdb, dedup token per 10k-row batch)", deltas.num_rows - batches[0].num_rows,
               t, ours=True, note="book_delta rows inserted")


class _PacedPartition(StatelessSourcePartition[dict[str, pa.Table]]):
    """Events "arrive" tick by tick on schedule; each poll emits everything that has arrived since the
    last one as one micro-batch (as a connector hands over every frame it has), so a slow step makes
    the next batch bigger instead of letting a queue grow."""

    def __init__(self, ticks: list[dict[str, pa.Table]], tick_ns: int, scheduled: list[int]) -> None:
        self._ticks, self._tick_ns, self._scheduled = ticks, tick_ns, scheduled
        self._t0 = time.perf_counter_ns() + 50 * tick_ns
        self._k = 0

    def next_batch(self) -> list[dict[str, pa.Table]]:
        if self._k >= len(self._ticks):
            raise StopIteration
        now = time.perf_counter_ns()
        due = min(len(self._ticks), (now - self._t0) // self._tick_ns + 1)
        if due <= self._k:
            return []
        arrived = self._ticks[self._k:due]
        # the oldest event of the batch has waited longest: latencies are measured from its arrival
        self._scheduled.append(self._t0 + self._k * self._tick_ns)
        self._k = due
        names = {n for t in arrived for n in t}
        return [{n: pa.concat_tables([t[n] for t in arrived if n in t]) for n in names}]

    def next_awake(self) -> datetime | None:
        wait_ns = self._t0 + self._k * self._tick_ns - time.perf_counter_ns()
        return datetime.fromtimestamp(time.time() + max(wait_ns, 0) / 1e9, UTC)


class _Paced(DynamicSource[dict[str, pa.Table]]):
    def __init__(self, ticks: list[dict[str, pa.Table]], tick_ns: int) -> None:
        self.ticks, self.tick_ns = ticks, tick_ns
        self.scheduled: list[int] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PacedPartition:
        return _PacedPartition(self.ticks, self.tick_ns, self.scheduled)


def _latency(report: Report, decoded: dict[str, pa.Table]) -> None:
    from flows.sources import cut_batches

    tables = {n: decoded[n] for n in EVENT_TABLES}
    run_main(_market(TestingSource(list(cut_batches(tables, 1000, None))[:3]), _Count()))  # compile, untimed
    for rate, seconds in PACED:
        per_tick = max(1, rate * TICK_NS // 1_000_000_000)
        ticks = list(cut_batches(tables, per_tick, None))[: int(seconds * 1e9 / TICK_NS)]
        source = _Paced(ticks, TICK_NS)
        samples: list[int] = []

        def seen(items: list[Any], source: _Paced = source, samples: list[int] = samples) -> None:
            now = time.perf_counter_ns()
            oldest = source.scheduled[-1]
            samples.extend(now - oldest for name, _ in items if name in ("bar", "metric"))

        c0, t0 = time.process_time(), time.perf_counter()
        run_main(_market(source, _Count(seen)))
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        events = sum(_events(b) for b in ticks)
        lat = np.asarray(samples) / 1e6
        p50, p99 = (np.percentile(lat, [50, 99]) if len(lat) else (float("nan"), float("nan")))
        report.add(f"paced {rate:,} events/s: event-to-bar/metric p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                   events, (cpu, wall), ours=True,
                   note=f"{len(lat)} bar/metric items, {len(source.scheduled)} batches "
                        f"(mean {events / max(1, len(source.scheduled)):.0f} events)")


def run(report: Report) -> None:
    """Time the live flow (see the module docstring); real capture needed, else a note says why."""
    report.section("live flow: events/s per Bytewax worker (Binance USD-M capture)")
    path = _capture()
    if path is None:
        report.note(f"skipped: {CAPTURE} not found under TAPEFLOW_REAL_DATA")
        return
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    decoded = merge(list(get_format("binance").decode([path])))
    counts = ", ".join(f"{n} {decoded[n].num_rows:,}" for n in EVENT_TABLES)
    report.note(f"{_events(decoded):,} events ({counts})")
    _throughput(report, decoded)
    _replay(report, path)
    _sink(report, decoded)
    report.section("live flow: latency at paced rates (1 worker)")
    _latency(report, decoded)
    report.note("latency: sink arrival - scheduled arrival of the OLDEST event of the batch being processed "
                "(an upper bound for the event that closed the bar/grid point); events arrive in 1 ms ticks "
                "and each poll takes all that arrived; rates: events / run time including the pacing")
