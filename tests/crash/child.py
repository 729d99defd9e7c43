"""A writer run in a child process that SIGKILLs itself at a chosen step (``python -m tests.crash.child``).

Usage: ``python -m tests.crash.child LAKE WAREHOUSE_DSN KILL INPUT...`` where ``KILL`` is ``0``
(run to the end and print the number of steps), ``N`` (die just before the N-th step), or
``NAME:N`` (die just before the N-th call of the step named NAME, e.g. ``stage_commit:1``).

A step is anything by which a writer changes the lake or the warehouse: a filesystem mkdir,
rename, link, unlink, rmdir, rmtree, directory exchange or Parquet write, and a warehouse
statement, insert or streamed block. fsync is not one (it changes nothing a process crash shows).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tapeflow.storage import parts
from tapeflow.storage.ingest import ingest
from tapeflow.storage.stage import BlockStream, Stage
from tapeflow.storage.warehouse import Warehouse

# Rows per record type a load buffers before it spills a sorted run: small, so the inputs spill and
# the commit merges runs (more steps to die in).
FLUSH_ROWS = 1500
FORMAT = "tardis"


class Killer:
    """Counts steps and kills the process before the chosen one."""

    def __init__(self, spec: str) -> None:
        name, _, n = spec.rpartition(":")
        self.name, self.at = name, int(n)
        self.steps = 0
        self.calls: dict[str, int] = {}

    def counted(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            self.steps += 1
            self.calls[name] = self.calls.get(name, 0) + 1
            hit = self.calls[name] if self.name else self.steps
            if (not self.name or self.name == name) and hit == self.at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return step

    def install(self) -> None:
        for name in ("rename", "replace", "link", "mkdir", "unlink", "rmdir"):
            setattr(os, name, self.counted(name, getattr(os, name)))
        shutil.rmtree = self.counted("rmtree", shutil.rmtree)
        parts._exchange = self.counted("exchange", parts._exchange)
        pq.write_table = self.counted("write_table", pq.write_table)
        pq.ParquetWriter.write_table = self.counted("write_batch", pq.ParquetWriter.write_table)
        Warehouse._command = self.counted("command", Warehouse._command)
        Warehouse._insert = self.counted("insert", Warehouse._insert)
        BlockStream.add = self.counted("block", BlockStream.add)
        BlockStream.finish = self.counted("finish", BlockStream.finish)
        Stage.commit = self.counted("stage_commit", Stage.commit)


def main(argv: list[str]) -> None:
    lake, dsn, spec, inputs = Path(argv[0]), argv[1], argv[2], [Path(p) for p in argv[3:]]
    killer = Killer(spec)
    killer.install()
    ingest(FORMAT, inputs, lake=lake, clickhouse=dsn or None, progress=False, flush_rows=FLUSH_ROWS)
    print("DONE", killer.steps, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
