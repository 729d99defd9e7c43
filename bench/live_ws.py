"""Parts of ``bench.live`` that run other processes or pace time: the websocket path from the replay
server (with the real ``BinanceClient``), the server alone, cold start of ``tapeflow live``, the
ClickHouse sink, and event-to-bar/metric latency at paced rates."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.testing import TestingSource, run_main

from bench import Report, median_time
from bench.live import EVENT_TABLES, THROUGHPUT_BATCH, Count, market

REPLAY_LINES = 40_000
PACED = ((10_000, 4.0), (100_000, 3.0))  # (events/s, seconds)
TICK_NS = 1_000_000


def _prefix(path: Path, lines: int) -> Path:
    out = Path(tempfile.mkdtemp(prefix="tapeflow-bench-")) / "usdm_prefix.txt"
    with gzip.open(path, "rb") as src, open(out, "wb") as dst:
        for i, line in enumerate(src):
            if i == lines:
                break
            dst.write(line)
    return out


@contextmanager
def _server(capture: Path) -> Iterator[tuple[str, str, int]]:
    # the server in a process of its own, as a venue would be: this process's CPU is the client's
    server = subprocess.Popen([sys.executable, "-m", "tapeflow.cli", "replay-server", "--format", "binance",
                               str(capture), "--as-fast-as-possible", "--progress-every", "60s"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if "websocket" in line:
                yield line.split()[2], line.split()[4], server.pid
                break
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_run(path: Path) -> tuple[int, float, float, int, int]:
    """The market flow fed by ``LiveSource("binance")`` from the replay server serving the first
    ``REPLAY_LINES`` lines of ``path``; returns (events, cpu s, wall s to the last output, batches, lines)."""
    from flows.sources import LiveSource
    from tapeflow.live import ConnectorSettings

    prefix = _prefix(path, REPLAY_LINES)
    with _server(prefix) as (ws, rest, _):
        rows = {"events": 0, "batches": 0}

        def count(items: list[Any]) -> None:
            rows["events"] += sum(t.num_rows for name, t in items if name in EVENT_TABLES)
            rows["batches"] += sum(name == "book_delta" for name, _ in items)

        sink = Count(count)
        journal = Path(tempfile.mkdtemp(prefix="tapeflow-bench-journal-"))
        source = LiveSource("binance", ["BTCUSDT"], endpoint=ws, rest_endpoint=rest, journal=journal,
                            idle_stop_ns=1_000_000_000,
                            client_options={"trade_stream": "trade",
                                            "settings": ConnectorSettings(seed=1, stale_after_s=30)})
        c0, t0 = time.process_time(), time.perf_counter_ns()
        run_main(market(source, sink, health=True))
        cpu = time.process_time() - c0  # the idle stop's 5 ms polls after the tape add next to nothing
    wall = (sink.last_ns - t0) / 1e9  # to the last output: the idle stop after the tape is not work
    return rows["events"], cpu, wall, rows["batches"], REPLAY_LINES


def client_median(path: Path) -> tuple[int, float, float, int, int]:
    """:func:`client_run` once untimed (numba kernels, imports and the OS file cache: cold start is
    its own figure), then the run with the median CPU time of 3 (1 under ``--quick``)."""
    import statistics

    from bench import _repeats

    client_run(path)
    runs = [client_run(path) for _ in range(_repeats(3))]
    if len({r[0] for r in runs}) != 1 or not runs[0][0]:
        raise RuntimeError(f"the replay runs did not all deliver the whole tape: {[r[0] for r in runs]}")
    cpu = statistics.median(r[1] for r in runs)
    return next(r for r in runs if r[1] == cpu)


def server_alone(path: Path) -> tuple[int, float, float]:
    """One raw websocket client reads the tape from the server (own process): frames, wall seconds
    and the server's CPU seconds while serving (its start and capture loading left out)."""
    import aiohttp

    prefix = _prefix(path, REPLAY_LINES)

    async def read(url: str) -> tuple[int, float]:
        frames, t0, last = 0, 0.0, 0.0
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            while True:
                try:
                    msg = await ws.receive(timeout=1.0)
                except TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frames += 1
                last = time.perf_counter()
                t0 = t0 or last
        return frames, last - t0

    with _server(prefix) as (ws, _, pid):
        url = f"{ws}/stream?streams=btcusdt@depth@0ms/btcusdt@trade/btcusdt@bookTicker"
        cpu0 = _cpu_s(pid)
        frames, wall = asyncio.run(read(url))
        cpu = _cpu_s(pid) - cpu0
    return frames, wall, cpu


def first_output_s(path: Path, numba_cache: Path) -> float:
    """Seconds from starting ``tapeflow live --capture`` until its flow's first output (a 2,000-line
    prefix, no stores, one progress line per output), with ``numba_cache`` as the numba cache."""
    prefix = _prefix(path, 2_000)
    env = os.environ | {"NUMBA_CACHE_DIR": str(numba_cache), "TAPEFLOW_LIVE_PROGRESS_S": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tapeflow.cli", "live", "--capture", str(prefix),
                             "--format", "binance", "--no-lake", "--no-clickhouse"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    first = None
    for line in proc.stderr:
        if first is None and "rows" in line:
            first = time.perf_counter() - t0
    proc.wait(timeout=120)
    return first if first is not None else time.perf_counter() - t0


def sink_rate(report: Report, decoded: dict[str, pa.Table]) -> None:
    """The ClickHouse sink (chdb, idempotent) on the capture's decoded depth rows."""
    from flows.sinks import ClickHouseSink

    deltas = decoded["book_delta"].slice(0, 200_000)
    batches = [deltas.slice(a, THROUGHPUT_BATCH) for a in range(0, deltas.num_rows, THROUGHPUT_BATCH)]
    root = Path(tempfile.mkdtemp(prefix="tapeflow-bench-ch-"))
    part = ClickHouseSink(f"chdb://{root}").build_part("bench", "0", None)
    try:
        part.write_batch(batches[:1])
        t = median_time(lambda: part.write_batch(batches[1:]), warmup=0, repeats=1)
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


def latency(report: Report, decoded: dict[str, pa.Table]) -> None:
    """Event-to-bar/metric latency at paced rates (see ``bench.live``)."""
    from flows.sources import cut_batches

    tables = {n: decoded[n] for n in EVENT_TABLES}
    run_main(market(TestingSource(list(cut_batches(tables, 1000, None))[:3]), Count()))  # compile, untimed
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
        run_main(market(source, Count(seen), health=True))
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        events = sum(sum(t.num_rows for t in b.values()) for b in ticks)
        lat = np.asarray(samples) / 1e6
        p50, p99 = (np.percentile(lat, [50, 99]) if len(lat) else (float("nan"), float("nan")))
        report.add(f"paced {rate:,} events/s: event-to-bar/metric p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                   events, (cpu, wall), ours=True,
                   note=f"{len(lat)} bar/metric items, {len(source.scheduled)} batches "
                        f"(mean {events / max(1, len(source.scheduled)):.0f} events)")
    report.note("latency: sink arrival - scheduled arrival of the OLDEST event of the batch being processed "
                "(an upper bound for the event that closed the bar/grid point); events arrive in 1 ms ticks "
                "and each poll takes all that arrived; rates: events / run time including the pacing")
