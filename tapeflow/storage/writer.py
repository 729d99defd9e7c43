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

Replace and merge stream: :meth:`Writer.load` takes rows in any number of pieces (sorted runs
spill to the staging area past ``spill_rows``) and commits each partition once, by one atomic
directory swap, merging the runs in bounded memory. The warehouse side of a load runs on a thread
of the writer's own, so ClickHouse inserts overlap decoding and the lake's Parquet writes (chdb
releases the GIL while it works). docs/storage.md has the layout and the commit protocol.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from tapeflow.errors import StorageError
from tapeflow.schemas import RecordType, concat
from tapeflow.storage import lake
from tapeflow.storage.appender import FANOUT, MAX_MERGE_BYTES, Appender, FlushStats
from tapeflow.storage.batches import DEDUP_WINDOW, REPLACE_KEYS, last_per_key
from tapeflow.storage.compact import Run, merge_runs, write_part
from tapeflow.storage.lake import PartitionWrite
from tapeflow.storage.parts import (
    BASE,
    Part,
    list_parts,
    new_version,
    read_meta,
    swap,
    temp_path,
)
from tapeflow.storage.warehouse import Stage, Warehouse

Mode = Literal["replace", "merge"]
# Rows a load keeps in memory per record type before spilling sorted runs (~150 MB of MBO rows).
SPILL_ROWS = 2_000_000
# Rows sent to ClickHouse per insert while a load streams (fewer, larger inserts make fewer parts).
WAREHOUSE_BATCH_ROWS = 262_144
Slice = tuple[str, str, str]  # (venue, symbol, YYYY-MM-DD)


@dataclass
class WriteResult:
    """What one replace or merge wrote.

    Attributes:
        partitions: lake files committed, one per partition, in (venue, symbol, date) order.
        warehouse_rows: rows loaded into ClickHouse.
        spilled_bytes: bytes of the sorted runs a streaming load spilled before its commit.
    """

    partitions: list[PartitionWrite] = field(default_factory=list)
    warehouse_rows: int = 0
    spilled_bytes: int = 0

    @property
    def bytes_written(self) -> int:
        return sum(w.bytes_written for w in self.partitions)


class Writer:
    """Writes record tables to the lake and/or the warehouse (one writer per lake at a time).

    Args:
        lake: the lake root, or None to write the warehouse only.
        warehouse: a :class:`Warehouse` (borrowed), a DSN (opened and closed here), or None.
        zstd_level: compression of lake part files.
        dedup_window: batch tokens a lake partition remembers (ClickHouse: inserts per table).
        fanout: appends per level of the lake's tiered merge.
        max_merge_bytes: appended parts are not merged past this size (bounds a flush's cost).
        spill_rows: rows a load buffers per record type before spilling a sorted run to disk.
    """

    def __init__(self, lake: Path | str | None = None, warehouse: Warehouse | str | None = None, *,
                 zstd_level: int = lake.ZSTD_LEVEL, dedup_window: int = DEDUP_WINDOW, fanout: int = FANOUT,
                 max_merge_bytes: int = MAX_MERGE_BYTES, spill_rows: int = SPILL_ROWS) -> None:
        self.lake = Path(lake) if lake is not None else None
        self._owns_warehouse = isinstance(warehouse, str)
        self.warehouse = Warehouse(warehouse) if isinstance(warehouse, str) else warehouse
        self.zstd_level = zstd_level
        self.dedup_window = dedup_window
        self.spill_rows = spill_rows
        self._warehouse_thread: ThreadPoolExecutor | None = None
        self._appender = (Appender(self.lake, zstd_level=zstd_level, dedup_window=dedup_window, fanout=fanout,
                                   max_merge_bytes=max_merge_bytes) if self.lake is not None else None)

    def replace(self, record: RecordType, table: pa.Table, *,
                partitions: list[Slice] | None = None) -> WriteResult:
        """Make every partition ``table`` touches (and every one in ``partitions``) exactly its rows."""
        with self.load(record, "replace", partitions=partitions) as load:
            load.add(table)
            return load.commit()

    def merge(self, record: RecordType, table: pa.Table) -> WriteResult:
        """Add ``table`` to the partitions it touches, keeping the old rows it does not repeat exactly."""
        with self.load(record, "merge") as load:
            load.add(table)
            return load.commit()

    def load(self, record: RecordType, mode: Mode = "replace", *,
             partitions: list[Slice] | None = None) -> Load:
        """Start a streaming replace or merge of ``record``: :meth:`Load.add` pieces, then commit."""
        if mode not in ("replace", "merge"):
            raise StorageError(f"write mode was {mode!r}; expected 'replace' or 'merge'")
        return Load(self, record, mode, partitions or [])

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
        return self._appender.flush() if self._appender is not None else []

    def compact(self) -> list[PartitionWrite]:
        """Flush, then fold every partition appended to into one ``part-0.parquet``."""
        return self._appender.compact() if self._appender is not None else []

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

    def _release(self) -> None:
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


@dataclass
class _Pending:
    """One partition of a load: rows buffered, runs spilled, hashes for a merge."""

    seq: int  # the partition's highest append sequence number: the new base keeps it
    existed: bool  # held parts when the load began: a merge must read them
    buffer: list[pa.Table] = field(default_factory=list)
    runs: list[Path] = field(default_factory=list)
    hashes: list[np.ndarray] = field(default_factory=list)


class Load:
    """A streaming replace or merge of one record type (from :meth:`Writer.load`).

    :meth:`add` pieces in any order of partitions; rows of one partition keep the order they
    arrive in (ties of the sort key). Nothing is visible before :meth:`commit`, which swaps each
    partition in at once; :meth:`abort` (or leaving a ``with`` block early) discards everything.
    """

    def __init__(self, writer: Writer, record: RecordType, mode: Mode, partitions: list[Slice]) -> None:
        self.writer, self.record, self.mode = writer, record, mode
        self._listed = list(partitions)
        self._pending: dict[Slice, _Pending] = {}
        self._buffered_rows = 0  # rows in the partitions' buffers (the lake's memory)
        self._spilled_bytes = 0
        self._stage: Stage | None = None
        self._to_warehouse: list[pa.Table] = []
        self._to_warehouse_rows = 0
        self._inflight: Future[Any] | None = None  # the warehouse thread's current insert
        if writer.warehouse is not None:
            self._stage = writer._on_warehouse_thread(writer.warehouse.stage, record).result()
        self._done = False

    def add(self, table: pa.Table) -> None:
        """Add rows of the record (any mix of venues, symbols and days)."""
        if self._done:
            raise StorageError(f"load of {self.record.name} was already committed or aborted")
        table = lake.conform(self.record, table)
        if table.num_rows == 0:
            return
        if self.writer.lake is not None:
            for venue, symbol, date, rows in lake.split(table):
                pending = self._partition((venue, symbol, date))
                stored = rows.drop_columns(list(lake.PARTITION_KEYS))
                pending.buffer.append(stored)
                if self.mode == "merge" and pending.existed:
                    pending.hashes.append(lake.row_hashes(stored))
            self._buffered_rows += table.num_rows
            if self._buffered_rows >= self.writer.spill_rows:
                self._spill()
        if self._stage is not None:
            self._to_warehouse.append(table)
            self._to_warehouse_rows += table.num_rows
            if self._to_warehouse_rows >= WAREHOUSE_BATCH_ROWS:
                self._send()

    def commit(self) -> WriteResult:
        """Swap every partition in (lake), then every slice (warehouse); return what was written."""
        if self._done:
            raise StorageError(f"load of {self.record.name} was already committed or aborted")
        result = WriteResult(spilled_bytes=self._spilled_bytes)
        self._send()
        if self.writer.lake is not None:  # while the warehouse thread inserts the last rows
            for key in sorted(set(self._pending) | set(self._listed)):
                write = self._commit_partition(key, self._pending.get(key))
                if write is not None:
                    result.partitions.append(write)
        self._buffered_rows = 0
        if self._stage is not None:
            self._wait()
            stage = self._stage
            result.warehouse_rows = self.writer._on_warehouse_thread(stage.commit, self.mode,
                                                                     clear=self._listed).result()
            self.writer._on_warehouse_thread(stage.drop).result()
        self._done = True
        return result

    def abort(self) -> None:
        """Discard what was added: the lake and the warehouse stay as they were."""
        if self._done:
            return
        self._done = True
        for pending in self._pending.values():
            for run in pending.runs:
                run.unlink(missing_ok=True)
        if self._stage is not None:
            with contextlib.suppress(StorageError):  # discarded anyway; the caller's error is the story
                self._wait()
            self.writer._on_warehouse_thread(self._stage.drop).result()

    def __enter__(self) -> Load:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.abort()

    def _partition(self, key: Slice) -> _Pending:
        pending = self._pending.get(key)
        if pending is None:
            assert self.writer.lake is not None
            directory = lake.partition_dir(self.writer.lake, self.record, *key)
            parts = list_parts(directory)
            pending = self._pending[key] = _Pending(seq=_highest_seq(directory, parts), existed=bool(parts))
        return pending

    def _send(self) -> None:
        """Hand the rows gathered for the warehouse to its thread (after the previous insert)."""
        if self._stage is None or not self._to_warehouse:
            return
        self._wait()
        rows = concat(self.record, self._to_warehouse)
        self._to_warehouse, self._to_warehouse_rows = [], 0
        self._inflight = self.writer._on_warehouse_thread(self._stage.insert, rows)

    def _wait(self) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def _spill(self) -> None:
        self._buffered_rows = 0
        for pending in self._pending.values():
            if pending.buffer:
                pending.runs.append(self._write_run(pending))

    def _write_run(self, pending: _Pending) -> Path:
        assert self.writer.lake is not None
        path = temp_path(self.writer.lake)
        rows = self._sorted(pending)
        self._spilled_bytes += write_part(self.record, rows, path, tokens=[], seq=pending.seq,
                                          zstd_level=self.writer.zstd_level)
        return path

    def _sorted(self, pending: _Pending) -> pa.Table:
        rows = lake.sort_stable(self.record, pa.concat_tables(pending.buffer))
        pending.buffer = []
        return rows

    def _commit_partition(self, key: Slice, pending: _Pending | None) -> PartitionWrite | None:
        root = self.writer.lake
        assert root is not None
        directory = lake.partition_dir(root, self.record, *key)
        version = new_version(root)
        if pending is None:  # listed, no rows: the partition is emptied
            swap(root, version, directory)
            return None
        try:
            write = self._build(key, directory, version, pending)
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        swap(root, version, directory)
        for run in pending.runs:
            run.unlink(missing_ok=True)
        return write

    def _build(self, key: Slice, directory: Path, version: Path, pending: _Pending) -> PartitionWrite:
        old = list_parts(directory) if self.mode == "merge" and pending.existed else []
        out = version / BASE
        if not old and len(pending.runs) == 1 and not pending.buffer:
            os.rename(pending.runs[0], out)  # one sorted run is already the whole partition
        elif not old and not pending.runs:
            write_part(self.record, self._sorted(pending), out, tokens=[], seq=pending.seq,
                       zstd_level=self.writer.zstd_level)
        else:
            runs, tokens = self._old_runs(directory, old, pending)
            runs += [Run(path=p) for p in pending.runs]
            if pending.buffer:
                runs.append(Run(table=self._sorted(pending)))
            merge_runs(self.record, runs, out, tokens=tokens[-self.writer.dedup_window:], seq=pending.seq,
                       zstd_level=self.writer.zstd_level)
        meta = read_meta(out)
        return PartitionWrite(self.record.name, *key, directory / BASE, meta.rows, meta.bytes)

    def _old_runs(self, directory: Path, old: list[Part], pending: _Pending) -> tuple[list[Run], list[str]]:
        if not old:
            return [], []
        new = np.unique(np.concatenate(pending.hashes)) if pending.hashes else np.empty(0, np.uint64)

        def unrepeated(table: pa.Table) -> pa.Table:
            # by content, not by key: two venue rows may share every key column (quotes of one
            # frame, identical MBO records) and must both survive
            return table.filter(pa.array(~np.isin(lake.row_hashes(table), new)))

        tokens = [t for p in old for t in read_meta(directory / p.name).tokens]
        return [Run(path=directory / p.name, keep=unrepeated) for p in old], tokens


def _highest_seq(directory: Path, parts: list[Part]) -> int:
    return max([p.hi for p in parts] + [read_meta(directory / p.name).seq for p in parts if p.is_base],
               default=0)


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
