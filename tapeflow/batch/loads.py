"""Streaming replace loads of instrument-days: rows reach the lake as they are decoded.

A backfill step hands every decoded piece of an instrument-day to :class:`DayLoads` as it comes
(:class:`~tapeflow.storage.writer.Writer`'s streaming ``load``: pieces buffered, sorted runs
spilled past the writer's ``spill_rows``, merged on commit in bounded memory), and commits the day
once it is complete: each dataset's partition becomes exactly the day's rows, and a dataset the
day has no rows of loses the partition an earlier run wrote (a re-run that now finds nothing never
leaves stale rows behind). The writer never holds the day; only the pieces not yet spilled.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from tapeflow.batch.targets import Target
from tapeflow.schemas import RecordType
from tapeflow.storage.lake import PartitionWrite
from tapeflow.storage.writer import Load, Writer

__all__ = ["DayLoads"]


class DayLoads:
    """One open replace load per (instrument-day, dataset) of the datasets being written.

    Args:
        writer: an open lake writer.
        records: the datasets written (lake dataset name = record name); pieces of others are ignored.
    """

    def __init__(self, writer: Writer, records: Sequence[RecordType]) -> None:
        self.writer = writer
        self.records = {r.name: r for r in records}
        self._open: dict[tuple[Target, str], Load] = {}

    def add(self, t: Target, name: str, rows: pa.Table) -> None:
        """Stream ``rows`` (all of instrument-day ``t``) into the day's partition of dataset ``name``."""
        if name not in self.records or rows.num_rows == 0:
            return
        load = self._open.get((t, name))
        if load is None:
            load = self._open[(t, name)] = self._load(t, name)
        load.add(rows)

    def commit(self, t: Target) -> dict[str, list[PartitionWrite]]:
        """Swap every written dataset's partition of ``t`` in; dataset name -> what was written."""
        out = {}
        for name in self.records:
            load = self._open.pop((t, name), None) or self._load(t, name)
            out[name] = load.commit().partitions
        return out

    def abort(self) -> None:
        """Discard every day not committed yet (the lake keeps what it held)."""
        for load in self._open.values():
            load.abort()
        self._open.clear()

    def _load(self, t: Target, name: str) -> Load:
        return self.writer.load(self.records[name], "replace", partitions=[(t.venue, t.symbol, t.date)])
