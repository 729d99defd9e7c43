"""One declaration per record type; Arrow schema and ClickHouse DDL are derived from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.errors import TapeflowError

# The UTC day a row belongs to: venue time, or capture time where the venue gave none (-1), so a
# dead letter without a venue time files under the day it was received, not 1969-12-31.
PARTITION_DAY_SQL = "toDate(fromUnixTimestamp64Nano(if(ts_event_ns >= 0, ts_event_ns, ts_recv_ns)))"

# kind -> (arrow type, ClickHouse type, numpy dtype or None for object columns)
_KINDS: dict[str, tuple[pa.DataType, str, str | None]] = {
    "i64": (pa.int64(), "Int64", "int64"),
    "i32": (pa.int32(), "Int32", "int32"),
    "u64": (pa.uint64(), "UInt64", "uint64"),
    "u32": (pa.uint32(), "UInt32", "uint32"),
    "u16": (pa.uint16(), "UInt16", "uint16"),
    "u8": (pa.uint8(), "UInt8", "uint8"),
    "f64": (pa.float64(), "Float64", "float64"),
    "bool": (pa.bool_(), "Bool", "bool"),
    "str": (pa.string(), "String", None),
    "lstr": (pa.string(), "LowCardinality(String)", None),
    "bytes": (pa.binary(), "String", None),
    "list_i64": (pa.list_(pa.int64()), "Array(Int64)", None),
    # An integer of up to 38 digits, for an amount whose nanos can pass int64's 9.2e18 (Bybit's
    # shared USDT insurance pool, 1.01e10 units): the widest integer Arrow and ClickHouse both hold
    # exactly and read back as the same type (ClickHouse's Int128 has no Arrow twin).
    "dec38": (pa.decimal128(38, 0), "Decimal(38, 0)", None),
}

# kind -> the kinds a column of it may have been stored as before, each read back without loss: the
# lake and the warehouse widen such a column when they meet it (docs/storage.md, "Widened columns").
_OLDER_KINDS: dict[str, tuple[str, ...]] = {"dec38": ("i64",)}


@dataclass(frozen=True)
class Field:
    """One column: name (with its unit), kind (see ``_KINDS``) and a one-line meaning."""

    name: str
    kind: str
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise TapeflowError(f"field {self.name!r} has unknown kind {self.kind!r}")

    @property
    def arrow_type(self) -> pa.DataType:
        return _KINDS[self.kind][0]

    @property
    def clickhouse_type(self) -> str:
        return _KINDS[self.kind][1]

    @property
    def numpy_dtype(self) -> str | None:
        return _KINDS[self.kind][2]

    @property
    def widened(self) -> bool:
        """Whether a column of this kind may be stored in an older, narrower kind (``_OLDER_KINDS``)."""
        return self.kind in _OLDER_KINDS

    def widens_arrow(self, stored: pa.DataType) -> bool:
        """Whether a column stored as Arrow type ``stored`` is an older, narrower form of this one."""
        return any(_KINDS[k][0] == stored for k in _OLDER_KINDS.get(self.kind, ()))

    def widens_clickhouse(self, stored: str) -> bool:
        """Whether a ClickHouse column of type ``stored`` is an older, narrower form of this one."""
        return any(_KINDS[k][1] == stored for k in _OLDER_KINDS.get(self.kind, ()))


@dataclass(frozen=True)
class RecordType:
    """A normalized record type.

    Attributes:
        name: snake_case name, also the lake dataset and ClickHouse table name.
        fields: the columns, in order.
        order_by: ClickHouse sorting key (also the identity used for idempotent loads).
        doc: what one row means.
    """

    name: str
    fields: tuple[Field, ...]
    order_by: tuple[str, ...]
    doc: str = ""
    _index: Mapping[str, Field] = field(init=False, repr=False, compare=False)
    _schema: pa.Schema = field(init=False, repr=False, compare=False)
    _empty: pa.Table | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        index = {f.name: f for f in self.fields}
        if len(index) != len(self.fields):
            raise TapeflowError(f"record {self.name!r} declares a column twice")
        missing = [c for c in self.order_by if c not in index]
        if missing:
            raise TapeflowError(f"record {self.name!r}: order_by names unknown columns {missing}")
        object.__setattr__(self, "_index", index)
        # built once: live micro-batches make many small tables and a schema costs ~0.25 ms to build
        object.__setattr__(self, "_schema", pa.schema(
            [pa.field(f.name, f.arrow_type, nullable=False) for f in self.fields],
            metadata={"tapeflow.record": self.name},
        ))

    @property
    def column_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def __getitem__(self, name: str) -> Field:
        return self._index[name]

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema (non-nullable columns: missing values have explicit sentinels)."""
        return self._schema

    def clickhouse_ddl(self, table: str | None = None, *, database: str | None = None,
                       partition_by: str | None = None,
                       engine: str = "MergeTree") -> str:
        """``CREATE TABLE IF NOT EXISTS`` for this record.

        Plain MergeTree: ``order_by`` is a sorting key, not an identity (two quotes of one frame
        can share it), so nothing may collapse rows in the background; loads are made idempotent
        by replacing whole partitions.
        """
        name = table or self.name
        partition_by = partition_by or f"(venue, {PARTITION_DAY_SQL})"
        qualified = f"{database}.{name}" if database else name
        cols = ",\n".join(f"    `{f.name}` {f.clickhouse_type}" for f in self.fields)
        return (
            f"CREATE TABLE IF NOT EXISTS {qualified}\n(\n{cols}\n)\n"
            f"ENGINE = {engine}\nPARTITION BY {partition_by}\n"
            f"ORDER BY ({', '.join(self.order_by)})"
        )

    def empty_table(self) -> pa.Table:
        """A table of this record with no rows (shared: Arrow tables are immutable)."""
        # built on first use, not at import: Arrow loads pandas to build one, and ~0.2 ms per call
        # adds up when live stages ask for empty tables on every micro-batch
        if self._empty is None:
            object.__setattr__(self, "_empty", self._schema.empty_table())
        return self._empty

    def table(self, columns: Mapping[str, Any], *, constants: Mapping[str, Any] | None = None) -> pa.Table:
        """Build a table of this record from column arrays (numpy, lists or Arrow).

        Args:
            columns: one array per column; all the same length.
            constants: columns that hold one value for every row (e.g. venue, symbol).

        Raises:
            TapeflowError: a column is missing, unknown, or of a different length.
        """
        constants = dict(constants or {})
        unknown = set(columns) | set(constants)
        unknown -= set(self._index)
        if unknown:
            raise TapeflowError(f"record {self.name!r} has no columns {sorted(unknown)}")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise TapeflowError(f"record {self.name!r}: columns of different lengths {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        arrays = []
        for f in self.fields:
            if f.name in columns:
                arrays.append(_as_array(columns[f.name], f))
            elif f.name in constants:
                # a repeat, not a list of n Python objects converted (~9 ms per 72k rows of a string)
                arrays.append(pa.repeat(pa.scalar(constants[f.name], type=f.arrow_type), n))
            else:
                raise TapeflowError(f"record {self.name!r}: column {f.name!r} is missing")
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema())


def _as_array(values: Any, f: Field) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == f.arrow_type else values.cast(f.arrow_type)
    if f.numpy_dtype is not None:
        return pa.array(np.asarray(values, dtype=f.numpy_dtype), type=f.arrow_type)
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return pa.array(values).cast(f.arrow_type)  # Arrow builds no decimal straight from numpy ints
    return pa.array(values, type=f.arrow_type)


def common(*extra: Field) -> tuple[Field, ...]:
    """The columns every record carries, followed by ``extra``."""
    return (
        Field("ts_event_ns", "i64", "venue (exchange) time, ns since the UNIX epoch, UTC"),
        Field("ts_recv_ns", "i64", "capture time, ns since the UNIX epoch, UTC"),
        Field("venue", "lstr", "venue or dataset code, e.g. binance-usdm, GLBX.MDP3, lobster"),
        Field("symbol", "lstr", "the venue's instrument symbol"),
        *extra,
    )


def concat(record: RecordType, tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate tables of one record type (an empty list gives an empty table)."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return record.empty_table()
    return pa.concat_tables(tables)
