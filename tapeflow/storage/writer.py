"""The one writer: how rows reach the Parquet lake and the ClickHouse warehouse.

Every write of the CLI's ``ingest``, the Dagster assets and the live flow's sinks goes through
:class:`Writer`, to the lake, the warehouse or both, in one of three modes:

- **replace**: every (venue, symbol, UTC day) partition the rows touch becomes exactly those rows
  (re-writing the same rows is idempotent); partitions listed in ``partitions`` that the rows do
  not touch are emptied. The warehouse swaps the same slices in (``REPLACE PARTITION``).
- **merge**: the rows already in a touched partition that no new row repeats *exactly* survive,
  then all new rows are added: re-loading a file is idempotent, rows another source put there
  survive, and distinct rows are never collapsed, even when they share every key column.
- **append** (:meth:`Writer.append`): a live micro-batch, exactly once under at-least-once
  redelivery when it carries a batch token; the lake gets one immutable part per partition per
  :meth:`Writer.flush`, merged and compacted atomically (:mod:`tapeflow.storage.appender`).

Replace and merge stream: :meth:`Writer.load` takes rows in any number of pieces and commits each
partition once, by one atomic directory swap (:mod:`tapeflow.storage.load`). The lake's Parquet
writes run on the writer's lake threads and ClickHouse's inserts on its warehouse thread, so both
overlap the caller's decoding (pyarrow and chdb release the GIL while they work).
docs/storage.md has the layout and the commit protocol.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pyarrow as pa

from tapeflow.errors import StorageError
from tapeflow.schemas import RecordType
from tapeflow.storage import lake
from tapeflow.storage.appender import FANOUT, MAX_MERGE_BYTES, Appender, FlushStats
from tapeflow.storage.batches import DEDUP_WINDOW, REPLACE_KEYS, last_per_key
from tapeflow.storage.cleanup import Cleaned, clean_lake, drop_orphan_stages
from tapeflow.storage.lake import PartitionWrite
from tapeflow.storage.load import Load, Mode, Slice, WriteResult
from tapeflow.storage.locks import LOCK_TIMEOUT_S, LakeLock
from tapeflow.storage.parts import STAGING
from tapeflow.storage.scope import Scope
from tapeflow.storage.stage import LIVE_STAGES
from tapeflow.storage.warehouse import Warehouse

__all__ = ["Load", "Mode", "Scope", "WriteResult", "Writer", "write"]

# Rows a load keeps in memory per record type before spilling sorted runs (~150 MB of MBO rows).
SPILL_ROWS = 2_000_000
# Threads writing the lake's Parquet (pyarrow releases the GIL): two keep a core busy through fsyncs.
LAKE_THREADS = 2
# Lake writes queued or running at once, all loads together; a load's add() waits past that.
LAKE_INFLIGHT = 4
# A server's ``_stage_*`` table older than this is taken for an orphan (a load's stage lives as long
# as the load; a chdb warehouse belongs to one process, so there every stage not in use is one).
STALE_STAGE_S = 24 * 3600.0


class Writer:
    """Writes record tables to the lake and/or the warehouse; any number at once share a lake.

    Opening a writer cleans what writers killed mid-commit left (:mod:`tapeflow.storage.cleanup`,
    in :attr:`cleaned`); each commit holds the lake's commit lock (:mod:`tapeflow.storage.locks`),
    so concurrent writers of one lake take turns to commit and never lose each other's rows.

    Args:
        lake: the lake root, or None to write the warehouse only.
        warehouse: a :class:`Warehouse` (borrowed), a DSN (opened and closed here), or None.
        zstd_level: compression of lake part files.
        dedup_window: batch tokens a lake partition remembers (ClickHouse: inserts per table).
        fanout: appends per level of the lake's tiered merge.
        max_merge_bytes: appended parts are not merged past this size (bounds a flush's cost).
        spill_rows: rows a load buffers per record type before spilling a sorted run to disk.
        lock_timeout_s: how long a commit waits for another writer's commit into the same lake
            before it raises :class:`StorageError`.

    Raises:
        StorageError: the warehouse cannot be opened, or start-up cleanup could not take the lock.
    """

    def __init__(self, lake: Path | str | None = None, warehouse: Warehouse | str | None = None, *,
                 zstd_level: int = lake.ZSTD_LEVEL, dedup_window: int = DEDUP_WINDOW, fanout: int = FANOUT,
                 max_merge_bytes: int = MAX_MERGE_BYTES, spill_rows: int = SPILL_ROWS,
                 lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.lake = Path(lake) if lake is not None else None
        self._lock = LakeLock(self.lake, lock_timeout_s) if self.lake is not None else None
        self._owns_warehouse = isinstance(warehouse, str)
        self.warehouse = Warehouse(warehouse) if isinstance(warehouse, str) else warehouse
        self.zstd_level = zstd_level
        self.dedup_window = dedup_window
        self.spill_rows = spill_rows
        self._warehouse_thread: ThreadPoolExecutor | None = None
        self._lake_threads: ThreadPoolExecutor | None = None
        self._lake_inflight: deque[Future[Any]] = deque()
        self._appender = (Appender(self.lake, zstd_level=zstd_level, dedup_window=dedup_window, fanout=fanout,
                                   max_merge_bytes=max_merge_bytes) if self.lake is not None else None)
        try:
            self.cleaned = self._clean()
        except BaseException:
            self._release()
            raise

    def _clean(self) -> Cleaned:
        cleaned = Cleaned()
        if self.lake is not None and (self.lake / STAGING).exists():
            with self.committing():
                clean_lake(self.lake, self.warehouse, cleaned)
        if self.warehouse is not None:
            drop_orphan_stages(self.warehouse, set(LIVE_STAGES), STALE_STAGE_S, cleaned)
        return cleaned

    def committing(self) -> AbstractContextManager[object]:
        """The lake's commit lock (nothing without a lake): hold it while changing partitions."""
        return self._lock if self._lock is not None else nullcontext()

    def replace(self, record: RecordType, table: pa.Table, *,
                partitions: list[Slice] | None = None, scope: Scope | None = None) -> WriteResult:
        """Make every partition ``table`` touches (and every one in ``partitions``) exactly its rows;
        under a ``scope``, make that producer's rows there exactly its rows and keep the others."""
        with self.load(record, "replace", partitions=partitions, scope=scope) as load:
            load.add(table)
            return load.commit()

    def merge(self, record: RecordType, table: pa.Table) -> WriteResult:
        """Add ``table`` to the partitions it touches, keeping the old rows it does not repeat exactly."""
        with self.load(record, "merge") as load:
            load.add(table)
            return load.commit()

    def load(self, record: RecordType, mode: Mode = "replace", *,
             partitions: list[Slice] | None = None, scope: Scope | None = None) -> Load:
        """Start a streaming replace or merge of ``record``: :meth:`Load.add` pieces, then commit.

        ``scope`` (replace only): the replace swaps only the rows the producer owns
        (:class:`~tapeflow.storage.scope.Scope`) in each partition and keeps every other row; a
        row added outside the scope is a :class:`StorageError` (it could never be replaced)."""
        if mode not in ("replace", "merge"):
            raise StorageError(f"write mode was {mode!r}; expected 'replace' or 'merge'")
        if scope is not None:
            if mode != "replace":
                raise StorageError(f"a scope applies to a replace, not a {mode}")
            scope.check(record)
        return Load(self, record, mode, partitions or [], scope)

    def append(self, record: RecordType, table: pa.Table, *, token: str | None = None) -> None:
        """Append one micro-batch: to ClickHouse now, to the lake at the next :meth:`flush`.

        Args:
            record: the record type of ``table``.
            table: the rows.
            token: the batch's identity (:func:`tapeflow.storage.batches.batch_token`): a batch
                whose token a store has already seen is skipped, and rows of ``REPLACE_KEYS`` tables
                replace the rows under their key. None: a plain append (no dedup, no replacement).
        """
        table = lake.conform(record, table)
        if token is not None and record.name in REPLACE_KEYS:
            table = last_per_key(table, REPLACE_KEYS[record.name])
        if self.warehouse is not None:
            self.warehouse.insert_batch(record, table, token=token, dedup_window=self.dedup_window)
        if self._appender is not None:
            self._appender.add(record, table, token)

    def flush(self) -> list[PartitionWrite]:
        """Commit the appended batches to the lake: one part per partition, plus the merges due."""
        if self._appender is None or not self._appender.buffered:
            return []  # without taking the lock: a live sink flushes often, mostly nothing
        with self.committing():
            return self._appender.flush()

    def compact(self) -> list[PartitionWrite]:
        """Flush, then fold every partition appended to into one ``part-0.parquet``."""
        if self._appender is None or self._appender.idle:
            return []
        with self.committing():
            return self._appender.compact()

    @property
    def stats(self) -> FlushStats:
        """Bytes and rows the appends, merges and compactions of this writer wrote."""
        return self._appender.stats if self._appender is not None else FlushStats()

    def close(self) -> None:
        """Flush and compact the appends, and close a warehouse opened here."""
        try:
            self.compact()
        finally:
            self._release()

    def _on_warehouse_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._warehouse_thread is None:
            self._warehouse_thread = ThreadPoolExecutor(1, thread_name_prefix="tapeflow-warehouse")
        return self._warehouse_thread.submit(fn, *args, **kwargs)

    def _on_lake_thread(self, fn: Any, *args: Any) -> Future[Any]:
        """Run ``fn`` on a lake thread, after waiting while ``LAKE_INFLIGHT`` jobs are queued or running."""
        if self._lake_threads is None:
            self._lake_threads = ThreadPoolExecutor(LAKE_THREADS, thread_name_prefix="tapeflow-lake")
        while len(self._lake_inflight) >= LAKE_INFLIGHT:
            self._lake_inflight.popleft().exception()  # its owner reads the outcome
        job = self._lake_threads.submit(fn, *args)
        self._lake_inflight.append(job)
        return job

    def _release(self) -> None:
        if self._lake_threads is not None:
            self._lake_threads.shutdown()
            self._lake_threads = None
            self._lake_inflight.clear()
        if self._warehouse_thread is not None:
            self._warehouse_thread.shutdown()
            self._warehouse_thread = None
        if self._owns_warehouse and self.warehouse is not None:
            self.warehouse.close()
            self.warehouse = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self._release()  # what was buffered is not written on the way out of an error


def write(record: RecordType, table: pa.Table, root: Path | str,
          mode: Literal["replace", "merge", "append"] = "replace") -> list[PartitionWrite]:
    """Write ``table`` to the lake at ``root`` in one call: a :class:`Writer` for one table.

    ``append`` adds the rows as they are (no token: nothing is deduplicated) and compacts.

    Returns:
        The files committed, in (venue, symbol, date) order.

    Raises:
        StorageError: unknown mode, a table that is not of ``record``, or a failed write.
    """
    with Writer(root) as writer:
        if mode == "append":
            writer.append(record, table)
            return writer.compact()
        if mode == "merge":
            return writer.merge(record, table).partitions
        if mode == "replace":
            return writer.replace(record, table).partitions
    raise StorageError(f"lake write mode was {mode!r}; expected 'replace', 'merge' or 'append'")
