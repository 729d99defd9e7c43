"""Live flow: fixed cost per micro-batch, throughput per Bytewax worker, capture replays, the
websocket path from the replay server, cold start, and event-to-bar/metric latency at paced rates.

Input: the real Binance USD-M BTCUSDT capture (depth diffs, trades, bookTickers), decoded by
tapeflow, the LOBSTER AMZN day and a simulated ``sim`` feed. Sections, all on one Bytewax worker
in this process (sinks: a counting sink, so the flow is measured, not a store; the ClickHouse sink
is timed on its own):

- fixed cost per micro-batch through every stage (health, route, book, degraded, bars, metrics,
  the items to the sinks): a stream of 1-event batches after a warm-up prefix, per batch, minus
  the per-event cost of 10k-event batches;
- throughput on pre-decoded 10k-event batches, against a per-event Bytewax flow with a
  cryptofeed-style dict book (one item per event);
- capture replays through ``CaptureSource`` as ``tapeflow live --capture`` runs them (decode
  included, and the flow alone): the Binance capture, the LOBSTER AMZN day and a simulated
  ``sim`` feed; for LOBSTER and ``sim`` also the decode alone, block path and per-line path;
- the same flow from the replay server on loopback: the real ``BinanceClient`` (websocket,
  journal, REST snapshot, JSON decode, sync) through ``LiveSource``, and the server alone;
- cold start: seconds until ``tapeflow live --capture`` has its first output, numba cache empty
  and warm;
- latency: events arrive on a schedule at 10k and 100k events/s (1 ms ticks) and every poll of the
  source hands the flow all that has arrived as one micro-batch (as a connector does); latency =
  arrival at the sink - scheduled arrival of the oldest event of the batch being processed.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from bench import Report, median_time

EVENT_TABLES = ("book_delta", "trade", "quote")
THROUGHPUT_BATCH = 10_000
WARM_EVENTS = 200_000  # state built before the tiny batches (a book of the real depth, open bars)
TINY_BATCHES = 2_000
CAPTURE = "binance/usdm_btcusdt_20240808.gz"
LOBSTER = "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_1/AMZN_2012-06-21_34200000_57600000_{}_1.csv"
LOBSTER_MESSAGES = 57_515
SIM_SEED, SIM_SPAN_NS = 3, 10 * 60 * 1_000_000_000  # one simulated crypto instrument, ~180k events
# measured with the per-line sim decoder (round 2, loaded 2-core machine): decode 3.1 s + flow 0.33 s
SIM_BEFORE = "0.05 M events/s"


def _data(rel: str) -> Path:
    return Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data")) / rel


def _events(tables: dict[str, pa.Table]) -> int:
    return sum(t.num_rows for n, t in tables.items() if n in EVENT_TABLES)


class _CountPartition(StatelessSinkPartition[Any]):
    def __init__(self, on_items: Callable[[list[Any]], None]) -> None:
        self._on_items = on_items

    def write_batch(self, items: list[Any]) -> None:
        self._on_items(items)


class Count(DynamicSink[Any]):
    """Counts items (and lets a callback see them): measures the flow, not a store."""

    def __init__(self, on_items: Callable[[list[Any]], None] | None = None) -> None:
        self.items = 0
        self.first_ns = 0
        self.last_ns = 0
        self._cb = on_items

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountPartition:
        def seen(items: list[Any]) -> None:
            self.items += len(items)
            self.last_ns = time.perf_counter_ns()
            self.first_ns = self.first_ns or self.last_ns
            if self._cb is not None:
                self._cb(items)
        return _CountPartition(seen)


def market(source: Any, sink: Any, *, health: bool = False) -> Dataflow:
    """The market flow into ``sink``; ``health``: with the feed-health stage, as ``tapeflow live``."""
    from flows.market import MarketSinks, build_market_flow
    from tapeflow.live.health import FeedHealth, LatencyBreaker

    def new_health() -> Any:
        return FeedHealth(LatencyBreaker(1_000_000_000))

    return build_market_flow(source, MarketSinks(tables=sink), new_health=new_health if health else None)


def _fixed_cost(report: Report, decoded: dict[str, pa.Table], per_event_s: float) -> None:
    from flows.sources import cut_batches

    tables = {n: decoded[n] for n in EVENT_TABLES}
    warm = list(cut_batches(tables, WARM_EVENTS, None))[0]
    rest = {n: t.slice(warm[n].num_rows if n in warm else 0) for n, t in tables.items()}
    prefix = list(cut_batches(warm, THROUGHPUT_BATCH, None))
    tiny = []
    for batch in cut_batches(rest, 1, None):
        tiny.append(batch)
        if len(tiny) == TINY_BATCHES:
            break
    base = median_time(lambda: run_main(market(TestingSource(prefix), Count(), health=True)))
    both = median_time(lambda: run_main(market(TestingSource(prefix + tiny), Count(), health=True)))
    per_batch_us = ((both[0] - base[0]) / len(tiny) - per_event_s) * 1e6
    book_us = _book_share(prefix, tiny)
    report.add(f"{len(tiny):,} one-event batches after a {WARM_EVENTS:,}-event warm-up (health, route, "
               "book, degraded, bars, metrics, items)", len(tiny), (both[0] - base[0], both[1] - base[1]),
               ours=True, note=f"{per_batch_us:,.1f} us per batch; BookStage.apply alone {book_us:,.1f} us")
    report.figure("live flow: fixed cost per micro-batch, all stages", per_batch_us, "us", goal=50,
                  before="~1.4 ms (issue); 153 us", higher_is_better=False,
                  note=f"1-event batches of the Binance capture, minus the per-event cost; "
                       f"BookStage.apply (book room) {book_us:,.0f} us of it")


def _book_share(prefix: list[dict[str, pa.Table]], tiny: list[dict[str, pa.Table]]) -> float:
    from tapeflow.book.stage import BookStage

    def run() -> None:
        stage = BookStage("auto", 10, 1_000_000_000)
        for b in prefix:
            stage.apply(b)
        t0 = time.process_time()
        for b in tiny:
            stage.apply(b)
        times.append(time.process_time() - t0)

    times: list[float] = []
    for _ in range(3):
        run()
    return sorted(times)[1] / len(tiny) * 1e6


def _throughput(report: Report, decoded: dict[str, pa.Table]) -> float:
    from flows.sources import cut_batches

    batches = list(cut_batches({n: decoded[n] for n in EVENT_TABLES}, THROUGHPUT_BATCH, None))
    n = _events(decoded)
    t = median_time(lambda: run_main(market(TestingSource(batches), Count())))
    report.add("tapeflow market flow, 10k-event batches (book+snapshots+15 bar intervals+metrics)", n, t,
               ours=True, note=f"{len(batches)} batches, 1 worker")
    report.figure("live flow on pre-decoded 10k-event batches", n / t[0] / 1e6, "M events/s", goal=5,
                  before="3.5 M events/s", note="Binance capture, 1 worker, CPU time, counting sink")
    deltas = decoded["book_delta"]
    limit = min(deltas.num_rows, 200_000)
    cols = [deltas[c].to_numpy()[:limit] for c in ("side", "price_nanos", "size_nanos")]
    events = [("BTCUSDT", (int(s), int(p), int(z))) for s, p, z in zip(*cols, strict=True)]
    t = median_time(lambda: run_main(_dict_book_flow(events)), warmup=0, repeats=1)
    report.add("per-event Bytewax flow, dict book + best bid/ask (cryptofeed style)", limit, t, ours=False,
               note="one item per event")
    return _per_event(batches, n)


def _per_event(batches: list[dict[str, pa.Table]], n: int) -> float:
    t = median_time(lambda: run_main(market(TestingSource(batches), Count(), health=True)), warmup=0)
    return t[0] / n


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
    op.output("out", op.stateful_map("book", stream, apply), Count())
    return flow


def _replays(report: Report) -> None:
    from tapeflow.simulator import simulate

    lobster = [_data(LOBSTER.format(k)) for k in ("message", "orderbook")]
    _replay(report, "Binance USD-M capture", "binance", [_data(CAPTURE)], "10 s, 54k events/s")
    _replay(report, "LOBSTER AMZN day", "lobster", lobster, "80 s, 720 messages/s")
    with tempfile.TemporaryDirectory(prefix="tapeflow-bench-sim-") as tmp:
        files = simulate(SIM_SEED, 1, SIM_SPAN_NS, Path(tmp), "crypto", episodes_per_hour=0,
                         progress=False).files
        _replay(report, "simulator feed (10 crypto minutes)", "sim", files, SIM_BEFORE)


def _replay(report: Report, label: str, fmt: str, paths: list[Path], before: str) -> None:
    """One capture through ``CaptureSource`` and the flow; its decode alone, block and per-line paths."""
    from flows.sources import CaptureSource
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    if not all(p.exists() for p in paths):
        report.note(f"{label}: not found under TAPEFLOW_REAL_DATA, skipped")
        return
    decode = get_format(fmt).decode
    decoded = merge(list(decode(paths)))
    events = LOBSTER_MESSAGES if fmt == "lobster" else _events(decoded)
    unit = "messages" if fmt == "lobster" else "events"

    def replay() -> None:
        run_main(market(CaptureSource(fmt, paths, heartbeat_ns=1_000_000_000), Count(), health=True))

    whole = median_time(replay)
    flow = median_time(lambda: run_main(market(TestingSource(_cut(decoded)), Count(), health=True)))
    report.add(f"capture replay through the live flow, {label} (decode + flow)", events, whole, ours=True,
               note=f"the flow alone (the same batches, decoded beforehand) {flow[0]:.2f} s")
    if fmt in ("lobster", "sim"):
        block = median_time(lambda: list(decode(paths)))
        report.add(f"{label}: decode alone, block path (compiled scan, rows as columns)", events, block,
                   ours=True, note=f"{block[0] / whole[0]:.0%} of the replay's CPU")
        per_line = median_time(lambda: list(decode(paths, fast=False)), warmup=0, repeats=1)
        report.add(f"{label}: decode alone, per-line path (the decoder before the block path)", events,
                   per_line, ours=False, note="fast=False: the reference the block path is tested against")
    report.figure(f"capture replay, {label}, decode + flow", events / whole[0] / 1e6, f"M {unit}/s",
                  goal=1, before=before, note="CaptureSource as tapeflow live --capture, in process")
    report.figure(f"capture replay, {label}, flow alone", events / flow[0] / 1e6, f"M {unit}/s", goal=1,
                  before=before, note="the batches CaptureSource cuts, decoded beforehand")


def _cut(decoded: dict[str, pa.Table]) -> list[dict[str, pa.Table]]:
    # what CaptureSource hands the flow: default cuts (no time bound) and 1 s heartbeats
    from flows.sources import Heartbeat, cut_batches
    from tapeflow.settings import DEFAULT_BATCH_EVENTS

    beat = Heartbeat(1_000_000_000)
    return [beat.stamp(b) for b in cut_batches(decoded, DEFAULT_BATCH_EVENTS, None)]


def _replay_server(report: Report, path: Path) -> None:
    from bench.live_ws import client_median, server_alone

    events, cpu, wall, batches, lines = client_median(path)
    rate = events / cpu
    report.add("tapeflow market flow from the replay server (BinanceClient: websocket, journal, decode)",
               events, (cpu, wall), ours=True,
               note=f"{lines:,} capture lines, server in its own process on loopback; {batches:,} "
                    "micro-batches of book deltas; counting sink; median CPU of 3 after a warm-up run")
    report.figure("live from the replay server (real BinanceClient), per process", rate / 1e6, "M events/s",
                  goal=0.5, before="0.044 M events/s", note="CPU of the client process: journal, decode, "
                                                             "sync, book, bars, metrics")
    frames, seconds, cpu = server_alone(path)
    report.add("replay server alone, one raw websocket client counting frames", frames, (cpu, seconds),
               ours=True, note="as fast as possible, server in its own process; CPU: the server's while "
                               "serving (Linux /proc), wall: bounded by the Python client too")
    rate_k = frames / max(cpu, 1e-9) / 1e3
    report.figure("replay server alone (Binance capture, loopback), server CPU", rate_k, "k frames/s",
                  goal=None, before="50-61 k frames/s")


def _cold_start(report: Report) -> None:
    from bench.live_ws import first_output_s

    path = _data(CAPTURE)
    if not path.exists():
        return
    cache = Path(tempfile.mkdtemp(prefix="tapeflow-numba-"))
    cold = first_output_s(path, cache)
    warm = first_output_s(path, cache)
    report.note(f"cold start: first output of tapeflow live --capture after {cold:.2f} s with an empty numba "
                f"cache, {warm:.2f} s with it warm (Bytewax process start, imports and the decode of the "
                "first chunk included)")
    report.figure("cold start: first output of tapeflow live --capture, empty numba cache", cold, "s", goal=2,
                  higher_is_better=False, before="-", note="cache and AOT kernels: cli room")
    report.figure("warm start: first output of tapeflow live --capture, numba cache warm", warm, "s",
                  goal=None, higher_is_better=False, before="-")


def run(report: Report) -> None:
    """Time the live flow (see the module docstring); real capture needed, else a note says why."""
    report.section("live flow: events/s per Bytewax worker (Binance USD-M capture)")
    path = _data(CAPTURE)
    if not path.exists():
        report.note(f"skipped: {CAPTURE} not found under TAPEFLOW_REAL_DATA")
        return
    from bench.live_ws import latency, sink_rate
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    decoded = merge(list(get_format("binance").decode([path])))
    counts = ", ".join(f"{n} {decoded[n].num_rows:,}" for n in EVENT_TABLES)
    report.note(f"{_events(decoded):,} events ({counts}); medians of 3 runs after a warm-up, CPU time")
    per_event_s = _throughput(report, decoded)
    report.section("live flow: fixed cost per micro-batch (1 worker, Binance capture)")
    _fixed_cost(report, decoded, per_event_s)
    report.section("live flow: capture replays (tapeflow live --capture, in process)")
    _replays(report)
    report.section("live flow: from the replay server on loopback")
    _replay_server(report, path)
    sink_rate(report, decoded)
    _cold_start(report)
    report.section("live flow: latency at paced rates (1 worker)")
    latency(report, decoded)
