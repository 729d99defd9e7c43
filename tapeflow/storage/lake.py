"""The Parquet lake: layout and reading. ``<root>/<dataset>/venue=<v>/symbol=<s>/date=<YYYY-MM-DD>/``.

A partition directory holds one or more immutable part files (:mod:`tapeflow.storage.parts`): a
compacted ``part-0.parquet`` and/or appended ``part-<lo>-<hi>.parquet``. Everything that writes
the lake goes through :mod:`tapeflow.storage.writer`; this module says where rows go and reads
them back. ``venue`` and ``symbol`` live in the path only (a constant column costs bytes and says
nothing); :func:`read` puts them back with the record's schema. The date is the UTC day of
``ts_event_ns`` (of ``ts_recv_ns`` for rows without a venue time).

Reading a partition lists its parts and reads them; a writer's swap between the two makes a part
vanish, and the read starts over (a part name is never reused with other rows, so a read that
finds every part it listed has read one committed version).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tapeflow.errors import StorageError
from tapeflow.schemas import RecordType, concat
from tapeflow.storage.parts import list_parts, read_meta
from tapeflow.storage.parts import write_parquet_atomic as write_parquet_atomic

PARTITION_KEYS = ("venue", "symbol")
NS_PER_DAY = 86_400_000_000_000
# An empty value (a rejected line that named no symbol) is written as this readable placeholder.
# Not Hive's ``__HIVE_DEFAULT_PARTITION__``: pyarrow reads that as null, and a dataset whose only
# symbol is null cannot be opened (``pyarrow.dataset(..., partitioning="hive")``: "couldn't infer
# type"). A real value spelled like either is percent-encoded, so the mapping stays reversible.
EMPTY_VALUE = "_unknown_"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # lakes written before the placeholder: still read as ""
ROW_GROUP_ROWS = 1_048_576
# Level 3 writes 3x faster than 9 for 1-3% more bytes (bench/ingest.py measures it on the real
# ES MBO and Binance files: 10.1 vs 9.8 bytes per MBO row, 3.86 vs 3.80 per Binance delta).
ZSTD_LEVEL = 3
# A partition being rewritten under a reader is read again; a few tries cover any real contention.
_READ_ATTEMPTS = 20

# Measured on the Binance USD-M capture's 443,521 deltas (see tests/storage/test_lake.py):
# repeated timestamps and update ids compress better as PLAIN + zstd than delta-packed, the
# venue-time column (not the sort key, so jittery) is best delta-packed, and prices and sizes
# repeat enough within a row group for dictionary pages to win.
_PLAIN_COLUMNS = frozenset({"ts_recv_ns", "sequence"})
_DELTA_COLUMNS = frozenset({"ts_event_ns"})
# Order ids are nearly unique, so a dictionary only falls back; split into byte streams they compress
# best (ES MBO day, zstd 3: 8.97 bytes per row for the file against 10.13 with a dictionary, 9.30
# PLAIN, 9.64 delta-packed) and write 14% faster.
_SPLIT_COLUMNS = frozenset({"order_id"})


@dataclass(frozen=True)
class PartitionWrite:
    """One part file the writer committed.

    Attributes:
        dataset: the record name.
        venue, symbol, date: the partition values (date as ``YYYY-MM-DD``).
        path: the file written (a partition's ``part-0.parquet`` after a replace, merge or compaction).
        rows: rows in that file.
        bytes_written: its size on disk.
    """

    dataset: str
    venue: str
    symbol: str
    date: str
    path: Path
    rows: int
    bytes_written: int


def escape(value: str) -> str:
    """A partition value as a safe, reversible path component (URI percent-encoding).

    ``/``, ``=``, ``%``, spaces and non-ASCII are percent-encoded, as are a leading dot (no ``.``,
    ``..`` or hidden names) and the empty string's stand-in, so any venue or symbol maps to one
    directory name that pyarrow's and polars' hive readers (``segment_encoding="uri"``) decode too.
    """
    if value == "":
        return EMPTY_VALUE
    text = quote(value, safe="")
    if text.startswith(".") or text in (EMPTY_VALUE, HIVE_NULL):
        text = f"%{ord(text[0]):02X}{text[1:]}"
    return text


def unescape(component: str) -> str:
    """Inverse of :func:`escape`."""
    return "" if component in (EMPTY_VALUE, HIVE_NULL) else unquote(component)


def day_of(ts_ns: int) -> str:
    """``YYYY-MM-DD`` of a nanosecond UTC timestamp (floor, so -1 ns is 1969-12-31)."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=ts_ns // NS_PER_DAY)).isoformat()


def partition_dir(root: Path, record: RecordType, venue: str, symbol: str, date: str) -> Path:
    """The directory of one partition."""
    return Path(root) / record.name / f"venue={escape(venue)}" / f"symbol={escape(symbol)}" / f"date={date}"


def sort_key(record: RecordType) -> list[str]:
    """Columns a partition is sorted by: capture time, ties kept in the decoder's order.

    Not the venue sequence: DBN snapshot records keep the sequences of the orders they replay,
    so sorting by it would move a snapshot's F_LAST record into the middle of the snapshot and
    a book rebuilt from the lake would publish it half applied. Bars have no capture order of
    their own; they sort by interval and open time.
    """
    if record.name == "bar":
        return ["interval", "ts_event_ns"]
    return ["ts_recv_ns"] if "ts_recv_ns" in record.column_names else []


def stored_schema(record: RecordType) -> pa.Schema:
    """The schema of a part file: the record's, without the partition columns."""
    schema = record.arrow_schema()
    return pa.schema([f for f in schema if f.name not in PARTITION_KEYS], metadata=schema.metadata)


def read(record: RecordType, root: Path, venue: str | None = None, symbol: str | None = None,
         date: str | dt.date | None = None) -> pa.Table:
    """Read a dataset (optionally one venue, symbol and/or date) with the record's schema.

    Partitions are concatenated in (venue, symbol, date) directory order; rows within one are in
    :func:`sort_key` order, ties in the order they were written. A missing dataset reads as an
    empty table.
    """
    day = date.isoformat() if isinstance(date, dt.date) else date
    tables = [
        read_partition(record, path, v, s)
        for v, s, _, path in partitions(record, root, venue=venue, symbol=symbol, date=day)
    ]
    return concat(record, tables)


def partitions(record: RecordType, root: Path, *, venue: str | None = None, symbol: str | None = None,
               date: str | None = None) -> Iterator[tuple[str, str, str, Path]]:
    """``(venue, symbol, date, directory)`` of every partition of a dataset matching the filters.

    Only directories holding at least one committed part count.
    """
    base = Path(root) / record.name
    venue_glob = f"venue={escape(venue)}" if venue is not None else "venue=*"
    symbol_glob = f"symbol={escape(symbol)}" if symbol is not None else "symbol=*"
    date_glob = f"date={date}" if date is not None else "date=*"
    for path in sorted(base.glob(f"{venue_glob}/{symbol_glob}/{date_glob}")):
        if not list_parts(path):
            continue
        d, s, v = path.name, path.parent.name, path.parent.parent.name
        yield unescape(v.partition("=")[2]), unescape(s.partition("=")[2]), d.partition("=")[2], path


def partition_rows(record: RecordType, root: Path, venue: str, symbol: str, date: str) -> int | None:
    """Rows in one partition from its footers (no data read), or None when it does not exist."""
    directory = partition_dir(root, record, venue, symbol, date)
    for _ in range(_READ_ATTEMPTS):
        parts = list_parts(directory)
        if not parts:
            return None
        try:
            return sum(read_meta(directory / p.name).rows for p in parts)
        except StorageError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError):
                raise
    raise StorageError(f"{directory} kept changing while its row count was read")


def read_partition(record: RecordType, directory: Path, venue: str, symbol: str) -> pa.Table:
    """Every row of one partition directory, with the record's schema, in :func:`sort_key` order."""
    for _ in range(_READ_ATTEMPTS):
        parts = list_parts(directory)
        try:
            stored = [widen(record, pq.read_table(directory / p.name)) for p in parts]
        except FileNotFoundError:
            continue  # a writer swapped the partition between the listing and the read: read it again
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"reading {directory} failed: {exc}") from exc
        return with_partition(record, sorted_rows(record, stored), venue, symbol, directory)
    raise StorageError(f"{directory} kept changing while it was read ({_READ_ATTEMPTS} tries)")


def widen(record: RecordType, table: pa.Table) -> pa.Table:
    """``table`` (stored or whole rows) with each column written before its record's column widened
    (an ``i64`` that is ``dec38`` now) cast to the wider type, exactly; other columns as they are."""
    fields = {f.name: f for f in record.fields}
    for i, name in enumerate(table.column_names):
        f = fields.get(name)
        if f is not None and table.column(i).type != f.arrow_type and f.widens_arrow(table.column(i).type):
            table = table.set_column(i, table.schema.field(i).with_type(f.arrow_type),
                                     table.column(i).cast(f.arrow_type))
    return table


def sorted_rows(record: RecordType, tables: list[pa.Table]) -> pa.Table:
    """Part tables (in part order) as one table in :func:`sort_key` order; ties keep part order."""
    tables = [t for t in tables if t.num_rows] or tables[:1]
    if not tables:
        return stored_schema(record).empty_table()
    if len(tables) == 1:
        return tables[0]
    return sort_stable(record, pa.concat_tables([t.select(tables[0].column_names) for t in tables]))


def sort_stable(record: RecordType, table: pa.Table) -> pa.Table:
    """``table`` sorted by :func:`sort_key` (stable: rows of one venue event keep their order, so
    F_LAST stays on the event's last row and a clear stays before its levels)."""
    keys = sort_key(record)
    if not keys or table.num_rows < 2:
        return table
    if len(keys) == 1 and pa.types.is_integer(table.schema.field(keys[0]).type):
        values = table.column(keys[0]).to_numpy()
        if values.size < 2 or bool(np.all(values[1:] >= values[:-1])):
            return table  # already in order: the common case of a capture read in time order
    return table.take(pc.sort_indices(table, [(k, "ascending") for k in keys]))


def with_partition(record: RecordType, stored: pa.Table, venue: str, symbol: str,
                   where: Path | str = "a part") -> pa.Table:
    """A part's rows with the partition columns put back, in the record's column order and schema."""
    n = stored.num_rows
    columns = {name: stored.column(name) for name in stored.column_names}
    columns |= {"venue": pa.repeat(pa.scalar(venue, pa.string()), n),
                "symbol": pa.repeat(pa.scalar(symbol, pa.string()), n)}
    missing = [c for c in record.column_names if c not in columns]
    if missing:
        raise StorageError(f"{where} lacks columns {missing} of {record.name!r}")
    for f in record.fields:
        stored_type = columns[f.name].type
        if stored_type == f.arrow_type:
            continue
        if not f.widens_arrow(stored_type):
            raise StorageError(f"{where}: column {f.name!r} of {record.name!r} is {stored_type}, "
                               f"not {f.arrow_type}; no lossless widening reads it")
        columns[f.name] = columns[f.name].cast(f.arrow_type)  # a part written before the column widened
    return pa.Table.from_arrays([columns[c] for c in record.column_names], schema=record.arrow_schema())


def row_hashes(table: pa.Table) -> np.ndarray:
    """A 64-bit hash of each row's whole content (polars, fixed seed)."""
    if table.num_rows == 0:
        return np.empty(0, np.uint64)
    return pl.from_arrow(table).hash_rows(seed=0).to_numpy()


def conform(record: RecordType, table: pa.Table) -> pa.Table:
    """``table`` cast to the record's schema; a table of another record is a :class:`StorageError`."""
    if table.column_names != record.column_names:
        raise StorageError(
            f"table for {record.name!r} has columns {table.column_names}, expected {record.column_names}"
        )
    if table.schema.equals(record.arrow_schema(), check_metadata=False):
        return table
    try:
        return table.cast(record.arrow_schema())  # a widened column (int64 -> dec38) casts exactly
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise StorageError(f"table for {record.name!r} does not match its schema: {exc}") from exc


def split(table: pa.Table) -> Iterator[tuple[str, str, str, pa.Table]]:
    """``(venue, symbol, date, rows)`` per lake partition of ``table``, in that order.

    Rows keep their relative order within a partition. ``table`` needs ``venue``, ``symbol`` and
    ``ts_event_ns`` columns; rows without a venue time (-1) file under their ``ts_recv_ns`` day.
    """
    if table.num_rows == 0:
        return
    venues, v_idx = _codes(table.column("venue"))
    symbols, s_idx = _codes(table.column("symbol"))
    ts = table.column("ts_event_ns").to_numpy()
    if "ts_recv_ns" in table.column_names:  # as PARTITION_DAY_SQL: capture time when no venue time
        ts = np.where(ts >= 0, ts, table.column("ts_recv_ns").to_numpy())
    days = np.floor_divide(ts, NS_PER_DAY)
    day0 = int(days.min())
    span = int(days.max()) - day0 + 1
    # one int64 per partition, ordered like (venue code, symbol code, day)
    key = (v_idx * len(symbols) + s_idx) * span + (days - day0)
    if key.size < 2 or bool(np.all(key[1:] >= key[:-1])):
        order = None  # already grouped (one instrument-day, or days in order): slices, no copy
        sorted_key = key
    else:
        order = np.argsort(key, kind="stable")  # stable: each partition keeps the decoder's order
        sorted_key = key[order]
    bounds = np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [key.size]])
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        first = start if order is None else int(order[start])
        venue = venues[int(v_idx[first])]
        symbol = symbols[int(s_idx[first])]
        rows = table.slice(start, end - start) if order is None else table.take(pa.array(order[start:end]))
        yield venue, symbol, day_of(int(days[first]) * NS_PER_DAY), rows


def _codes(column: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """The distinct values of a string column and each row's index into them (int64).

    A column holding one value throughout (a decoder's venue, a one-instrument file's symbol) is
    found by comparing its bytes, without hashing every row: the codes are then all zero.
    """
    value = _constant(column)
    if value is not None:
        return [value], np.zeros(len(column), np.int64)
    encoded = pc.dictionary_encode(column).combine_chunks()
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy().astype(np.int64)


def _constant(column: pa.ChunkedArray) -> str | None:
    """The one value of a non-null string column whose rows all hold it, else None."""
    if column.null_count or not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    chunks = [c for c in column.chunks if len(c)]
    if not chunks:
        return None
    width = np.int64 if pa.types.is_large_string(column.type) else np.int32
    first: bytes | None = None
    for chunk in chunks:
        _, offsets_buf, data_buf = chunk.buffers()
        offsets = np.frombuffer(offsets_buf, width)[chunk.offset:chunk.offset + len(chunk) + 1]
        lengths = np.diff(offsets)
        size = int(lengths[0])
        if first is not None and size != len(first) or not bool(np.all(lengths == size)):
            return None
        data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.empty(0, np.uint8)
        rows = data[int(offsets[0]):int(offsets[-1])].reshape(len(chunk), size)
        first = rows[0].tobytes() if first is None else first
        if not bool(np.all(rows == np.frombuffer(first, np.uint8))):
            return None
    return None if first is None else first.decode()


def parquet_options(record: RecordType, zstd_level: int = ZSTD_LEVEL) -> dict[str, object]:
    """``pyarrow.parquet`` writer options of a part file of ``record``."""
    stored = [f for f in record.fields if f.name not in PARTITION_KEYS]
    encodings = {f.name: "PLAIN" for f in stored if f.name in _PLAIN_COLUMNS}
    encodings |= {f.name: "DELTA_BINARY_PACKED" for f in stored if f.name in _DELTA_COLUMNS}
    encodings |= {f.name: "BYTE_STREAM_SPLIT" for f in stored if f.kind == "f64" or f.name in _SPLIT_COLUMNS}
    dictionary = [f.name for f in stored if f.name not in encodings]
    return {
        "compression": "zstd",
        "compression_level": zstd_level,
        "use_dictionary": dictionary,
        "column_encoding": encodings,
        "data_page_size": 1 << 20,
    }
