"""A producer's share of a partition: the rows a scoped replace swaps, every other row kept.

Several producers may write one dataset partition: the ``signals`` asset's detectors and the
``derivatives_derived`` asset's ``derivatives/1`` rows share the ``signal`` partition of an
instrument-day. A plain replace makes the partition exactly the new rows, so re-running one
producer dropped the other's rows. A :class:`Scope` names the rows one producer owns (those whose
string ``column`` starts with one of ``prefixes``, e.g. ``detector`` and ``("whale/", ...)``: a
version bump of a detector stays its producer's); a replace under a scope swaps exactly those
rows of each touched (and listed) partition and keeps the rest, with the same commit points as a
plain replace: one atomic swap per lake partition, one ``REPLACE PARTITION`` per ClickHouse
partition (:mod:`tapeflow.storage.load`, :mod:`tapeflow.storage.stage`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import StorageError
from tapeflow.schemas import RecordType

__all__ = ["Scope"]


@dataclass(frozen=True)
class Scope:
    """The rows a producer owns: ``column`` (a string column) starts with one of ``prefixes``."""

    column: str
    prefixes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.prefixes or any(not isinstance(p, str) or not p for p in self.prefixes):
            raise StorageError(f"scope on {self.column!r} needs non-empty string prefixes, "
                               f"got {self.prefixes!r}")

    def check(self, record: RecordType) -> None:
        """Raise :class:`StorageError` unless ``column`` is a string column of ``record``."""
        fields = {f.name: f for f in record.arrow_schema()}
        field = fields.get(self.column)
        if field is None or not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            raise StorageError(f"scope column {self.column!r} is not a string column of {record.name}")

    def owns(self, table: pa.Table) -> np.ndarray:
        """One bool per row of ``table``: whether the row is this producer's."""
        if table.num_rows == 0:
            return np.zeros(0, bool)
        col = table.column(self.column)
        hit = pc.starts_with(col, self.prefixes[0])
        for p in self.prefixes[1:]:
            hit = pc.or_(hit, pc.starts_with(col, p))
        return hit.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)

    def others(self, table: pa.Table) -> pa.Table:
        """The rows of ``table`` this producer does not own (they survive its replace)."""
        return table.filter(pa.array(~self.owns(table))) if table.num_rows else table

    def sql(self) -> str:
        """The ClickHouse condition a row of this producer meets."""
        from tapeflow.storage.warehouse import quote

        col = f"`{self.column}`"
        return "(" + " OR ".join(f"startsWith({col}, {quote(p)})" for p in self.prefixes) + ")"
