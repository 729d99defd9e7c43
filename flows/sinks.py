"""Bytewax sinks of the live flow: ClickHouse, the Parquet lake, dead letters and feed status.

Items are ``(table_name, pa.Table)``. Every sink here is a :class:`FixedPartitionedSink` with ONE
partition, so exactly one worker of the whole cluster writes: chdb lets one process open a data
directory, and one writer also keeps inserts ordered. The other workers route their items to it.

Idempotency under at-least-once redelivery (a Bytewax resume replays everything emitted since the
last committed epoch) rests on one fact: a replayed flow emits byte-identical micro-batches, because
sources resume from a deterministic position and operators from a snapshotted state. So the
identity of a batch is its content: ``batch_token`` hashes every row of the table (polars row hashes
with a fixed seed, then BLAKE2b over them and the table name), order included.

- ClickHouse: tables stay the plain MergeTree of :meth:`RecordType.clickhouse_ddl` (readers need no
  ``FINAL``) with ``non_replicated_deduplication_window`` set, and each insert carries
  ``insert_deduplication_token = batch_token``: ClickHouse itself drops a block whose token it has
  seen among the last ``dedup_window`` inserts of that table (verified in chdb by
  ``tests/flows/test_sinks.py``). Row keys are never used as identities: BitMEX sends hundreds of
  quotes under a few keys and CME MBO has byte-identical records, all of which must survive.
- Restated rows: a late trade makes :class:`tapeflow.derived.LiveBars` emit a new revision of a bar
  already written. Tables in ``REPLACE_KEYS`` (``bar``) are keyed by their true identity (one bar per
  venue, symbol, interval and open time): the keys present in a batch are deleted, then the batch is
  inserted. A redelivered batch does the same again, so the table still holds each bar once.
- Lake: each partition file keeps the tokens of its last ``dedup_window`` batches in its Parquet
  key-value metadata, written in the same atomic rename as the rows, so a crash can never leave
  rows without their token or a token without its rows; a batch whose token is present is skipped.
  A lake partition is one file, so every write rewrites it: the sink buffers batches and rewrites
  each touched partition once per ``flush_s`` (and at every epoch snapshot and at the end), not
  once per batch. The lake copy is therefore up to ``flush_s`` behind ClickHouse.

``idempotent=False`` gives the plain-append variant the recovery tests use as their control.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition

from tapeflow.errors import StorageError
from tapeflow.schemas import ALL_RECORDS, RecordType, concat
from tapeflow.storage import lake
from tapeflow.storage.warehouse import Warehouse

# Tables whose rows have a true identity and are restated: a new row replaces the one under its key.
REPLACE_KEYS: dict[str, tuple[str, ...]] = {"bar": ALL_RECORDS["bar"].order_by}
# A resume replays at most the batches of one epoch per table; 10k inserts is hours of 1 s epochs.
DEDUP_WINDOW = 10_000
_TOKENS_KEY = b"tapeflow.batch_tokens"
_PART = "0"
_T = TypeVar("_T")
# The lake's batch files use zstd 9 (written once); live partitions are rewritten every flush.
LAKE_ZSTD_LEVEL = 3


def record_of(table: pa.Table) -> RecordType:
    """The record type of a table: its ``tapeflow.record`` schema metadata, else its exact columns.

    Raises:
        StorageError: the table matches no record type (names its columns).
    """
    meta = table.schema.metadata or {}
    name = meta.get(b"tapeflow.record", b"").decode()
    if name in ALL_RECORDS:
        return ALL_RECORDS[name]
    for record in ALL_RECORDS.values():
        if record.column_names == table.column_names:
            return record
    raise StorageError(f"a sink item has columns {table.column_names}, which match no record type")


def batch_token(name: str, table: pa.Table) -> str:
    """A deterministic identity of one micro-batch: the table name and every row, in order.

    Args:
        name: the table the batch goes to.
        table: the rows (cast to their record schema first, so equal content hashes equally).

    Returns:
        32 hex characters.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{name}:{table.num_rows}:".encode())
    if table.num_rows:
        digest.update(pl.from_arrow(table).hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()


def last_per_key(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Rows of ``table`` that are the last one under their key (a restated bar beats its earlier revision)."""
    if table.num_rows < 2:
        return table
    frame = pl.from_arrow(table.select(list(keys))).with_row_index("_i")
    keep = frame.group_by(list(keys), maintain_order=True).agg(pl.col("_i").last())["_i"].sort()
    return table.take(pa.array(keep.to_numpy()))


@dataclass
class SinkStats:
    """What a sink partition did, kept in its resume state.

    Attributes:
        batches: items written.
        rows: rows inserted (replayed duplicates included when ClickHouse then drops them).
        skipped: lake partition writes skipped because their batch token was already there.
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
        # Every ClickHouse call runs on one thread of our own. Bytewax worker threads enter Python
        # through short-lived thread states, and chdb's binding keeps one across calls: used
        # straight from a worker of a multi-worker flow it deadlocks or crashes ("double free",
        # SIGSEGV; reproduced with 2 workers). A Python thread's state lives as long as the thread.
        self._ch_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tapeflow-clickhouse")
        self._warehouse = self._on_ch_thread(Warehouse, sink.dsn) if sink.dsn else None
        self._ready: set[str] = set()
        # lake partition (record, venue, symbol, date) -> [(token, rows)] waiting for the next flush
        self._pending: dict[tuple[RecordType, str, str, str], list[tuple[str, pa.Table]]] = {}
        self._flushed_at = time.monotonic()

    def write_batch(self, values: list[pa.Table]) -> None:
        for table in values:
            record = record_of(table)
            if self._sink.tables is not None and record.name not in self._sink.tables:
                self.stats.ignored += 1
                continue
            table = table.select(record.column_names).cast(record.arrow_schema())
            if record.name in REPLACE_KEYS:
                table = last_per_key(table, REPLACE_KEYS[record.name])
            token = batch_token(record.name, table)
            if self._warehouse is not None:
                self._on_ch_thread(self._to_clickhouse, record, table, token)
            if self._sink.lake_root is not None:
                self._buffer(record, table, token)
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
        self._flush()
        if self._warehouse is not None:
            self._on_ch_thread(self._warehouse.close)
        self._ch_thread.shutdown()

    def _on_ch_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        return self._ch_thread.submit(fn, *args).result()

    def _to_clickhouse(self, record: RecordType, table: pa.Table, token: str) -> None:
        wh = self._warehouse
        assert wh is not None
        if record.name not in self._ready:
            wh.ensure_tables([record])
            if self._sink.idempotent:
                wh.client.command(f"ALTER TABLE {record.name} MODIFY SETTING "
                                  f"non_replicated_deduplication_window = {self._sink.dedup_window}")
            self._ready.add(record.name)
        if table.num_rows == 0:
            return
        # ``insert_deduplicate=0`` is not honoured through the chdb interface (measured): an insert that
        # must never be dropped carries a token of its own instead.
        if not self._sink.idempotent or record.name in REPLACE_KEYS:
            token = f"{token}:{uuid.uuid4().hex}"
        if self._sink.idempotent and record.name in REPLACE_KEYS:
            _delete_keys(wh, record.name, table, REPLACE_KEYS[record.name])
        settings = {"insert_deduplicate": 1, "insert_deduplication_token": token}
        try:
            wh.client.insert_arrow(record.name, table, settings=settings)
        except Exception as exc:  # clickhouse-connect and chdb raise several unrelated types
            raise StorageError(f"insert of {table.num_rows} {record.name} rows (batch {token}) "
                               f"failed: {exc}") from exc

    def _buffer(self, record: RecordType, table: pa.Table, token: str) -> None:
        root = self._sink.lake_root
        assert root is not None
        for venue, symbol, date, part in lake.split(table):
            self._pending.setdefault((record, venue, symbol, date), []).append((token, part))

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for partition, batches in pending.items():
            self.stats.skipped += self._write_partition(*partition, batches)
        self._flushed_at = time.monotonic()

    def _write_partition(self, record: RecordType, venue: str, symbol: str, date: str,
                         batches: list[tuple[str, pa.Table]]) -> int:
        root = self._sink.lake_root
        assert root is not None
        path = lake.partition_dir(root, record, venue, symbol, date) / lake.PART_FILE
        tokens: list[str] = []
        old = record.empty_table()
        if path.exists():
            tokens = _read_tokens(path)
            old = lake.read(record, root, venue=venue, symbol=symbol, date=date)
        skipped, parts = 0, [old]
        for token, part in batches:
            if self._sink.idempotent and token in tokens:
                skipped += 1
                continue
            if self._sink.idempotent and record.name in REPLACE_KEYS:
                parts = [_without_keys(concat(record, parts), part, REPLACE_KEYS[record.name])]
            parts.append(part)
            tokens.append(token)
        if skipped == len(batches):
            return skipped
        merged = concat(record, parts)
        keys = lake.sort_key(record)
        if keys and merged.num_rows > 1:  # stable: rows of one venue event keep their order
            merged = merged.take(pc.sort_indices(merged, [(k, "ascending") for k in keys]))
        stored = merged.drop_columns(list(lake.PARTITION_KEYS))
        meta = dict(stored.schema.metadata or {})
        meta[_TOKENS_KEY] = json.dumps(tokens[-self._sink.dedup_window:]).encode()
        lake.write_parquet_atomic(stored.replace_schema_metadata(meta), path,
                                  compression_level=LAKE_ZSTD_LEVEL)
        return skipped


class TableSink(FixedPartitionedSink[pa.Table, SinkStats]):
    """Write ``(table_name, pa.Table)`` items to ClickHouse and/or the lake from one worker.

    Args:
        dsn: warehouse DSN (``chdb:...`` or ``http(s)://...``), or None for no ClickHouse.
        lake_root: lake root directory, or None for no lake.
        tables: record names this sink takes (others are counted in ``ignored``); None: all.
        idempotent: False gives a plain append (the non-idempotent control).
        dedup_window: how many recent batch tokens ClickHouse and each lake file remember.
        metrics: a :class:`tapeflow.live.prom.FlowMetrics` to count rows out, or None.
        flush_s: the lake is rewritten at most this often (and at every snapshot and the end).
    """

    def __init__(self, *, dsn: str | None = None, lake_root: Path | str | None = None,
                 tables: Collection[str] | None = None, idempotent: bool = True,
                 dedup_window: int = DEDUP_WINDOW, metrics: Any = None, flush_s: float = 1.0) -> None:
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


def _read_tokens(path: Path) -> list[str]:
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"reading {path} failed: {exc}") from exc
    return list(json.loads(meta.get(_TOKENS_KEY, b"[]")))


def _without_keys(old: pa.Table, new: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    if old.num_rows == 0:
        return old
    mine = pl.from_arrow(old.select(list(keys))).hash_rows(seed=0).to_numpy()
    theirs = pl.from_arrow(new.select(list(keys))).hash_rows(seed=0).to_numpy()
    return old.filter(pa.array(~np.isin(mine, theirs)))


def _literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(int(value))  # type: ignore[call-overload]


def _delete_keys(wh: Warehouse, name: str, table: pa.Table, keys: tuple[str, ...]) -> None:
    tuples = ", ".join("(" + ", ".join(_literal(v) for v in row.values()) + ")"
                       for row in table.select(list(keys)).to_pylist())
    where = f"({', '.join(keys)}) IN ({tuples})"
    # A restatement is rare: look before paying for a lightweight-delete mutation.
    if wh.count(ALL_RECORDS[name], where):
        wh.client.command(f"DELETE FROM {name} WHERE {where}")
