"""The column builder every decoder writes its rows to, a message or a block at a time.

Per-frame code extends Python lists a message at a time (:meth:`Columns.extend`, a constant such
as the venue repeated by C code, not by a loop); block decoders hand over whole numpy or Arrow
arrays (:meth:`Columns.add_arrays`). :meth:`Columns.drain` turns both into one Arrow table in
arrival order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.schemas import RecordType


class Columns:
    """Rows of one record type, buffered until :meth:`drain`.

    Args:
        record: the record type whose columns are built.
    """

    def __init__(self, record: RecordType) -> None:
        self.record = record
        self._names = tuple(record.column_names)
        self._lists: dict[str, list[Any]] = {n: [] for n in self._names}
        self._listed = 0  # rows in ``_lists``
        self._parts: list[tuple[int, dict[str, Any]]] = []  # closed parts: (rows, column -> values)
        self._parted = 0

    def __len__(self) -> int:
        return self._listed + self._parted

    def append(self, **row: Any) -> None:
        """One row (every column by name)."""
        lists = self._lists
        for name in self._names:
            lists[name].append(row[name])
        self._listed += 1

    def extend(self, n: int, **cols: Any) -> None:
        """``n`` rows: each column a list of ``n`` values or one value for every row."""
        if n <= 0:
            return
        lists = self._lists
        for name in self._names:
            value = cols[name]
            if type(value) is list:
                lists[name] += value
            else:
                lists[name] += [value] * n
        self._listed += n

    def mark(self, row: int, name: str, bits: int) -> None:
        """OR ``bits`` into column ``name`` of a row written by :meth:`append` or :meth:`extend`
        since the last :meth:`add_arrays` (``row`` counts from the last :meth:`drain`)."""
        self._lists[name][row - self._parted] |= bits

    def add_arrays(self, n: int, **cols: Any) -> None:
        """``n`` rows given as arrays (numpy or Arrow) or one value for every row."""
        if n <= 0:
            return
        self._close_lists()
        self._parts.append((n, {name: cols[name] for name in self._names}))
        self._parted += n

    def _close_lists(self) -> None:
        if self._listed:
            self._parts.append((self._listed, self._lists))
            self._parted += self._listed
            self._lists = {n: [] for n in self._names}
            self._listed = 0

    def drain(self) -> pa.Table:
        """Every row so far as one table (arrival order); the builder starts empty again."""
        self._close_lists()
        parts, self._parts, self._parted = self._parts, [], 0
        if not parts:
            return self.record.empty_table()
        arrays = []
        for name, kind in self._kinds:
            pieces = [_arrow(values[name], n, kind) for n, values in parts]
            # several parts stay chunks of one column: no copy
            arrays.append(pieces[0] if len(pieces) == 1 else pa.chunked_array(pieces, kind[0]))
        # every column is built in its declared type: no second look per column
        return pa.Table.from_arrays(arrays, schema=self.record.arrow_schema())

    @property
    def _kinds(self) -> list[tuple[str, tuple[pa.DataType, np.dtype | None]]]:
        kinds = _KINDS.get(self.record.name)
        if kinds is None:
            kinds = _KINDS[self.record.name] = [
                (f.name, (f.arrow_type, np.dtype(f.numpy_dtype) if f.numpy_dtype else None))
                for f in self.record.fields]
        return kinds


_KINDS: dict[str, list[tuple[str, tuple[pa.DataType, np.dtype | None]]]] = {}


def _arrow(values: Any, n: int, kind: tuple[pa.DataType, np.dtype | None]) -> pa.Array:
    arrow_type, dtype = kind
    if dtype is not None and type(values) is not np.ndarray and not isinstance(values, pa.Array):
        values = np.array(values, dtype=dtype) if type(values) is list else np.full(n, values, dtype)
    if type(values) is np.ndarray:
        # the numbers' own buffer (pa.array on numpy takes ~10 us a column, this ~1 us)
        values = np.ascontiguousarray(values, dtype)
        return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])
    if type(values) is list:
        return pa.array(values, type=arrow_type)
    if isinstance(values, pa.Array):
        return values if values.type == arrow_type else values.cast(arrow_type)
    return pa.repeat(pa.scalar(values, type=arrow_type), n)
