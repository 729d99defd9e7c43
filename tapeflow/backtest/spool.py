"""A paper session's fills and equity samples on disk, so a session of days holds a bounded tail.

:class:`ResultSpool` takes the rows a :class:`tapeflow.backtest.strategy.Context` has gathered
(``fills``, ``equity``: the tables of :class:`tapeflow.backtest.results.BacktestResult`) once
there are ``rows`` of them, and writes each as one Parquet part (``<dir>/<name>/part-<n>.parquet``,
zstd; written to a temporary name, fsynced and renamed, so a crash never leaves a half part). The
final report reads the parts back in order, then the tail still in memory.

The number of parts written is the spool's state: a paper session restored from a snapshot
(the flow's recovery) rewrites the parts after its snapshot under the same names and never reads a
part it does not know, so a part written after the snapshot and before a crash is replaced, not
counted twice. Without a directory the parts go to a temporary directory made at the first write
and removed by :meth:`ResultSpool.cleanup` (the session's end).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.errors import StorageError

NAMES = ("fills", "equity")


class ResultSpool:
    """Where a paper session's fills and equity samples go once ``rows`` of them are in memory.

    Args:
        directory: the session's results directory (kept), or None: a temporary one (removed by
            :meth:`cleanup`).
        rows: how many fills plus samples a session keeps in memory before writing them out.
    """

    def __init__(self, directory: Path | None = None, *, rows: int = 16_384) -> None:
        if rows <= 0:
            raise StorageError(f"a result spool needs rows > 0, got {rows}")
        self.directory = directory
        self.rows = rows
        self.parts = dict.fromkeys(NAMES, 0)
        self.temporary = directory is None

    def _dir(self, name: str) -> Path:
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="tapeflow-paper-"))
        return self.directory / name

    def write(self, name: str, table: pa.Table) -> None:
        """Append ``table`` to ``name``'s parts (an empty table writes nothing)."""
        if not table.num_rows:
            return
        d = self._dir(name)
        final = d / f"part-{self.parts[name]:08d}.parquet"
        tmp = d / f".{final.name}.tmp"
        try:
            d.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            raise StorageError(f"cannot write the paper session's {name} to {final}: {exc}") from exc
        self.parts[name] += 1

    def read(self, name: str, tail: pa.Table) -> pa.Table:
        """``name``'s parts in order, then ``tail`` (the rows still in memory), as one table."""
        if not self.parts[name]:
            return tail
        d = self._dir(name)
        try:
            parts = [pq.read_table(d / f"part-{k:08d}.parquet") for k in range(self.parts[name])]
        except OSError as exc:
            raise StorageError(f"cannot read back the paper session's {name} from {d}: {exc}") from exc
        return pa.concat_tables([*parts, tail]).combine_chunks()

    def cleanup(self) -> None:
        """Remove a temporary directory (a given one is the session's record: it stays)."""
        if self.temporary and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self.parts = dict.fromkeys(NAMES, 0)
