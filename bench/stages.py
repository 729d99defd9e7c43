"""Per-batch cost of the live flow's stages: each stage's share of a 1-event micro-batch, and
``LiveBars.add`` / ``LiveMetrics.add`` per batch size.

Not a test: timings print, nothing fails.

The fixed cost per micro-batch, stage by stage (``bench.live`` measures it through Bytewax, whose
own steps are the rest): the real Binance capture's first 200,000 events in 10k-event batches
build the state (a book of the real depth, open bars), then 2,000 one-event batches go through
``route`` -> ``VenueHealth.apply`` -> ``InstrumentPipeline.apply`` as the flow calls them, each
stage's CPU time summed (the book, bars and metrics inside the pipeline apart) and divided by the
batches, so the rows add up to the stages' whole cost per batch (median of 3 after a warm-up).

Inputs of the per-size rows, each one instrument (the live flow keys its stages by instrument):

- the real Binance USD-M BTCUSDT capture (``TAPEFLOW_REAL_DATA``, default ``../shared/data``);
- a simulated crypto market (``tapeflow.simulator``, 10 minutes, one instrument, seed 3).

A stage's events are its own input rows: trades for ``LiveBars``; BBO changes + trades (plus the
grid snapshots they release) for ``LiveMetrics``, the rows ``BookStage`` hands it. The stream is cut
into batches of 1, 100, 1k and 10k events in capture order; a snapshot joins the first batch whose
newest capture time reaches its instant (as the book stage releases it). The inputs are repeated,
shifted by whole seconds, until the largest batch size has at least 20 batches. Per size, the
first ``min(MAX_CALLS, max(20, MAX_EVENTS / size))`` batches are timed (a fresh stage each
repeat; median of 3 after a warm-up, CPU time).

Each row also gives the median wall time of the batches that emitted nothing: the fixed cost a
batch pays when no bar or sample completes (most batches, at high event rates).

Run alone: ``python -m bench.stages`` (or ``make bench`` for every module).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench import Report, median_time

SECOND_NS = 1_000_000_000
SIZES = (1, 100, 1_000, 10_000)
MAX_CALLS = 2_000
MIN_BATCHES = 20
MAX_EVENTS = 300_000  # per size, so the large sizes do not time millions of rows
CAPTURE = "binance/usdm_btcusdt_20240808.gz"
QUOTE_COLS = ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")


def _capture() -> Path | None:
    path = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data")) / CAPTURE
    return path if path.exists() else None


def _one_instrument(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Snapshots, BBO changes and trades of the instrument with the most trades."""
    from tapeflow.book.l2 import book_snapshots, quotes_from_deltas
    from tapeflow.derived.metrics import by_instrument

    trades = max(by_instrument(tables["trade"]), key=lambda g: g[2].num_rows)
    venue, symbol, trades = trades
    deltas = next(t for v, s, t in by_instrument(tables["book_delta"]) if (v, s) == (venue, symbol))
    quotes = quotes_from_deltas(deltas)
    q = np.stack([quotes.column(c).to_numpy() for c in QUOTE_COLS], axis=1)
    changed = np.ones(len(q), bool)
    changed[1:] = (q[1:] != q[:-1]).any(axis=1)  # BookStage sends BBO changes only
    return {"snap": book_snapshots(deltas, levels=10, interval_ns=SECOND_NS),
            "quote": quotes.filter(pa.array(changed)), "trade": trades}


def _tiled(tables: dict[str, pa.Table], min_rows: int) -> dict[str, pa.Table]:
    """The tables repeated, each copy shifted by whole seconds past the last, until ``min_rows`` trades."""
    first = min(int(t.column("ts_recv_ns").to_numpy().min()) for t in tables.values())
    last = max(int(t.column(c).to_numpy().max())
               for t in tables.values() for c in ("ts_recv_ns", "ts_event_ns"))
    shift = (-(-(last - first) // SECOND_NS) + 2) * SECOND_NS
    copies = max(1, -(-min_rows // tables["trade"].num_rows))
    out = {}
    for name, table in tables.items():
        parts = []
        for k in range(copies):
            t = table
            for col in ("ts_event_ns", "ts_recv_ns"):
                t = t.set_column(t.schema.get_field_index(col), col,
                                 pa.array(table.column(col).to_numpy() + k * shift, pa.int64()))
            parts.append(t)
        out[name] = pa.concat_tables(parts).combine_chunks()
    return out


def _metric_batches(tables: dict[str, pa.Table], size: int) -> list[tuple[pa.Table, pa.Table, pa.Table]]:
    """(snapshots, quotes, trades) per batch of ``size`` quote + trade rows in capture order."""
    q_recv = np.maximum.accumulate(tables["quote"].column("ts_recv_ns").to_numpy())
    t_recv = np.maximum.accumulate(tables["trade"].column("ts_recv_ns").to_numpy())
    order = np.argsort(np.concatenate([q_recv, t_recv]), kind="stable")
    pos = np.empty(len(order), np.int64)
    pos[order] = np.arange(len(order))
    q_pos, t_pos = pos[:len(q_recv)], pos[len(q_recv):]
    merged_recv = np.concatenate([q_recv, t_recv])[order]
    cuts = np.arange(0, len(order) + size, size)[: _calls(len(order), size) + 1]
    cuts[-1] = min(cuts[-1], len(order))
    qc, tc = np.searchsorted(q_pos, cuts), np.searchsorted(t_pos, cuts)
    grid = tables["snap"].column("ts_event_ns").to_numpy()
    # a snapshot is released by the first batch whose newest capture time reaches its instant
    sc = np.searchsorted(grid, merged_recv[cuts[1:] - 1], side="right")
    sc = np.concatenate([[0], sc])
    return [(tables["snap"].slice(int(sc[i]), int(sc[i + 1] - sc[i])),
             tables["quote"].slice(int(qc[i]), int(qc[i + 1] - qc[i])),
             tables["trade"].slice(int(tc[i]), int(tc[i + 1] - tc[i]))) for i in range(len(cuts) - 1)]


def _calls(rows: int, size: int) -> int:
    return min(MAX_CALLS, max(MIN_BATCHES, MAX_EVENTS // size), -(-rows // size))


def _bar_batches(trades: pa.Table, size: int) -> list[pa.Table]:
    calls = _calls(trades.num_rows, size)
    return [trades.slice(i * size, size) for i in range(calls)]


def _quiet_median_us(calls: list, state: object) -> str:
    """Median wall time of the calls that returned no rows (the fixed per-batch cost), as a note."""
    quiet = []
    for call in calls:
        t0 = time.perf_counter()
        out = call(state)
        dt = time.perf_counter() - t0
        if not out.num_rows:
            quiet.append(dt)
    if not quiet:
        return "every batch emits"
    return f"median {float(np.median(quiet)) * 1e6:,.1f} us wall over the {len(quiet)} that emit nothing"


def _time_stages(report: Report, label: str, tables: dict[str, pa.Table]) -> None:
    from tapeflow.derived import LiveBars, LiveMetrics

    for size in SIZES:
        batches = _bar_batches(tables["trade"], size)
        events = sum(b.num_rows for b in batches)
        state: list[LiveBars] = []

        def bars_run(batches: list[pa.Table] = batches, state: list[LiveBars] = state) -> None:
            live = state[-1]
            for b in batches:
                live.add(b)

        cost = median_time(bars_run, setup=lambda state=state: state.append(LiveBars()))
        quiet = _quiet_median_us([lambda live, b=b: live.add(b) for b in batches], LiveBars())
        report.add(f"LiveBars.add {label} {size}-trade batches", events, cost, ours=True,
                   note=f"{cost[0] / len(batches) * 1e6:,.1f} us/batch cpu over {len(batches)} batches; "
                        f"{quiet}")
        if size == 1 and label == "binance":
            per_batch_us = cost[0] / len(batches) * 1e6
            report.figure("LiveBars.add per 1-trade batch (Binance, 15 intervals)", per_batch_us, "us",
                          goal=None, before="61 us", higher_is_better=False)
    for size in SIZES:
        mbatches = _metric_batches(tables, size)
        events = sum(q.num_rows + t.num_rows for _, q, t in mbatches)
        mstate: list[LiveMetrics] = []

        def metrics_run(batches: list = mbatches, state: list[LiveMetrics] = mstate) -> None:
            live = state[-1]
            for s, q, t in batches:
                live.add(s, q, t)

        cost = median_time(metrics_run, setup=lambda state=mstate: state.append(LiveMetrics("1s", 10)))
        quiet = _quiet_median_us([lambda live, b=b: live.add(*b) for b in mbatches], LiveMetrics("1s", 10))
        snaps = sum(s.num_rows for s, _, _ in mbatches)
        if size == 1 and label == "binance":
            per_batch_us = cost[0] / len(mbatches) * 1e6
            report.figure("LiveMetrics.add per 1-event batch (Binance, 1 s grid)", per_batch_us, "us",
                          goal=None, before="30 us", higher_is_better=False)
        report.add(f"LiveMetrics.add {label} {size}-event batches", events, cost, ours=True,
                   note=f"{cost[0] / len(mbatches) * 1e6:,.1f} us/batch cpu over {len(mbatches)} batches "
                        f"({snaps} snapshots); {quiet}")


WARM_EVENTS = 200_000
TINY_BATCHES = 2_000
STAGES = ("route", "health", "book", "bars", "metrics", "pipeline rest")


def _timed(stage: str, fn: Callable[..., Any], spent: dict[str, int]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = time.process_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[stage] += time.process_time_ns() - t0
    return call


def _stage_costs(prefix: list[dict[str, pa.Table]], tiny: list[dict[str, pa.Table]]) -> dict[str, float]:
    """CPU us per 1-event batch of each stage (one run after the warm-up prefix)."""
    from tapeflow.derived import LiveBars, LiveMetrics
    from tapeflow.live.health import FeedHealth, LatencyBreaker
    from tapeflow.live.pipeline import VenueHealth, pipeline_factory
    from tapeflow.live.routing import route

    new = pipeline_factory("auto", 10, SECOND_NS, new_bars=LiveBars,
                           new_metrics=lambda: LiveMetrics("1s", 10), raw=True, bbo_as_quote=False)
    health = VenueHealth(FeedHealth(LatencyBreaker(SECOND_NS)))
    pipelines: dict[str, Any] = {}
    spent = dict.fromkeys(STAGES, 0)

    def feed(batches: list[dict[str, pa.Table]]) -> None:
        for batch in batches:
            t0 = time.process_time_ns()
            routed = route(batch)
            t1 = time.process_time_ns()
            health.apply(routed, None)
            t2 = time.process_time_ns()
            for key, part in routed.instruments.items():
                pipe = pipelines.get(key)
                if pipe is None:
                    pipe = pipelines[key] = new()
                    pipe.book.apply_columns = _timed("book", pipe.book.apply_columns, spent)
                    pipe.bars.add_arrays = _timed("bars", pipe.bars.add_arrays, spent)
                    pipe.metrics.add_arrays = _timed("metrics", pipe.metrics.add_arrays, spent)
                pipe.apply(part)
            t3 = time.process_time_ns()
            spent["route"] += t1 - t0
            spent["health"] += t2 - t1
            spent["pipeline rest"] += t3 - t2

    feed(prefix)
    for stage in STAGES:
        spent[stage] = 0
    feed(tiny)
    # the pipeline's time includes its stages': the rest is its own
    spent["pipeline rest"] -= spent["book"] + spent["bars"] + spent["metrics"]
    return {stage: ns / len(tiny) / 1e3 for stage, ns in spent.items()}


def _fixed_cost_by_stage(report: Report, decoded: dict[str, pa.Table]) -> None:
    from tapeflow.live.batching import cut_batches

    tables = {n: decoded[n] for n in ("book_delta", "trade", "quote")}
    warm = next(iter(cut_batches(tables, WARM_EVENTS, None)))
    rest = {n: t.slice(warm[n].num_rows if n in warm else 0) for n, t in tables.items()}
    prefix = list(cut_batches(warm, 10_000, None))
    tiny = []
    for batch in cut_batches(rest, 1, None):
        tiny.append(batch)
        if len(tiny) == TINY_BATCHES:
            break
    runs = [_stage_costs(prefix, tiny) for _ in range(4)][1:]  # the first warms up
    costs = {stage: float(np.median([r[stage] for r in runs])) for stage in STAGES}
    kinds = ", ".join(f"{n} {sum(n in b for b in tiny)}" for n in tables)
    total = sum(costs.values())
    report.section("live flow: fixed cost per 1-event micro-batch by stage (Binance capture, no Bytewax)")
    report.note(f"{len(tiny):,} one-event batches ({kinds}) after a {WARM_EVENTS:,}-event warm-up; "
                "CPU us per batch, averaged over all the batches (a stage not called costs 0), median of 3")
    for stage in STAGES:
        report.add(f"{stage}: {costs[stage]:,.1f} us per batch", len(tiny), costs[stage] * len(tiny) / 1e6,
                   ours=True)
    report.figure("live flow stages per 1-event batch, without Bytewax's steps", total, "us", goal=50,
                  before="~1.4 ms (issue, with Bytewax)", higher_is_better=False,
                  note=", ".join(f"{s} {c:,.1f}" for s, c in costs.items()))


def _capture_stages(report: Report) -> None:
    """Where a capture replay's flow time goes, stage by stage, at 5,000, 20,000-row and default batches."""
    from bench.live import LOBSTER, SIM_SEED, SIM_SPAN_NS, _data
    from flows.sources import Heartbeat, cut_batches
    from tapeflow.settings import DEFAULT_BATCH_EVENTS
    from tapeflow.simulator import simulate
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    report.section("live flow stages over a whole capture (no Bytewax; CPU ms, median of 3 after a warm-up)")
    with tempfile.TemporaryDirectory() as out:
        lobster = [_data(LOBSTER.format(k)) for k in ("message", "orderbook")]
        inputs = [("LOBSTER AMZN day", "lobster", lobster),
                  ("sim 10 crypto minutes", "sim", simulate(SIM_SEED, 1, SIM_SPAN_NS, Path(out), "crypto",
                                                            episodes_per_hour=0, progress=False).files)]
        for label, fmt, paths in inputs:
            if not all(p.exists() for p in paths):
                report.note(f"{label}: not found under TAPEFLOW_REAL_DATA, skipped")
                continue
            decoded = merge(list(get_format(fmt).decode(paths)))
            for size in sorted({5_000, 20_000, DEFAULT_BATCH_EVENTS}):  # the defaults of rounds 2, 3, s27
                beat = Heartbeat(SECOND_NS)
                batches = [beat.stamp(b) for b in cut_batches(decoded, size, None)]
                runs = [_stage_costs([], batches) for _ in range(4)][1:]  # the first warms up
                ms = {s: float(np.median([r[s] for r in runs])) * len(batches) / 1e3 for s in STAGES}
                rows = sum(t.num_rows for t in decoded.values())
                report.add(f"{label}, {size:,}-row batches ({len(batches)}): "
                           + ", ".join(f"{s} {v:,.1f}" for s, v in ms.items()), rows, sum(ms.values()) / 1e3,
                           ours=True)


def _binance_decoded(path: Path) -> dict[str, pa.Table]:
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    return merge(list(get_format("binance").decode([path])))


def _sim() -> dict[str, pa.Table]:
    from tapeflow.simulator import simulate
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    with tempfile.TemporaryDirectory() as out:
        run = simulate(3, 1, 10 * 60 * SECOND_NS, Path(out), "crypto", episodes_per_hour=0, progress=False)
        return _one_instrument(merge(list(get_format("sim").decode(run.files))))


def run(report: Report) -> None:
    """Time each stage's share of a 1-event batch, and ``LiveBars.add`` and ``LiveMetrics.add`` per
    batch size on the capture and the simulator."""
    sources = []
    path = _capture()
    if path is not None:
        decoded = _binance_decoded(path)
        _fixed_cost_by_stage(report, decoded)
        sources.append(("binance", _one_instrument(decoded)))
    report.section("live derived stages per batch (one instrument; events = the stage's input rows)")
    report.note(f"batch sizes {SIZES}; first <= {MAX_CALLS} batches per size; bars on all 15 intervals; "
                "metrics on the 1 s grid, 10 levels; median of 3 after a warm-up, CPU time")
    if path is None:
        report.note(f"{CAPTURE} not found (TAPEFLOW_REAL_DATA): Binance rows skipped")
    sources.append(("sim", _sim()))
    for label, tables in sources:
        tiled = _tiled(tables, MIN_BATCHES * SIZES[-1])
        _time_stages(report, label, tiled)
    _capture_stages(report)


if __name__ == "__main__":
    rep = Report()
    run(rep)
    print(rep.render())
