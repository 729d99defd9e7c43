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
and removed by :meth:`ResultSpool.cleanup`, or, once the session has ended, when its
:class:`SpooledResult` is released.

The session's result (:class:`SpooledResult`) leaves the rows in the parts: its report streams them
``batch_rows`` at a time (:func:`tapeflow.backtest.report_stream.risk_report`), so a year-long
session's report needs the memory of a batch, not of the year; its ``fills`` and ``equity`` tables
read the parts whole when asked (tests, short sessions).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.backtest.report_stream import risk_report
from tapeflow.backtest.results import BacktestResult
from tapeflow.errors import StorageError

NAMES = ("fills", "equity")
BATCH_ROWS = 65_536  # rows per batch when a report streams the parts


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

    def read(self, name: str, tail: pa.Table, parts: int | None = None) -> pa.Table:
        """``name``'s parts in order (the first ``parts``; None: all), then ``tail`` (the rows still
        in memory), as one table."""
        count = self.parts[name] if parts is None else parts
        if not count:
            return tail
        d = self._dir(name)
        try:
            tables = [pq.read_table(d / f"part-{k:08d}.parquet") for k in range(count)]
        except OSError as exc:
            raise StorageError(f"cannot read back the paper session's {name} from {d}: {exc}") from exc
        return pa.concat_tables([*tables, tail]).combine_chunks()

    def batches(self, name: str, tail: pa.Table, parts: int, batch_rows: int = BATCH_ROWS
                ) -> Iterator[pa.RecordBatch]:
        """``name``'s first ``parts`` parts, then ``tail``, as batches of at most ``batch_rows`` rows."""
        d = self._dir(name) if parts else None
        for k in range(parts):
            assert d is not None
            path = d / f"part-{k:08d}.parquet"
            try:
                yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
            except OSError as exc:
                raise StorageError(f"cannot read back the paper session's {name} from {path}: {exc}") from exc
        yield from tail.to_batches(max_chunksize=batch_rows)

    def cleanup(self) -> None:
        """Remove a temporary directory (a given one is the session's record: it stays)."""
        if self.temporary and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self.parts = dict.fromkeys(NAMES, 0)


class SpooledResult(BacktestResult):
    """A paper session's result whose fills and equity stay in the spool's Parquet parts.

    :meth:`report` streams them (batches of ``batch_rows``; the numbers equal the report of the
    same rows in memory, :func:`tapeflow.backtest.report_stream.risk_report`); :attr:`fills` and
    :attr:`equity` read them whole. The parts written when it was made are its rows; later parts
    (a session that goes on) are not.
    """

    def __init__(self, spool: ResultSpool, fills: pa.Table, equity: pa.Table, counts: dict[str, int],
                 *, batch_rows: int = BATCH_ROWS) -> None:
        self.spool, self.counts, self.batch_rows = spool, dict(counts), batch_rows
        self._tails = {"fills": fills, "equity": equity}
        self._parts = dict(spool.parts)
        self._report: dict[str, Any] | None = None

    @property  # type: ignore[override]
    def fills(self) -> pa.Table:
        return self.spool.read("fills", self._tails["fills"], self._parts["fills"])

    @property  # type: ignore[override]
    def equity(self) -> pa.Table:
        return self.spool.read("equity", self._tails["equity"], self._parts["equity"])

    def _batches(self, name: str) -> Iterator[pa.RecordBatch]:
        return self.spool.batches(name, self._tails[name], self._parts[name], self.batch_rows)

    def report(self) -> dict[str, Any]:
        if self._report is None:
            self._report = risk_report(lambda: self._batches("fills"), lambda: self._batches("equity"),
                                       self.counts)
        return dict(self._report)

    def adopt(self) -> None:
        """Take over a temporary spool's directory: removed when this result is released (or at
        exit), no longer by the spool."""
        spool = self.spool
        if spool.temporary and spool.directory is not None:
            weakref.finalize(self, shutil.rmtree, spool.directory, True)
            spool.temporary = False

    def __repr__(self) -> str:
        return f"SpooledResult({self.spool.directory}, parts={self._parts}, counts={self.counts})"
