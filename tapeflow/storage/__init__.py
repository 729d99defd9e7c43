"""Storage: the Parquet lake (:mod:`tapeflow.storage.lake`) and the ClickHouse warehouse."""

from tapeflow.storage.lake import PartitionWrite, read, write, write_parquet_atomic
from tapeflow.storage.warehouse import Warehouse

__all__ = ["PartitionWrite", "Warehouse", "read", "write", "write_parquet_atomic"]
