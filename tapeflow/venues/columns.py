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
        if len(parts) == 1 and all(type(v) is list for v in parts[0][1].values()):
            return self.record.table(parts[0][1])
        columns = {}
        for f in self.record.fields:
            arrays = [_arrow(values[f.name], n, f.arrow_type) for n, values in parts]
            columns[f.name] = arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)
        return self.record.table(columns)


def _arrow(values: Any, n: int, arrow_type: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values if values.type == arrow_type else values.cast(arrow_type)
    if isinstance(values, np.ndarray):
        return pa.array(values.astype(arrow_type.to_pandas_dtype(), copy=False), type=arrow_type)
    if isinstance(values, list):
        if arrow_type == pa.string() or arrow_type == pa.binary():
            return pa.array(values, type=arrow_type)
        return pa.array(np.asarray(values, dtype=arrow_type.to_pandas_dtype()), type=arrow_type)
    return pa.repeat(pa.scalar(values, type=arrow_type), n)
