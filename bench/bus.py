"""The live bus: rows/s published to Redis Streams and the publish latency (issue 11).

Against a local ``redis-server`` (Debian's package) on a free loopback port, in a folder of its
own, no persistence. The rows are ``trade`` micro-batches of two instruments (what the flow's
normalized output looks like); each publish is the whole path of the sink: cut per stream, ids
derived, JSON encoding, pipelined ``XADD ... MAXLEN ~ 100000 <id>``, replies read.

* throughput: batches of 2,000 rows, rows/s of wall time (the server runs in its own process on
  the same 2 cores), beside two peers in the same run: the same pre-encoded entries pipelined
  by plain redis-py (``XADD *``: no ids, no encoding) and one ``XADD`` round trip per row.
* latency: batches of 10 rows (a live instrument's bars and metrics per micro-batch), the time
  from ``publish`` to Redis's last reply, p50 and p99 over the timed calls, after a warm-up.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench import Goal, Report

FIGURES = (
    Goal("bus publish throughput (Redis Streams, 2,000-row batches)", "k rows/s", None),
    Goal("bus publish latency p99 (10-row batch -> Redis acked)", "ms", None, higher_is_better=False),
)
BATCH_ROWS, LATENCY_ROWS = 2_000, 10


def _trades(start_ms: int, n: int) -> pa.Table:
    from tapeflow.schemas import ALL_RECORDS

    schema = ALL_RECORDS["trade"].arrow_schema()
    ts = (start_ms + np.arange(n) // 2) * 1_000_000
    cols: dict[str, pa.Array] = {}
    for f in schema:
        if f.name in ("ts_event_ns", "ts_recv_ns"):
            cols[f.name] = pa.array(ts, pa.int64())
        elif f.name == "symbol":
            cols[f.name] = pa.array(np.where(np.arange(n) % 2 == 0, "BTCUSDT", "ETHUSDT"))
        elif f.name == "venue":
            cols[f.name] = pa.array(["binance"] * n)
        elif pa.types.is_integer(f.type) and f.type.bit_width == 64:
            cols[f.name] = pa.array(np.arange(n) % 100 + 6_000_000_000_000, f.type)
        elif pa.types.is_integer(f.type):
            cols[f.name] = pa.array(np.arange(n) % 2, f.type)
        elif pa.types.is_floating(f.type):
            cols[f.name] = pa.array(np.full(n, 0.5), f.type)
        else:
            cols[f.name] = pa.array(["x"] * n)
    return pa.Table.from_pydict(cols).cast(schema)


def run(report: Report) -> None:
    from tapeflow.bus import RedisPublisher, connect
    from tapeflow.bus.server import LocalRedis

    if shutil.which("redis-server") is None:
        report.skip("redis-server not installed (apt-get install redis-server)")
        return
    rows_total = 40_000 if report.quick else 200_000
    calls = 500 if report.quick else 3_000
    with tempfile.TemporaryDirectory() as tmp, LocalRedis(Path(tmp) / "redis") as server:
        client = connect(server.url)
        pub = RedisPublisher(server.url, Path(tmp) / "dead.jsonl", client=client)
        batches = [_trades(i * BATCH_ROWS, BATCH_ROWS) for i in range(rows_total // BATCH_ROWS)]
        for b in batches[:5]:  # warm-up: imports, the connection, Redis's first allocations
            pub.publish("trade", b)
        client.flushall()
        pub = RedisPublisher(server.url, Path(tmp) / "dead.jsonl", client=client)
        report.section(f"bus: {rows_total:,} trade rows to Redis Streams, {BATCH_ROWS:,}-row batches")
        cpu, wall = time.process_time(), time.perf_counter()
        for b in batches:
            pub.publish("trade", b)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert pub.stats.published == rows_total and not pub.pending, pub.stats
        report.add("tapeflow bus (split, ids, JSON, pipelined XADD id)", rows_total, (cpu, wall), ours=True,
                   note=f"{rows_total / wall / 1e3:.0f}k rows/s wall")
        report.record(FIGURES[0], rows_total / wall / 1e3,
                      note=f"{rows_total:,} rows, wall time, redis-server 7 on loopback, same 2 cores")
        entries = [(s, r) for s, _, r in _encoded(batches[: max(1, len(batches) // 4)])]
        client.flushall()
        _peer(report, client, entries, pipelined=True)
        client.flushall()
        _peer(report, client, entries[:20_000], pipelined=False)
        client.flushall()
        _latency(report, RedisPublisher(server.url, Path(tmp) / "dead.jsonl", client=client), calls)
        client.close()


def _encoded(batches: list[pa.Table]) -> list[tuple[str, str, bytes]]:
    from tapeflow.bus.streams import split_streams

    last: dict[str, tuple[int, int]] = {}
    out = []
    for b in batches:
        for rows in split_streams("trade", b, last):
            out.extend(zip([rows.stream] * len(rows.ids), rows.ids, rows.rows, strict=True))
    return out


def _peer(report: Report, client: object, entries: list[tuple[str, bytes]], *, pipelined: bool) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    if pipelined:
        for i in range(0, len(entries), BATCH_ROWS):
            pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
            for stream, row in entries[i:i + BATCH_ROWS]:
                pipe.execute_command("XADD", stream, "MAXLEN", "~", 100_000, "*", "row", row)
            pipe.execute()
        name = "redis-py pipelined XADD * (pre-encoded rows)"
    else:
        for stream, row in entries:
            client.execute_command("XADD", stream, "MAXLEN", "~", 100_000, "*", "row", row)  # type: ignore[attr-defined]
        name = "redis-py one XADD round trip per row"
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    report.add(name, len(entries), (cpu, wall), ours=False,
               note=f"{len(entries) / wall / 1e3:.0f}k rows/s wall")


def _latency(report: Report, pub: object, calls: int) -> None:
    report.section(f"bus: publish latency, {LATENCY_ROWS}-row batches, {calls:,} calls")
    small = [_trades(10_000_000 + i * LATENCY_ROWS, LATENCY_ROWS) for i in range(calls + 100)]
    for b in small[:100]:  # warm-up
        pub.publish("trade", b)  # type: ignore[attr-defined]
    took = np.empty(calls)
    cpu, wall = time.process_time(), time.perf_counter()
    for i, b in enumerate(small[100:]):
        t0 = time.perf_counter()
        pub.publish("trade", b)  # type: ignore[attr-defined]
        took[i] = time.perf_counter() - t0
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    p50, p99 = (float(np.percentile(took, q)) * 1e3 for q in (50, 99))
    report.add("tapeflow bus publish (10 rows)", calls * LATENCY_ROWS, (cpu, wall), ours=True,
               note=f"p50 {p50:.2f} ms, p99 {p99:.2f} ms per call")
    report.record(FIGURES[1], p99, note=f"p50 {p50:.2f} ms over {calls:,} calls of {LATENCY_ROWS} rows")
