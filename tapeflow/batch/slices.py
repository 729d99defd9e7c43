"""A lake partition read in slices (row groups), so a step never needs a whole day in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.batch.targets import Target
from tapeflow.schemas import RecordType
from tapeflow.storage import lake as lake_store
from tapeflow.storage.parts import list_parts

__all__ = ["SLICE_ROWS", "read_slices"]

# rows per slice: ~80 MB of MBO order events, a few row groups of the writer's files
SLICE_ROWS = 1_000_000


def read_slices(record: RecordType, lake: Path, t: Target, rows: int = SLICE_ROWS) -> Iterator[pa.Table]:
    """The rows of one partition in the lake's order (as :func:`tapeflow.storage.lake.read`), in slices.

    A partition of one file (what a replace or a compaction leaves) is read slice by slice from the
    file opened once (a writer swapping the partition meanwhile does not change what is read); one
    still holding appended parts is read whole, since its parts interleave (the live sink's, until
    compacted). A missing partition yields nothing.
    """
    directory = lake_store.partition_dir(lake, record, t.venue, t.symbol, t.date)
    parts = list_parts(directory)
    if len(parts) == 1:
        try:
            source = pq.ParquetFile(directory / parts[0].name)
        except FileNotFoundError:
            source = None  # swapped between the listing and the open: read it as the lake does
        if source is not None:
            for batch in source.iter_batches(rows):
                yield lake_store.with_partition(record, pa.Table.from_batches([batch]), t.venue, t.symbol,
                                                directory)
            return
    table = lake_store.read(record, lake, venue=t.venue, symbol=t.symbol, date=t.date)
    if table.num_rows:
        yield table
