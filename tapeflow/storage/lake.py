"""The Parquet lake: ``<root>/<dataset>/venue=<v>/symbol=<s>/date=<YYYY-MM-DD>/part-0.parquet``.

One file per partition, written to a temporary name, fsynced, renamed over the old file and the
directory fsynced, so a reader (or a crash) only ever sees a whole old file or a whole new one.
``venue`` and ``symbol`` live in the path only (a constant column costs bytes and says nothing);
:func:`read` puts them back with the record's schema. The date is the UTC day of ``ts_event_ns``.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tapeflow.errors import StorageError
from tapeflow.schemas import RecordType, concat

PART_FILE = "part-0.parquet"
PARTITION_KEYS = ("venue", "symbol")
NS_PER_DAY = 86_400_000_000_000
# Hive's spelling of "no value": an empty symbol (e.g. a rejected line that had none) is written so.
EMPTY_VALUE = "__HIVE_DEFAULT_PARTITION__"
ROW_GROUP_ROWS = 1_048_576
ZSTD_LEVEL = 9

# Measured on the Binance USD-M capture's 443,521 deltas (see tests/storage/test_lake.py):
# repeated timestamps and update ids compress better as PLAIN + zstd than delta-packed, the
# venue-time column (not the sort key, so jittery) is best delta-packed, and prices and sizes
# repeat enough within a row group for dictionary pages to win.
_PLAIN_COLUMNS = frozenset({"ts_recv_ns", "sequence"})
_DELTA_COLUMNS = frozenset({"ts_event_ns"})

Mode = Literal["replace", "merge", "append"]


@dataclass(frozen=True)
class PartitionWrite:
    """One partition file written by :func:`write`.

    Attributes:
        dataset: the record name.
        venue, symbol, date: the partition values (date as ``YYYY-MM-DD``).
        path: the final file.
        rows: rows in the file after the write (after a merge, the union).
        bytes_written: size of the file on disk.
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
    if text.startswith(".") or text == EMPTY_VALUE:
        text = f"%{ord(text[0]):02X}{text[1:]}"
    return text


def unescape(component: str) -> str:
    """Inverse of :func:`escape`."""
    return "" if component == EMPTY_VALUE else unquote(component)


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


def write(record: RecordType, table: pa.Table, root: Path, mode: Mode = "replace") -> list[PartitionWrite]:
    """Write ``table`` into the lake, one file per (venue, symbol, UTC date of ts_event_ns).

    Args:
        record: the record type of ``table`` (names the dataset).
        table: rows of ``record``; any order, any mix of venues, symbols and days.
        root: the lake root.
        mode: ``replace`` makes each touched partition exactly these rows (re-writing the same
            rows is idempotent); ``merge`` keeps the rows already there that no row of ``table``
            repeats exactly, then adds all of ``table`` (re-loading a file is idempotent, rows of
            another source survive, and distinct rows are never collapsed, even when they share
            a key); ``append`` adds ``table`` to what is there (later passes of one run).
            Partitions not present in ``table`` are never touched.

    Returns:
        One entry per partition written, in (venue, symbol, date) order.

    Raises:
        StorageError: unknown mode, a table that is not of ``record``, or a failed write.
    """
    if mode not in ("replace", "merge", "append"):
        raise StorageError(f"lake write mode was {mode!r}; expected 'replace', 'merge' or 'append'")
    table = _conform(record, table)
    out = []
    for venue, symbol, date, part in split(table):
        path = partition_dir(root, record, venue, symbol, date) / PART_FILE
        if mode != "replace" and path.exists():
            old = _read_file(record, path, venue, symbol)
            part = concat(record, [old if mode == "append" else unrepeated(old, part), part])
        part = _sorted(record, part)
        size = write_parquet_atomic(part.drop_columns(list(PARTITION_KEYS)), path, **_parquet_options(record))
        out.append(PartitionWrite(record.name, venue, symbol, date, path, part.num_rows, size))
    return out


def read(record: RecordType, root: Path, venue: str | None = None, symbol: str | None = None,
         date: str | dt.date | None = None) -> pa.Table:
    """Read a dataset (optionally one venue, symbol and/or date) with the record's schema.

    Partitions are concatenated in (venue, symbol, date) directory order; rows within one are in
    the order written (sorted by :func:`sort_key`). A missing dataset reads as an empty table.
    """
    day = date.isoformat() if isinstance(date, dt.date) else date
    tables = [
        _read_file(record, path, v, s)
        for v, s, _, path in partitions(record, root, venue=venue, symbol=symbol, date=day)
    ]
    return concat(record, tables)


def partitions(record: RecordType, root: Path, *, venue: str | None = None, symbol: str | None = None,
               date: str | None = None) -> Iterator[tuple[str, str, str, Path]]:
    """``(venue, symbol, date, file)`` of every partition of a dataset matching the filters."""
    base = Path(root) / record.name
    venue_glob = f"venue={escape(venue)}" if venue is not None else "venue=*"
    symbol_glob = f"symbol={escape(symbol)}" if symbol is not None else "symbol=*"
    date_glob = f"date={date}" if date is not None else "date=*"
    for path in sorted(base.glob(f"{venue_glob}/{symbol_glob}/{date_glob}/{PART_FILE}")):
        d, s, v = path.parent.name, path.parent.parent.name, path.parent.parent.parent.name
        yield unescape(v.partition("=")[2]), unescape(s.partition("=")[2]), d.partition("=")[2], path


def unrepeated(old: pa.Table, new: pa.Table) -> pa.Table:
    """The rows of ``old`` whose whole content no row of ``new`` repeats (a 64-bit row hash).

    Merging by content rather than by key: two venue rows may share every key column (quotes
    of one frame, identical MBO records) and must both survive.
    """
    if old.num_rows == 0 or new.num_rows == 0:
        return old
    seen = pl.from_arrow(new).hash_rows(seed=0).to_numpy()
    mine = pl.from_arrow(old).hash_rows(seed=0).to_numpy()
    return old.filter(pa.array(~np.isin(mine, seen)))


def _conform(record: RecordType, table: pa.Table) -> pa.Table:
    if table.column_names != record.column_names:
        raise StorageError(
            f"table for {record.name!r} has columns {table.column_names}, expected {record.column_names}"
        )
    try:
        return table.cast(record.arrow_schema())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise StorageError(f"table for {record.name!r} does not match its schema: {exc}") from exc


def split(table: pa.Table) -> Iterator[tuple[str, str, str, pa.Table]]:
    """``(venue, symbol, date, rows)`` per lake partition of ``table``, in that order.

    Rows keep their relative order within a partition. ``table`` needs ``venue``, ``symbol`` and
    ``ts_event_ns`` columns; rows without a venue time (-1) file under their ``ts_recv_ns`` day.
    """
    if table.num_rows == 0:
        return
    venues = pc.dictionary_encode(table.column("venue")).combine_chunks()
    symbols = pc.dictionary_encode(table.column("symbol")).combine_chunks()
    ts = table.column("ts_event_ns").to_numpy()
    if "ts_recv_ns" in table.column_names:  # as PARTITION_DAY_SQL: capture time when no venue time
        ts = np.where(ts >= 0, ts, table.column("ts_recv_ns").to_numpy())
    days = np.floor_divide(ts, NS_PER_DAY)
    v_idx, s_idx = venues.indices.to_numpy(), symbols.indices.to_numpy()
    # lexsort is stable, so each partition keeps the decoder's order for equal sort keys
    order = np.lexsort((days, s_idx, v_idx))
    keys = np.stack([v_idx[order], s_idx[order], days[order]])
    bounds = np.flatnonzero(np.any(keys[:, 1:] != keys[:, :-1], axis=0)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(order)]])
    for start, end in zip(starts, ends, strict=True):
        first = order[start]
        venue = venues.dictionary[v_idx[first]].as_py()
        symbol = symbols.dictionary[s_idx[first]].as_py()
        yield venue, symbol, day_of(int(days[first]) * NS_PER_DAY), table.take(pa.array(order[start:end]))


def _sorted(record: RecordType, table: pa.Table) -> pa.Table:
    # Arrow's sort is stable: rows of one venue event (same capture time and update id) keep
    # their order, so F_LAST stays on the event's last row and a clear stays before its levels.
    keys = sort_key(record)
    if not keys or table.num_rows < 2:
        return table
    return table.take(pc.sort_indices(table, [(k, "ascending") for k in keys]))


def _parquet_options(record: RecordType) -> dict[str, object]:
    stored = [f for f in record.fields if f.name not in PARTITION_KEYS]
    encodings = {f.name: "PLAIN" for f in stored if f.name in _PLAIN_COLUMNS}
    encodings |= {f.name: "DELTA_BINARY_PACKED" for f in stored if f.name in _DELTA_COLUMNS}
    encodings |= {f.name: "BYTE_STREAM_SPLIT" for f in stored if f.kind == "f64"}
    dictionary = [f.name for f in stored if f.name not in encodings]
    return {
        "compression": "zstd",
        "compression_level": ZSTD_LEVEL,
        "use_dictionary": dictionary,
        "column_encoding": encodings,
        "row_group_size": ROW_GROUP_ROWS,
        "data_page_size": 1 << 20,
    }


def write_parquet_atomic(table: pa.Table, path: Path, **options: object) -> int:
    """Write one Parquet file (zstd) by temp file + fsync + rename + directory fsync.

    Args:
        table: any Arrow table.
        path: the final file; missing parent directories are created.
        options: ``pyarrow.parquet.write_table`` options overriding the zstd defaults.

    Returns:
        The size of the file written, in bytes.

    Raises:
        StorageError: the write failed (the previous file, if any, is left as it was).
    """
    path = Path(path)
    options = {"compression": "zstd", "compression_level": ZSTD_LEVEL} | options
    created = _make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as sink:
            pq.write_table(table, sink, **options)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, path)
    except (OSError, pa.ArrowException) as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"writing {path} failed: {exc}") from exc
    # the rename is only durable once the directory entry is; new parents need theirs too
    for directory in [path.parent, *created]:
        _fsync_dir(directory)
    return path.stat().st_size


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the parents of what was created."""
    missing = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    directory.mkdir(parents=True, exist_ok=True)
    return [p.parent for p in missing]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_file(record: RecordType, path: Path, venue: str, symbol: str) -> pa.Table:
    try:
        stored = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"reading {path} failed: {exc}") from exc
    n = stored.num_rows
    columns = {name: stored.column(name) for name in stored.column_names}
    columns |= {"venue": pa.repeat(pa.scalar(venue, pa.string()), n),
                "symbol": pa.repeat(pa.scalar(symbol, pa.string()), n)}
    missing = [c for c in record.column_names if c not in columns]
    if missing:
        raise StorageError(f"{path} lacks columns {missing} of {record.name!r}")
    return pa.Table.from_arrays([columns[c] for c in record.column_names], schema=record.arrow_schema())
