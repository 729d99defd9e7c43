"""Storage: the Parquet lake and the ClickHouse warehouse, written only through :class:`Writer`.

:mod:`tapeflow.storage.writer` is the one writer (replace, merge, streaming loads, exactly-once
appends with compaction); :mod:`tapeflow.storage.lake` says where rows live and reads them back;
:mod:`tapeflow.storage.warehouse` is the ClickHouse connection. docs/storage.md has the layout and
the commit protocol.
"""

from tapeflow.storage.lake import PartitionWrite, read
from tapeflow.storage.parts import write_parquet_atomic
from tapeflow.storage.warehouse import Warehouse

__all__ = ["PartitionWrite", "Warehouse", "read", "write_parquet_atomic"]
