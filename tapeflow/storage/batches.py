"""What identifies a batch of rows and a restated row: the writer's exactly-once vocabulary.

Bytewax recovery is at-least-once, and row keys are no identity in market data (BitMEX sent
hundreds of quotes under a few keys; CME MBO has byte-identical records that must all survive).
What a resumed flow repeats exactly is a whole micro-batch, so a batch is identified by its content
(:func:`batch_token`). Rows that do have an identity and are restated (a bar's later revision)
replace the row under their key (:data:`REPLACE_KEYS`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import pyarrow as pa

from tapeflow.errors import StorageError
from tapeflow.schemas import ALL_RECORDS, RecordType

# Tables whose rows have a true identity and are restated: a new row replaces the one under its key.
REPLACE_KEYS: dict[str, tuple[str, ...]] = {"bar": ALL_RECORDS["bar"].order_by}
# A resume replays at most the batches of one epoch per table; 10k inserts is hours of 1 s epochs.
DEDUP_WINDOW = 10_000


def record_of(table: pa.Table) -> RecordType:
    """The record type of a table: its ``tapeflow.record`` schema metadata, else its exact columns.

    Raises:
        StorageError: the table matches no record type (names its columns).
    """
    meta = table.schema.metadata or {}
    name = meta.get(b"tapeflow.record", b"").decode()
    if name in ALL_RECORDS:
        return ALL_RECORDS[name]
    for record in ALL_RECORDS.values():
        if record.column_names == table.column_names:
            return record
    raise StorageError(f"a table has columns {table.column_names}, which match no record type")


def batch_token(name: str, table: pa.Table) -> str:
    """A deterministic identity of one micro-batch: the table name and every row, in order.

    Args:
        name: the table the batch goes to.
        table: the rows (cast to their record schema first, so equal content hashes equally).

    Returns:
        32 hex characters.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{name}:{table.num_rows}:".encode())
    if table.num_rows:
        digest.update(pl.from_arrow(table).hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()


def last_per_key(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Rows of ``table`` that are the last one under their key (a restated bar beats its earlier revision)."""
    if table.num_rows < 2:
        return table
    frame = pl.from_arrow(table.select(list(keys))).with_row_index("_i")
    keep = frame.group_by(list(keys), maintain_order=True).agg(pl.col("_i").last())["_i"].sort()
    return table.take(pa.array(keep.to_numpy()))


def key_hashes(table: pa.Table, keys: tuple[str, ...]) -> np.ndarray:
    """A 64-bit hash of each row's key columns (those of ``keys`` the table has)."""
    present = [k for k in keys if k in table.column_names]
    if table.num_rows == 0:
        return np.empty(0, np.uint64)
    return pl.from_arrow(table.select(present)).hash_rows(seed=0).to_numpy()
