"""Ingest: decode files with a venue format into the lake and the warehouse, through the one writer.

Each record type the decoder yields streams into one ``Writer.load`` (:mod:`tapeflow.storage.writer`):
chunks are buffered, spilled as sorted runs past ``flush_rows`` (so memory stays bounded however
long the input), and committed once at the end, each partition by one atomic swap. A run is one
load, so its merge sees all of its rows at once: re-running a large file is as idempotent as a
small one, and the bytes written grow with the rows, not with their square.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import ConfigError
from tapeflow.progress import progress_bar
from tapeflow.schemas import ALL_RECORDS
from tapeflow.schemas.records import REJECTED
from tapeflow.storage.lake import PartitionWrite
from tapeflow.storage.warehouse import redact_dsn
from tapeflow.storage.writer import Load, Mode, Writer
from tapeflow.venues import get_format
from tapeflow.venues.base import Decoded, VenueFormat

FLUSH_ROWS = 2_000_000
# Chunks (~4 MiB of records each) decoded ahead while the writer opens (chdb's engine start takes
# ~0.2 CPU s, on its own threads): the decode uses the other core meanwhile; this bounds the memory.
EARLY_CHUNKS = 16
DEFAULT_MODE: Mode = "merge"


@dataclass
class IngestSummary:
    """What one ingest run did.

    Attributes:
        format_name: the venue format used.
        files: number of input files.
        bytes_read: size of the inputs on disk.
        events: rows decoded per record type (``rejected`` included).
        rejected: rejected rows per reason code.
        partitions: lake partitions written, one file each.
        spilled_bytes: bytes of sorted runs spilled to the lake's staging area before the commit
            (inputs larger than ``flush_rows`` rows of a record type).
        warehouse_rows: rows loaded into the warehouse per record type.
        elapsed_s: wall time of the whole run.
        lake: the lake root, or None.
        clickhouse: the warehouse DSN (credentials masked), or None.
        mode: the lake/warehouse write mode (``merge`` or ``replace``).
    """

    format_name: str
    files: int = 0
    bytes_read: int = 0
    events: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    partitions: list[PartitionWrite] = field(default_factory=list)
    spilled_bytes: int = 0
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    lake: Path | None = None
    clickhouse: str | None = None
    mode: str = DEFAULT_MODE

    @property
    def total_events(self) -> int:
        """Rows decoded, rejected ones excluded."""
        return sum(n for name, n in self.events.items() if name != REJECTED.name)

    @property
    def events_per_s(self) -> float:
        return self.total_events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def bytes_written(self) -> int:
        """Bytes of the lake files written (the final size of each partition written)."""
        final = {w.path: w.bytes_written for w in self.partitions}
        return sum(final.values())

    def render(self) -> str:
        """A few lines for the CLI."""
        plural = "s" if self.files != 1 else ""
        lines = [f"ingest {self.format_name}: {self.files} file{plural}, {_size(self.bytes_read)} "
                 f"in {self.elapsed_s:.2f} s ({self.events_per_s:,.0f} events/s)"]
        width = max([len(n) for n in self.events] + [10])
        for name in sorted(self.events):
            line = f"  {name:<{width}} {self.events[name]:>12,}"
            if name == REJECTED.name and self.rejected:
                reasons = sorted(self.rejected.items(), key=lambda kv: (-kv[1], kv[0]))
                line += "  (" + ", ".join(f"{r} {n:,}" for r, n in reasons) + ")"
            lines.append(line)
        lines.append(f"  {'total':<{width}} {self.total_events:>12,} events")
        if self.lake is not None:
            count = len({w.path for w in self.partitions})
            lines.append(f"lake: {count} partitions, {_size(self.bytes_written)} in {self.lake} "
                         f"(mode {self.mode})")
        if self.clickhouse is not None:
            loaded = sum(self.warehouse_rows.values())
            lines.append(f"warehouse: {loaded:,} rows loaded into {self.clickhouse} (mode {self.mode})")
        return "\n".join(lines)


def ingest(format_name: str | VenueFormat, paths: Sequence[Path], *, lake: Path | None,
           clickhouse: str | None, progress: bool = True, mode: Mode = DEFAULT_MODE,
           flush_rows: int = FLUSH_ROWS) -> IngestSummary:
    """Decode ``paths`` with format ``format_name`` into the lake and/or the warehouse.

    Args:
        format_name: a registered venue format (``tapeflow formats``), or a ``VenueFormat``.
        paths: input files.
        lake: the lake root, or None to skip Parquet.
        clickhouse: a warehouse DSN (``chdb:///dir`` or ``http(s)://...``), or None to skip it.
        progress: show a progress bar over the input bytes on stderr.
        mode: ``merge`` (the CLI's choice: re-running is idempotent and rows other files put in
            the same (venue, symbol, day) survive, one row per record key) or ``replace`` (each
            touched (venue, symbol, day) becomes exactly this run's rows).
        flush_rows: rows of one record type buffered in memory before they spill to disk.

    Returns:
        The summary of the run; rejected rows are stored like any other record.

    Raises:
        ConfigError: unknown format or mode.
        FormatError: a file is not in the declared format (from the decoder).
        StorageError: the lake or the warehouse refused a write.
    """
    if mode not in ("merge", "replace"):
        raise ConfigError(f"ingest mode was {mode!r}; expected 'merge' or 'replace'")
    fmt = format_name if isinstance(format_name, VenueFormat) else get_format(format_name)
    paths = [Path(p) for p in paths]
    started = time.perf_counter()
    summary = IngestSummary(fmt.name, files=len(paths), bytes_read=sum(p.stat().st_size for p in paths),
                            lake=Path(lake) if lake is not None else None,
                            clickhouse=redact_dsn(clickhouse) if clickhouse else None, mode=mode)
    chunks = iter(fmt.decode(paths))
    writer, early = _open_while_decoding(chunks, lambda: _open_writer(lake, clickhouse, flush_rows))
    loads: dict[str, Load] = {}
    events: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    try:
        with progress_bar(summary.bytes_read, f"ingest {fmt.name}", enabled=progress) as bar:
            for chunk in itertools.chain(early, chunks):
                for name, table in chunk.tables.items():
                    if table.num_rows:
                        _load(loads, writer, name, mode).add(table)
                        events[name] += table.num_rows
                        if name == REJECTED.name:
                            reasons.update(_reason_counts(table))
                # decoders report the bytes consumed since their previous chunk
                bar.update(max(0, min(chunk.bytes_read, bar.total - bar.n)))
                bar.set_postfix(events=f"{sum(events.values()):,}", refresh=False)
            for name in sorted(loads):
                result = loads[name].commit()
                summary.partitions.extend(result.partitions)
                summary.spilled_bytes += result.spilled_bytes
                if clickhouse:
                    summary.warehouse_rows[name] = result.warehouse_rows
            bar.update(bar.total - bar.n)
    finally:
        for load in loads.values():
            load.abort()  # no-op once committed; discards the staged rows of a failed run
        writer.close()
    summary.events = dict(sorted(events.items()))
    summary.rejected = dict(sorted(reasons.items()))
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _open_writer(lake: Path | None, clickhouse: str | None, flush_rows: int) -> Writer:
    writer = Writer(lake, clickhouse, spill_rows=flush_rows)
    try:
        if writer.warehouse is not None:
            writer.warehouse.ensure_tables()
    except BaseException:
        writer.close()
        raise
    return writer


def _open_while_decoding(chunks: Iterator[Decoded], open_writer: Callable[[], Writer]
                         ) -> tuple[Writer, list[Decoded]]:
    """Open the writer on a thread while the first chunks decode here; return it and those chunks.

    The chunks are the decoder's first ones in order (at most ``EARLY_CHUNKS``; decoding stops as
    soon as the writer is open), so the rows reach the writer exactly as without the overlap. A
    decode error closes the writer before it propagates; an open error drops the chunks.
    """
    early: list[Decoded] = []
    with ThreadPoolExecutor(1, thread_name_prefix="tapeflow-open") as pool:
        opening = pool.submit(open_writer)
        try:
            while not opening.done() and len(early) < EARLY_CHUNKS:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                early.append(chunk)
        except BaseException:
            if opening.exception() is None:
                opening.result().close()
            raise
        return opening.result(), early


def _load(loads: dict[str, Load], writer: Writer, name: str, mode: Mode) -> Load:
    load = loads.get(name)
    if load is None:
        if name not in ALL_RECORDS:
            raise ConfigError(f"decoder produced an unknown record type {name!r}")
        load = loads[name] = writer.load(ALL_RECORDS[name], mode)
    return load


def _reason_counts(rejected: pa.Table) -> dict[str, int]:
    counts = pc.value_counts(rejected.column("reason").combine_chunks())
    return {str(v["values"]): int(v["counts"]) for v in counts.to_pylist()}


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{value:,.1f} {unit}"
