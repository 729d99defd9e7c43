"""Response bodies: JSON pages, and whole ranges streamed as Arrow IPC, Parquet or CSV.

JSON keeps integers exact (ns timestamps, 1e-9 prices) and writes NaN as null. The streams write
one record batch at a time, so a download of a long range never holds more than a batch of it in
the server's memory beyond what the history source read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

MEDIA_TYPES = {
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
}


def json_bytes(value: Any) -> bytes:
    """``value`` as JSON (NaN and infinities as null, bytes as text)."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """A table's rows as dictionaries (what a JSON page carries)."""
    return table.to_pylist()


class _Chunks:
    """A write-only file that hands back what was written since the last :meth:`take`."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def stream(batches: Iterable[pa.RecordBatch], schema: pa.Schema, fmt: str) -> Iterator[bytes]:
    """Encode ``batches`` (of ``schema``) as ``fmt`` (arrow, parquet or csv), chunk by chunk."""
    sink = _Chunks()
    if fmt == "csv":
        schema = _csv_schema(schema)
        writer: Any = pacsv.CSVWriter(sink, schema)
    elif fmt == "parquet":
        writer = pq.ParquetWriter(sink, schema, compression="zstd")
    else:
        writer = pa.ipc.new_stream(sink, schema)
    for batch in batches:
        if fmt == "csv":
            batch = _csv_batch(batch, schema)
        if fmt == "parquet":
            writer.write_table(pa.Table.from_batches([batch], schema))
        else:
            writer.write_batch(batch)
        chunk = sink.take()
        if chunk:
            yield chunk
    writer.close()
    yield sink.take()


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    # CSV has no lists: a book snapshot's price and size lists travel as JSON arrays in one cell
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_list(f.type) else f for f in schema])


def _csv_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for column in batch.columns:
        if pa.types.is_list(column.type):
            column = pa.array([None if v is None else orjson.dumps(v).decode() for v in column.to_pylist()],
                              pa.string())
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
