"""A streaming replace or merge of one record type: rows in, one atomic swap per partition out.

The work runs as a pipeline over the partitions (venue, symbol, UTC day) the rows fall into, so
decoding, the lake's Parquet writes and ClickHouse's insert overlap on every core:

- the caller's thread (:meth:`Load.add`) only splits rows into partitions and buffers them;
- a partition the input has moved past (an :meth:`Load.add` that brings it no rows: a file read
  in time order finishes its days one after the other) is written at once, sorted, as a run in
  the lake's staging area, on the writer's lake threads; at the commit a partition whose only rows
  are that run gets the run itself, renamed, so its rows are written once. A partition that gets
  rows again after its run was written is not written early again (it is merged at the commit, as
  partitions spilled past ``spill_rows`` are);
- the warehouse gets each such partition as one block of a streaming insert into the load's stage
  (:class:`tapeflow.storage.stage.BlockStream`: one part per block, nothing to scatter), also as
  soon as the input moves past it, or once ``WAREHOUSE_BATCH_ROWS`` of it are waiting;
- :meth:`Load.commit` builds and swaps the partitions in on the lake threads, then swaps the
  staged ClickHouse partitions in.

The lake's files and the warehouse's rows are exactly those of the one-thread path: the same rows
in the same order per partition, the same part files (a run renamed is the file the commit would
have written), the same commit points. Memory stays bounded: at most ``LAKE_INFLIGHT`` lake writes
are queued or running (:meth:`add` waits past that) and the warehouse side holds two sends.
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.errors import StorageError
from tapeflow.schemas import RecordType
from tapeflow.storage import lake
from tapeflow.storage.cleanup import write_intent
from tapeflow.storage.compact import Run, merge_runs, write_part
from tapeflow.storage.lake import PartitionWrite
from tapeflow.storage.parts import BASE, Part, list_parts, new_version, read_meta, swap, temp_path
from tapeflow.storage.scope import Scope
from tapeflow.storage.stage import BlockStream, Stage

if TYPE_CHECKING:
    from tapeflow.storage.writer import Writer

Mode = Literal["replace", "merge"]
Slice = tuple[str, str, str]  # (venue, symbol, YYYY-MM-DD)
# A partition's rows sent to ClickHouse once this many wait (a day that never ends within a load
# still streams); fewer, larger blocks make fewer parts.
WAREHOUSE_BATCH_ROWS = 262_144
# Rows per streaming insert before it is committed and the next one starts (the engine's queue).
WAREHOUSE_INSERT_ROWS = 2_097_152
# Rows waiting for the warehouse, all partitions together, before every partition sends what it has.
WAREHOUSE_WAITING_ROWS = 1_048_576
# Warehouse sends queued or running at once; add() waits past that.
WAREHOUSE_INFLIGHT = 2


@dataclass
class WriteResult:
    """What one replace or merge wrote.

    Attributes:
        partitions: lake files committed, one per partition, in (venue, symbol, date) order.
        warehouse_rows: rows loaded into ClickHouse.
        spilled_bytes: bytes of the sorted runs a streaming load spilled and merged at its commit
            (a run that became its partition's file as it was is not counted).
    """

    partitions: list[PartitionWrite] = field(default_factory=list)
    warehouse_rows: int = 0
    spilled_bytes: int = 0

    @property
    def bytes_written(self) -> int:
        return sum(w.bytes_written for w in self.partitions)


@dataclass
class _RunFile:
    """A sorted run written (or being written) to staging on a lake thread; ``size`` gives its bytes."""

    path: Path
    size: Future[int]


@dataclass
class _Pending:
    """One partition of a load: rows buffered for the lake, runs written, rows waiting for the warehouse."""

    seq: int  # the partition's highest append sequence number: the new base keeps it
    existed: bool  # held parts when the load began: a merge must read them
    buffer: list[pa.Table] = field(default_factory=list)  # rows with their partition columns
    buffered: int = 0
    runs: list[_RunFile] = field(default_factory=list)
    hashes: list[np.ndarray] = field(default_factory=list)
    unsent: list[pa.Table] = field(default_factory=list)
    waiting: int = 0  # rows in ``unsent``
    closed: bool = False  # written early once: rows arriving later make it a merge at the commit
    eager: bool = True


class Load:
    """A streaming replace or merge of one record type (from :meth:`Writer.load`).

    :meth:`add` pieces in any order of partitions; rows of one partition keep the order they
    arrive in (ties of the sort key). Nothing is visible before :meth:`commit`, which swaps each
    partition in at once; :meth:`abort` (or leaving a ``with`` block early) discards everything.
    Under a ``scope`` (a replace), each partition's rows outside the scope are kept: the new
    version is those rows merged with the added ones, built and swapped in the same way.
    """

    def __init__(self, writer: Writer, record: RecordType, mode: Mode, partitions: list[Slice],
                 scope: Scope | None = None) -> None:
        self.writer, self.record, self.mode, self.scope = writer, record, mode, scope
        self._listed = list(partitions)
        self._pending: dict[Slice, _Pending] = {}
        self._open: set[Slice] = set()  # partitions holding buffered or waiting rows
        self._buffered_rows = 0  # rows in the partitions' buffers (the lake's memory)
        self._waiting_rows = 0  # rows waiting for the warehouse
        self._lake_jobs: list[Future[Any]] = []
        self._sends: deque[Future[Any]] = deque()
        self._stage: Stage | None = None
        self._stream: BlockStream | None = None  # used on the warehouse thread only
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
        if self.scope is not None and not (owned := self.scope.owns(table)).all():
            stray = table.column(self.scope.column).filter(pa.array(~owned)).unique().to_pylist()[:5]
            raise StorageError(f"{self.record.name}: {int((~owned).sum())} rows outside the load's scope "
                               f"({self.scope.column} {stray}, scope {list(self.scope.prefixes)})")
        touched = set()
        for venue, symbol, date, rows in lake.split(table):
            key = (venue, symbol, date)
            touched.add(key)
            pending = self._partition(key)
            if self.writer.lake is not None:
                pending.eager = pending.eager and not pending.closed
                pending.buffer.append(rows)
                pending.buffered += rows.num_rows
                if self.mode == "merge" and pending.existed:
                    pending.hashes.append(lake.row_hashes(_stored(rows)))
            if self._stage is not None:
                pending.unsent.append(rows)
                pending.waiting += rows.num_rows
            self._open.add(key)
        self._buffered_rows += table.num_rows if self.writer.lake is not None else 0
        self._waiting_rows += table.num_rows if self._stage is not None else 0
        self._move_on(touched)
        if self._buffered_rows >= self.writer.spill_rows:
            for key in sorted(self._open):
                self._write_run(self._pending[key])

    def commit(self) -> WriteResult:
        """Swap every partition in (lake), then every slice (warehouse); return what was written."""
        if self._done:
            raise StorageError(f"load of {self.record.name} was already committed or aborted")
        with self.writer.committing():  # one commit into a lake at a time: no writer loses another's rows
            return self._commit()

    def _commit(self) -> WriteResult:
        result = WriteResult()
        intent = None
        self._send(sorted(k for k in self._open if self._pending[k].waiting))
        if self._stage is not None:
            self._sends.append(self.writer._on_warehouse_thread(self._finish_stream))
        if self.writer.lake is not None:  # while the warehouse finishes its inserts
            keys = sorted(set(self._pending) | set(self._listed))
            if self._stage is not None and self.writer.warehouse is not None:
                # a crash between the lake's swaps and the warehouse's: the next writer repairs
                intent = write_intent(self.writer.lake, self.record.name, keys, self.writer.warehouse)
            jobs = [self._lake_job(self._commit_partition, key, self._pending.get(key)) for key in keys]
            for job in jobs:
                write, spilled = job.result()
                result.spilled_bytes += spilled
                if write is not None:
                    result.partitions.append(write)
        self._buffered_rows = 0
        if self._stage is not None:
            self._wait_sends(0)
            stage = self._stage
            result.warehouse_rows = self.writer._on_warehouse_thread(
                stage.commit, self.mode, clear=self._listed, scope=self.scope).result()
            self.writer._on_warehouse_thread(stage.drop).result()
        if intent is not None:
            intent.unlink()
        self._done = True
        return result

    def abort(self) -> None:
        """Discard what was added: the lake and the warehouse stay as they were."""
        if self._done:
            return
        self._done = True
        for job in self._lake_jobs:
            job.exception()  # wait: a run may still be being written; the caller's error is the story
        for pending in self._pending.values():
            for run in pending.runs:
                run.path.unlink(missing_ok=True)
        if self._stage is not None:
            for send in self._sends:
                send.exception()
            self.writer._on_warehouse_thread(self._stage.drop).result()

    def __enter__(self) -> Load:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.abort()

    def _partition(self, key: Slice) -> _Pending:
        pending = self._pending.get(key)
        if pending is None:
            if self.writer.lake is None:
                pending = _Pending(seq=0, existed=False)
            else:
                directory = lake.partition_dir(self.writer.lake, self.record, *key)
                parts = list_parts(directory)
                pending = _Pending(seq=_highest_seq(directory, parts), existed=bool(parts))
            self._pending[key] = pending
        return pending

    def _move_on(self, touched: set[Slice]) -> None:
        """Write early what the input moved past; send the warehouse what is due."""
        due = []
        for key in sorted(self._open):
            pending = self._pending[key]
            if key not in touched:
                if pending.buffer and pending.eager:
                    self._write_run(pending)
                    pending.closed = True
                if pending.waiting:
                    due.append(key)
            elif pending.waiting >= WAREHOUSE_BATCH_ROWS:
                due.append(key)
        if self._waiting_rows >= WAREHOUSE_WAITING_ROWS:
            due = [k for k in sorted(self._open) if self._pending[k].waiting]
        self._send(due)
        self._open = {k for k in self._open if self._pending[k].buffer or self._pending[k].waiting}

    def _lake_job(self, fn: Any, *args: Any) -> Future[Any]:
        job = self.writer._on_lake_thread(fn, *args)
        self._lake_jobs.append(job)
        return job

    def _write_run(self, pending: _Pending) -> None:
        """Hand a partition's buffered rows to a lake thread, to be written as one sorted run."""
        assert self.writer.lake is not None
        if not pending.buffer:
            return
        rows, path = pending.buffer, temp_path(self.writer.lake)
        self._buffered_rows -= pending.buffered
        pending.buffer, pending.buffered = [], 0
        size = self._lake_job(self._write_sorted, rows, path, pending.seq)
        pending.runs.append(_RunFile(path, size))

    def _write_sorted(self, rows: list[pa.Table], path: Path, seq: int) -> int:
        return write_part(self.record, self._sorted(rows), path, tokens=[], seq=seq,
                          zstd_level=self.writer.zstd_level)

    def _sorted(self, rows: list[pa.Table]) -> pa.Table:
        return lake.sort_stable(self.record, _stored(pa.concat_tables(rows)))

    def _send(self, keys: list[Slice]) -> None:
        """Hand the warehouse thread the rows waiting in ``keys``, one block per partition."""
        if self._stage is None or not keys:
            return
        blocks = []
        for key in keys:
            pending = self._pending[key]
            blocks.append(pa.concat_tables(pending.unsent))
            self._waiting_rows -= pending.waiting
            pending.unsent, pending.waiting = [], 0
        self._wait_sends(WAREHOUSE_INFLIGHT - 1)
        self._sends.append(self.writer._on_warehouse_thread(self._stream_blocks, blocks))

    def _stream_blocks(self, blocks: list[pa.Table]) -> None:
        assert self._stage is not None
        for block in blocks:
            if self._stream is None:
                self._stream = self._stage.stream()
            self._stream.add(block)
            if self._stream.rows >= WAREHOUSE_INSERT_ROWS:
                self._finish_stream()

    def _finish_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.finish()

    def _wait_sends(self, keep: int) -> None:
        while len(self._sends) > keep:
            self._sends.popleft().result()

    def _commit_partition(self, key: Slice, pending: _Pending | None) -> tuple[PartitionWrite | None, int]:
        """Build a partition's next version and swap it in (on a lake thread); return it and the
        bytes of the runs it merged."""
        root = self.writer.lake
        assert root is not None
        directory = lake.partition_dir(root, self.record, *key)
        version = new_version(root)
        if pending is None and self.scope is not None and list_parts(directory):
            pending = _Pending(seq=0, existed=True)  # listed, no rows: the producer's rows go, others stay
        if pending is None:  # listed, no rows: the partition is emptied
            swap(root, version, directory)
            return None, 0
        try:
            write, spilled = self._build(key, directory, version, pending)
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        if write.rows == 0:  # a scoped replace left nothing: no empty part file
            (version / BASE).unlink()
            write = None
        swap(root, version, directory)
        for run in pending.runs:
            run.path.unlink(missing_ok=True)
        return write, spilled

    def _build(self, key: Slice, directory: Path, version: Path,
               pending: _Pending) -> tuple[PartitionWrite, int]:
        sizes = [run.size.result() for run in pending.runs]  # written by now, or being written
        # read again under the commit lock: another writer may have committed here since the load began
        current = list_parts(directory)
        seq = max(pending.seq, _highest_seq(directory, current))
        old = current if self.mode == "merge" or self.scope is not None else []
        if old and self.mode == "merge" and not pending.existed:  # empty when the load began: hash now
            pending.hashes = [lake.row_hashes(pq.read_table(run.path)) for run in pending.runs]
            pending.hashes += [lake.row_hashes(_stored(rows)) for rows in pending.buffer]
        out = version / BASE
        spilled = 0
        if not old and len(pending.runs) == 1 and not pending.buffer and seq == pending.seq:
            os.rename(pending.runs[0].path, out)  # one sorted run is already the whole partition
        elif not old and not pending.runs:
            write_part(self.record, self._sorted(pending.buffer), out, tokens=[], seq=seq,
                       zstd_level=self.writer.zstd_level)
        else:
            runs, tokens = self._old_runs(directory, old, pending)
            runs += [Run(path=run.path) for run in pending.runs]
            if pending.buffer:
                runs.append(Run(table=self._sorted(pending.buffer)))
            merge_runs(self.record, runs, out, tokens=tokens[-self.writer.dedup_window:], seq=seq,
                       zstd_level=self.writer.zstd_level)
            spilled = sum(sizes)
        meta = read_meta(out)
        return PartitionWrite(self.record.name, *key, directory / BASE, meta.rows, meta.bytes), spilled

    def _old_runs(self, directory: Path, old: list[Part], pending: _Pending) -> tuple[list[Run], list[str]]:
        if not old:
            return [], []
        tokens = [t for p in old for t in read_meta(directory / p.name).tokens]
        if self.scope is not None:  # a scoped replace: the rows other producers own survive
            return [Run(path=directory / p.name, keep=self.scope.others) for p in old], tokens
        new = np.unique(np.concatenate(pending.hashes)) if pending.hashes else np.empty(0, np.uint64)

        def unrepeated(table: pa.Table) -> pa.Table:
            # by content, not by key: two venue rows may share every key column (quotes of one
            # frame, identical MBO records) and must both survive
            return table.filter(pa.array(~np.isin(lake.row_hashes(table), new)))

        return [Run(path=directory / p.name, keep=unrepeated) for p in old], tokens


def _stored(rows: pa.Table) -> pa.Table:
    return rows.drop_columns(list(lake.PARTITION_KEYS))


def _highest_seq(directory: Path, parts: list[Part]) -> int:
    return max([p.hi for p in parts] + [read_meta(directory / p.name).seq for p in parts if p.is_base],
               default=0)
