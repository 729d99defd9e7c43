"""Bytewax sinks of the live flow: ClickHouse, the Parquet lake, dead letters and feed status.

Items are ``(table_name, pa.Table)``. Every sink here is a :class:`FixedPartitionedSink` with ONE
partition, so exactly one worker of the whole cluster writes: chdb lets one process open a data
directory, and one writer also keeps inserts ordered. The other workers route their items to it.

The sinks only wire: rows reach both stores through :class:`tapeflow.storage.writer.Writer`'s
exactly-once ``append`` (docs/storage.md). Idempotency under at-least-once redelivery (a Bytewax
resume replays everything emitted since the last committed epoch) rests on one fact: a replayed
flow emits byte-identical micro-batches, because sources resume from a deterministic position and
operators from a snapshotted state. So the identity of a batch is its content (``batch_token``):

- ClickHouse drops a block whose ``insert_deduplication_token`` it has seen among the table's last
  ``dedup_window`` inserts; restated bars (``REPLACE_KEYS``) delete their keys, then insert.
- The lake gets one immutable part file per touched partition per flush, its batch tokens in its
  footer (written in the same rename as its rows); a batch whose token the partition holds is
  skipped. The sink flushes every ``flush_s`` (and at every epoch snapshot, before the epoch
  commits, and at the end), so a flush costs what it writes, never the whole day; parts are merged
  and, at the end, compacted into one file, each by an atomic directory swap.

``idempotent=False`` gives the plain-append variant the recovery tests use as their control.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition

from tapeflow.errors import StorageError
from tapeflow.live import retry
from tapeflow.live.retry import WarehouseRetry, WarehouseUnavailable
from tapeflow.schemas import ALL_RECORDS
from tapeflow.storage.batches import DEDUP_WINDOW, REPLACE_KEYS, batch_token, last_per_key, record_of
from tapeflow.storage.writer import Writer

__all__ = ["DEDUP_WINDOW", "REPLACE_KEYS", "batch_token", "last_per_key", "record_of"]

_PART = "0"
_T = TypeVar("_T")


@dataclass
class SinkStats:
    """What a sink partition did, kept in its resume state.

    Attributes:
        batches: items written.
        rows: rows inserted (replayed duplicates included when ClickHouse then drops them).
        skipped: batches a lake partition skipped because it already held their token.
        ignored: items for tables this sink does not take.
    """

    batches: int = 0
    rows: int = 0
    skipped: int = 0
    ignored: int = 0
    per_table: dict[str, int] = field(default_factory=dict)


class _TablePartition(StatefulSinkPartition[pa.Table, SinkStats]):
    def __init__(self, sink: TableSink, stats: SinkStats) -> None:
        self._sink = sink
        self.stats = stats
        # Every storage call runs on one thread of our own. Bytewax worker threads enter Python
        # through short-lived thread states, and chdb's binding keeps one across calls: used
        # straight from a worker of a multi-worker flow it deadlocks or crashes ("double free",
        # SIGSEGV; reproduced with 2 workers). A Python thread's state lives as long as the thread.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tapeflow-storage")
        self._writer = self._on_thread(Writer, sink.lake_root, sink.dsn, dedup_window=sink.dedup_window)
        budget_s = retry.DEFAULT_BUDGET_S if sink.retry_s is None else sink.retry_s
        self._retry = WarehouseRetry(sink.dsn, budget_s=budget_s) if sink.dsn else None
        self._skipped = 0
        self._flushed_at = time.monotonic()

    def write_batch(self, values: list[pa.Table]) -> None:
        for table in values:
            record = record_of(table)
            if self._sink.tables is not None and record.name not in self._sink.tables:
                self.stats.ignored += 1
                continue
            table = table.select(record.column_names).cast(record.arrow_schema())
            token = batch_token(record.name, table) if self._sink.idempotent else None
            self._append(record, table, token)
            self.stats.batches += 1
            self.stats.rows += table.num_rows
            self.stats.per_table[record.name] = self.stats.per_table.get(record.name, 0) + table.num_rows
            if self._sink.metrics is not None:
                self._sink.metrics.events_out_table(record.name, table)
        if time.monotonic() - self._flushed_at >= self._sink.flush_s:
            self._flush()

    def snapshot(self) -> SinkStats:
        # the epoch is committed only after this returns: its lake rows must be on disk first
        self._flush()
        return SinkStats(self.stats.batches, self.stats.rows, self.stats.skipped, self.stats.ignored,
                         dict(self.stats.per_table))

    def close(self) -> None:
        try:
            self._on_thread(self._writer.close)  # flush, then compact every partition into one file
            self._count_skipped()
        finally:
            self._thread.shutdown()

    def _append(self, record: Any, table: pa.Table, token: str | None) -> None:
        if self._retry is None:
            self._on_thread(self._writer.append, record, table, token=token)
            return
        try:
            # the warehouse insert comes first and the lake buffer after it, so a retried append
            # never buffers a batch twice
            self._retry.call(self._on_thread, self._writer.append, record, table, token=token)
        except WarehouseUnavailable:
            # stopping: what the lake buffer holds is written first, so it is never lost with the flow
            # (Bytewax also closes the partition as the failed flow goes down, which flushes too,
            # but that is its teardown's way, not a promise)
            self._on_thread(self._writer.flush)
            raise

    def _on_thread(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return self._thread.submit(fn, *args, **kwargs).result()

    def _flush(self) -> None:
        self._on_thread(self._writer.flush)
        self._count_skipped()
        self._flushed_at = time.monotonic()

    def _count_skipped(self) -> None:
        skipped = self._writer.stats.skipped
        self.stats.skipped += skipped - self._skipped
        self._skipped = skipped


class TableSink(FixedPartitionedSink[pa.Table, SinkStats]):
    """Write ``(table_name, pa.Table)`` items to ClickHouse and/or the lake from one worker.

    Args:
        dsn: warehouse DSN (``chdb:...`` or ``http(s)://...``), or None for no ClickHouse.
        lake_root: lake root directory, or None for no lake.
        tables: record names this sink takes (others are counted in ``ignored``); None: all.
        idempotent: False gives a plain append (the non-idempotent control).
        dedup_window: how many recent batch tokens ClickHouse and each lake partition remember.
        metrics: a :class:`tapeflow.live.prom.FlowMetrics` to count rows out, or None.
        flush_s: the lake gets a new part per touched partition at most this often (and at every
            snapshot and the end).
        retry_s: how long an append waits, retrying with backoff, for a warehouse that stopped
            answering before the flow stops (None: ``tapeflow.live.retry.DEFAULT_BUDGET_S``, 60 s;
            :mod:`tapeflow.live.retry`).
    """

    def __init__(self, *, dsn: str | None = None, lake_root: Path | str | None = None,
                 tables: Collection[str] | None = None, idempotent: bool = True,
                 dedup_window: int = DEDUP_WINDOW, metrics: Any = None, flush_s: float = 1.0,
                 retry_s: float | None = None) -> None:
        unknown = set(tables or ()) - set(ALL_RECORDS)
        if unknown:
            raise StorageError(f"sink tables {sorted(unknown)} are not record types")
        self.dsn = dsn
        self.lake_root = Path(lake_root) if lake_root is not None else None
        self.tables = frozenset(tables) if tables is not None else None
        self.idempotent = idempotent
        self.dedup_window = dedup_window
        self.metrics = metrics
        self.flush_s = flush_s
        self.retry_s = retry_s

    def list_parts(self) -> list[str]:
        return [_PART]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: SinkStats | None) -> _TablePartition:
        return _TablePartition(self, resume_state or SinkStats())


class ClickHouseSink(TableSink):
    """Every item (or those in ``tables``) into ClickHouse, idempotently (see the module docstring)."""

    def __init__(self, dsn: str, tables: Collection[str] | None = None, *, idempotent: bool = True,
                 dedup_window: int = DEDUP_WINDOW, metrics: Any = None) -> None:
        super().__init__(dsn=dsn, tables=tables, idempotent=idempotent, dedup_window=dedup_window,
                         metrics=metrics)


class LakeSink(TableSink):
    """Every item (or those in ``tables``) into the Parquet lake ``<root>/<table>/venue=/symbol=/date=``."""

    def __init__(self, root: Path | str, tables: Collection[str] | None = None, *, idempotent: bool = True,
                 dedup_window: int = DEDUP_WINDOW, metrics: Any = None, flush_s: float = 1.0) -> None:
        super().__init__(lake_root=root, tables=tables, idempotent=idempotent, dedup_window=dedup_window,
                         metrics=metrics, flush_s=flush_s)


class StatusSink(TableSink):
    """``status`` items into ClickHouse table ``status`` and lake dataset ``status`` (gap sensor)."""

    def __init__(self, dsn: str | None, lake_root: Path | str | None, *, idempotent: bool = True) -> None:
        super().__init__(dsn=dsn, lake_root=lake_root, tables=("status",), idempotent=idempotent)


class DeadLetterSink(TableSink):
    """``rejected`` items (dead letters) into ClickHouse table ``rejected`` and the lake."""

    def __init__(self, dsn: str | None, lake_root: Path | str | None, *, idempotent: bool = True) -> None:
        super().__init__(dsn=dsn, lake_root=lake_root, tables=("rejected",), idempotent=idempotent)


_DERIVED_TABLES = frozenset({"bar", "metric", "book_snapshot"})


class _MetricsPartition(StatelessSinkPartition[tuple[str, pa.Table]]):
    def __init__(self, metrics: Any, raw_tables: frozenset[str], latency: bool) -> None:
        self._metrics, self._raw, self._latency = metrics, raw_tables, latency

    def write_batch(self, items: list[tuple[str, pa.Table]]) -> None:
        for name, table in items:
            if name in self._raw or name in ("status", "rejected"):
                self._metrics.observe_records({name: table})
            self._metrics.events_out_table(name, table)
            if self._latency and name in _DERIVED_TABLES and table.num_rows:
                newest_ns = pc.max(table.column("ts_recv_ns")).as_py()
                self._metrics.observe_batch_latency(max(0, time.time_ns() - newest_ns) / 1e9)


class MetricsSink(DynamicSink[tuple[str, pa.Table]]):
    """Counts the flow's items into a :class:`tapeflow.live.prom.FlowMetrics` (every worker, no store).

    Decoded input tables (``raw_tables``, which the market flow passes through when ``raw=True``)
    count as events in and set the lag gauge; ``status`` rows count gaps, resyncs and breaker
    trips; ``rejected`` rows count per reason; every item counts as events out per table.
    With ``latency=True`` (a live feed, where capture time is this host's clock) every derived
    table (bars, metrics, snapshots) observes the batch latency histogram: now minus the newest
    capture time among its rows, i.e. event received to derived row leaving the flow.
    Wire it as an extra sink of the market flow (``MarketSinks(extra=(MetricsSink(m),))``) and
    serve ``m`` with :func:`tapeflow.live.prom.start_metrics_server`.
    """

    def __init__(self, metrics: Any,
                 raw_tables: Collection[str] = ("book_delta", "order_event", "trade", "quote"),
                 *, latency: bool = False) -> None:
        self.metrics = metrics
        self.raw_tables = frozenset(raw_tables)
        self.latency = latency

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MetricsPartition:
        return _MetricsPartition(self.metrics, self.raw_tables, self.latency)
