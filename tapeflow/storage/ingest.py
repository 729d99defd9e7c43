"""Ingest: decode files with a venue format, write lake partitions, load the warehouse.

Chunks from the decoder are buffered per record type and written once at the end, so a
partition is normally written once per run. Inputs bigger than ``flush_rows`` are flushed in
several passes; a partition that a pass already wrote is then merged into, never replaced, so
the run never loses its own earlier rows.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import ConfigError
from tapeflow.progress import progress_bar
from tapeflow.schemas import ALL_RECORDS, RecordType, concat
from tapeflow.schemas.records import REJECTED
from tapeflow.storage import lake as lake_store
from tapeflow.storage.lake import Mode, PartitionWrite
from tapeflow.storage.warehouse import Warehouse, redact_dsn
from tapeflow.venues import get_format
from tapeflow.venues.base import VenueFormat

FLUSH_ROWS = 4_000_000
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
        partitions: lake partitions written (the same partition may appear once per flush).
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
        flush_rows: buffered rows (all record types) that trigger writing what was decoded so far.

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
    sink = _Sink(lake, Warehouse(clickhouse) if clickhouse else None, mode, summary)
    events: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    try:
        with progress_bar(summary.bytes_read, f"ingest {fmt.name}", enabled=progress) as bar:
            for chunk in fmt.decode(paths):
                for name, table in chunk.tables.items():
                    if table.num_rows:
                        sink.add(name, table)
                        events[name] += table.num_rows
                        if name == REJECTED.name:
                            reasons.update(_reason_counts(table))
                # decoders report the bytes consumed since their previous chunk
                bar.update(max(0, min(chunk.bytes_read, bar.total - bar.n)))
                bar.set_postfix(events=f"{sum(events.values()):,}", refresh=False)
                if sink.buffered >= flush_rows:
                    sink.flush()
            sink.flush()
            bar.update(bar.total - bar.n)
    finally:
        sink.close()
    summary.events = dict(sorted(events.items()))
    summary.rejected = dict(sorted(reasons.items()))
    summary.elapsed_s = time.perf_counter() - started
    return summary


class _Sink:
    """Buffers decoded tables per record type and writes them to the lake and the warehouse."""

    def __init__(self, lake: Path | None, warehouse: Warehouse | None, mode: Mode,
                 summary: IngestSummary) -> None:
        self.lake = lake
        self.warehouse = warehouse
        self.mode = mode
        self.summary = summary
        self.pending: dict[str, list[pa.Table]] = defaultdict(list)
        self.buffered = 0
        self.written: set[tuple[str, str, str, str]] = set()  # (record, venue, symbol, date) this run
        if warehouse is not None:
            warehouse.ensure_tables()

    def add(self, name: str, table: pa.Table) -> None:
        if name not in ALL_RECORDS:
            raise ConfigError(f"decoder produced an unknown record type {name!r}")
        self.pending[name].append(table)
        self.buffered += table.num_rows

    def flush(self) -> None:
        for name in sorted(self.pending):
            record = ALL_RECORDS[name]
            self._write(record, concat(record, self.pending[name]))
        self.pending.clear()
        self.buffered = 0

    def _write(self, record: RecordType, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        by_mode: dict[Mode, list[pa.Table]] = defaultdict(list)
        for venue, symbol, date, part in lake_store.split(table):
            key = (record.name, venue, symbol, date)
            # a later pass of this run adds to what its first pass wrote: never merge a run with
            # itself, or repeated venue records (identical MBO rows) would collapse
            by_mode["append" if key in self.written else self.mode].append(part)
            self.written.add(key)
        for mode, parts in by_mode.items():
            rows = concat(record, parts)
            if self.lake is not None:
                self.summary.partitions.extend(lake_store.write(record, rows, self.lake, mode=mode))
            if self.warehouse is not None:
                loaded = self.warehouse.load(record, rows, mode=mode)
                rows_so_far = self.summary.warehouse_rows.get(record.name, 0)
                self.summary.warehouse_rows[record.name] = rows_so_far + loaded

    def close(self) -> None:
        if self.warehouse is not None:
            self.warehouse.close()


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
