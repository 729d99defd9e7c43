"""A sink that counts what the flow produced, prints progress, and ends with a summary line.

Each worker prints ``live: worker W: <rows> rows (...)`` on stderr when its first rows arrive,
then at most every ``every_s`` seconds, and when the flow ends one stdout line
``live-summary {"worker": W, "rows": {...}}`` that ``tapeflow live`` (:mod:`tapeflow.live.cli`)
adds up over workers and processes.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

import pyarrow as pa
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from tapeflow.live.cli import SUMMARY_PREFIX


class _CountPartition(StatelessSinkPartition[tuple[str, pa.Table]]):
    def __init__(self, worker: int, every_s: float, out: TextIO, err: TextIO) -> None:
        self.worker, self.every_s, self.out, self.err = worker, every_s, out, err
        self.rows: dict[str, int] = {}
        self._last = -float("inf")  # the first rows print at once: the user sees the flow has started

    def write_batch(self, items: list[tuple[str, pa.Table]]) -> None:
        for name, table in items:
            self.rows[name] = self.rows.get(name, 0) + table.num_rows
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            detail = ", ".join(f"{k}={v:,}" for k, v in sorted(self.rows.items()))
            print(f"live: worker {self.worker}: {sum(self.rows.values()):,} rows ({detail})",
                  file=self.err, flush=True)

    def close(self) -> None:
        print(SUMMARY_PREFIX + json.dumps({"worker": self.worker, "rows": self.rows}, sort_keys=True),
              file=self.out, flush=True)


class ProgressSink(DynamicSink[tuple[str, pa.Table]]):
    """Counts ``(table_name, table)`` items per worker; progress on stderr, a summary on stdout.

    Args:
        every_s: seconds between progress lines of one worker.
    """

    def __init__(self, every_s: float = 2.0) -> None:
        self.every_s = every_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountPartition:
        return _CountPartition(worker_index, self.every_s, sys.stdout, sys.stderr)
