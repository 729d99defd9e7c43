"""``python -m tests.live.flaky_warehouse STORED_FILE ARGS...``: ``tapeflow ARGS...`` in a fresh process
whose warehouse takes 3 live batches and then stops answering (connection refused), with the sink's
retry budget cut to 0.6 s and its timed lake flushes off. The rows of each batch it took are
written to STORED_FILE, one a line.

A fresh process, because a Bytewax ``cluster_main`` run earlier in the same process (as other test
modules do) leaves a panic hook that prints every flow exception's traceback itself."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError

from flows.sinks import _TablePartition
from tapeflow.cli import main
from tapeflow.errors import StorageError
from tapeflow.live import retry
from tapeflow.storage.warehouse import Warehouse

TAKEN = 3


def run(stored_file: Path, argv: list[str]) -> int:
    """Run the CLI with the flaky warehouse; returns its exit code."""
    stored: list[int] = []
    real_insert = Warehouse.insert_batch

    def insert_batch(self: Warehouse, record: Any, table: Any, *, token: str | None,
                     dedup_window: int) -> None:
        if len(stored) >= TAKEN:
            raise StorageError(f"insert into {record.name} failed") from OperationalError(
                "HTTPConnectionPool: [Errno 111] Connection refused")
        real_insert(self, record, table, token=token, dedup_window=dedup_window)
        stored.append(table.num_rows)
        stored_file.write_text("".join(f"{n}\n" for n in stored))

    Warehouse.insert_batch = insert_batch  # type: ignore[method-assign]
    # no timed lake flushes: the lake then holds the batches only if the sink writes its buffer
    # when it gives up
    _TablePartition._flush = lambda self: None  # type: ignore[method-assign]
    retry.DEFAULT_BUDGET_S = 0.6
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]), sys.argv[2:]))
