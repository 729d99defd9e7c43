"""Merge sorted runs of one partition into one part file, in bounded memory.

A run is a part file or a table, each already in :func:`~tapeflow.storage.lake.sort_key` order. The
output is the stable sort of the runs' concatenation (ties keep run order, then row order): exactly
what sorting all rows at once would give, so a partition written in many pieces and compacted equals
the same rows written in one piece. With a single integer sort key (capture time: every raw
dataset) the runs are merged batch by batch, so memory holds one batch per run plus one row group,
however large the partition; other keys (bars: interval, open time) are small and sorted in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.errors import StorageError
from tapeflow.schemas import RecordType
from tapeflow.storage import lake
from tapeflow.storage.parts import fsync_path, with_meta, write_file

BATCH_ROWS = 131_072
# Rows held across all runs at once: many runs (a long day spilled in pieces) read smaller batches.
BUFFER_ROWS = 1_048_576
Filter = Callable[[pa.Table], pa.Table]


@dataclass(frozen=True)
class Run:
    """A sorted run of stored rows (no partition columns): a part file or a table in memory.

    Attributes:
        path: a part file, read batch by batch.
        table: rows in memory (when ``path`` is None).
        keep: applied to every batch read (e.g. drop rows a merge replaces); None keeps all.
    """

    path: Path | None = None
    table: pa.Table | None = None
    keep: Filter | None = None

    def batches(self, rows: int) -> Iterator[pa.Table]:
        if self.path is not None:
            try:
                source = pq.ParquetFile(self.path)
                pieces: Iterator[pa.Table] = (pa.Table.from_batches([b]) for b in source.iter_batches(rows))
            except (OSError, pa.ArrowException) as exc:
                raise StorageError(f"reading {self.path} failed: {exc}") from exc
        else:
            assert self.table is not None
            pieces = (self.table.slice(i, rows) for i in range(0, self.table.num_rows, rows))
        for piece in pieces:
            piece = self.keep(piece) if self.keep is not None else piece
            if piece.num_rows:
                yield piece


def write_part(record: RecordType, rows: pa.Table, out: Path, *, tokens: list[str], seq: int,
               zstd_level: int = lake.ZSTD_LEVEL) -> int:
    """Write stored rows (already sorted) as one part file (fsynced); return its size."""
    schema = with_meta(lake.stored_schema(record), tokens, seq)
    table = pa.Table.from_arrays(rows.select(schema.names).columns, schema=schema)
    options = lake.parquet_options(record, zstd_level)
    return write_file(table, out, row_group_size=lake.ROW_GROUP_ROWS, **options)


def merge_runs(record: RecordType, runs: list[Run], out: Path, *, tokens: list[str], seq: int,
               zstd_level: int = lake.ZSTD_LEVEL, batch_rows: int = BATCH_ROWS) -> int:
    """Write the merge of ``runs`` to ``out`` (fsynced) as one part file; return its row count.

    Args:
        record: the record type of the rows.
        runs: sorted runs, in the order their ties must keep.
        out: the file to write (in the staging area; the caller publishes it).
        tokens: batch tokens the part will hold (its footer metadata).
        seq: the highest append sequence number it covers.
        zstd_level: compression level.
        batch_rows: rows read per run at a time (less when many runs share ``BUFFER_ROWS``).
    """
    schema = with_meta(lake.stored_schema(record), tokens, seq)
    options = lake.parquet_options(record, zstd_level)
    batch_rows = min(batch_rows, max(4_096, BUFFER_ROWS // max(1, len(runs))))
    written = 0
    try:
        with pq.ParquetWriter(out, schema, **options) as writer:  # type: ignore[arg-type]
            groups = _RowGroups(writer, schema)
            for table in _merged(record, runs, batch_rows):
                groups.add(table)
            groups.close()
            written = groups.rows
    except (OSError, pa.ArrowException) as exc:
        out.unlink(missing_ok=True)
        raise StorageError(f"writing {out} failed: {exc}") from exc
    fsync_path(out)
    return written


class _RowGroups:
    """Cuts the merged stream into row groups of ``ROW_GROUP_ROWS``, as a one-shot write would."""

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema) -> None:
        self.writer, self.schema = writer, schema
        self.pending: list[pa.Table] = []
        self.buffered = 0
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.buffered += table.num_rows
        while self.buffered >= lake.ROW_GROUP_ROWS:
            whole = pa.concat_tables(self.pending)
            self._write(whole.slice(0, lake.ROW_GROUP_ROWS))
            rest = whole.slice(lake.ROW_GROUP_ROWS)
            self.pending, self.buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        if self.pending:
            self._write(pa.concat_tables(self.pending))
        elif self.rows == 0:
            self._write(self.schema.empty_table())
        self.pending, self.buffered = [], 0

    def _write(self, table: pa.Table) -> None:
        table = table.select(self.schema.names)
        self.writer.write_table(pa.Table.from_arrays(table.columns, schema=self.schema),
                                row_group_size=lake.ROW_GROUP_ROWS)
        self.rows += table.num_rows


def _merged(record: RecordType, runs: list[Run], batch_rows: int) -> Iterator[pa.Table]:
    keys = lake.sort_key(record)
    schema = lake.stored_schema(record)
    if not keys:
        for run in runs:  # no order to restore: the runs one after another
            yield from (lake.widen(record, t) for t in run.batches(batch_rows))
        return
    if len(keys) > 1 or not pa.types.is_integer(schema.field(keys[0]).type):
        tables = [lake.widen(record, t).select(schema.names) for run in runs for t in run.batches(batch_rows)]
        if tables:
            yield lake.sort_stable(record, pa.concat_tables(tables))
        return
    pieces = [(lake.widen(record, t) for t in run.batches(batch_rows)) for run in runs]
    cursors = [_Cursor(p, keys[0], schema) for p in pieces]
    yield from _merge_by(keys[0], cursors, record)


class _Cursor:
    """The buffered head of one run: rows read but not yet emitted, with their sort keys."""

    def __init__(self, batches: Iterator[pa.Table], key: str, schema: pa.Schema) -> None:
        self._batches, self._key, self._names = batches, key, schema.names
        self.rows: pa.Table | None = None
        self.keys = np.empty(0, np.int64)
        self.exhausted = False
        self.fill()

    def fill(self) -> None:
        piece = next(self._batches, None)
        if piece is None:
            self.exhausted = True
            return
        piece = piece.select(self._names)
        empty = self.rows is None or self.rows.num_rows == 0
        self.rows = piece if empty else pa.concat_tables([self.rows, piece])
        self.keys = np.concatenate([self.keys, piece.column(self._key).to_numpy()])

    def take_below(self, frontier: int | None) -> pa.Table | None:
        """Remove and return the buffered rows whose key is below ``frontier`` (all when None)."""
        if self.rows is None or self.rows.num_rows == 0:
            return None
        n = self.keys.size if frontier is None else int(np.searchsorted(self.keys, frontier, "left"))
        if n == 0:
            return None
        head = self.rows.slice(0, n)
        self.rows, self.keys = self.rows.slice(n), self.keys[n:]
        return head


def _merge_by(key: str, cursors: list[_Cursor], record: RecordType) -> Iterator[pa.Table]:
    # Every unread row of a run has a key >= the last key buffered from it, so rows below the
    # smallest such last key (the frontier) can go out now; rows equal to it wait, because a run
    # earlier in tie order may still hold more of them.
    while True:
        pending = [c for c in cursors if not c.exhausted]
        frontier = min((int(c.keys[-1]) for c in pending), default=None)
        pieces = [p for c in cursors if (p := c.take_below(frontier)) is not None]
        if pieces:
            yield pieces[0] if len(pieces) == 1 else lake.sort_stable(record, pa.concat_tables(pieces))
        if frontier is None:
            return
        for c in pending:
            if int(c.keys[-1]) == frontier:
                c.fill()
