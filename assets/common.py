"""What every asset body shares: read and write one instrument-day of a dataset, and describe it.

An asset run covers one partition or, under a single-run backfill, a range of them; bodies work
on the list of :class:`~assets.partitions.Target` s and write each one as a whole lake partition
(``replace``), so re-materializing a partition leaves exactly one copy.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dagster import MetadataValue

from assets.partitions import Target
from tapeflow.schemas import RecordType, concat
from tapeflow.schemas.records import F_GAP
from tapeflow.storage import lake as lake_store
from tapeflow.storage.lake import PartitionWrite
from tapeflow.storage.writer import Writer

PREVIEW_ROWS = 5


def read(record: RecordType, lake: Path, targets: Iterable[Target]) -> dict[Target, pa.Table]:
    """The lake partition of ``record`` for each target (empty tables where none was written)."""
    return {t: lake_store.read(record, lake, venue=t.venue, symbol=t.symbol, date=t.date) for t in targets}


def split_by_target(table: pa.Table, wanted: Iterable[Target]) -> dict[Target, pa.Table]:
    """Rows of ``table`` per wanted target (the lake's day rule); rows of other partitions are dropped."""
    wanted = set(wanted)
    out: dict[Target, list[pa.Table]] = {}
    for venue, symbol, date, part in lake_store.split(table):
        target = Target(date, venue, symbol)
        if target in wanted:
            out.setdefault(target, []).append(part)
    return {t: pa.concat_tables(parts) for t, parts in out.items()}


def write(record: RecordType, tables: Mapping[Target, pa.Table], lake: Path,
          targets: Iterable[Target]) -> list[PartitionWrite]:
    """Make each target's partition of ``record`` exactly its rows in ``tables``.

    A target with no rows loses the partition an earlier run wrote, so a re-run that now finds
    nothing (a source removed) never leaves stale rows behind.
    """
    slices = [(t.venue, t.symbol, t.date) for t in sorted(set(targets))]
    with Writer(lake) as writer, writer.load(record, "replace", partitions=slices) as load:
        for t in sorted(set(targets)):
            if t in tables:
                load.add(tables[t])
        return load.commit().partitions


def time_span(tables: Iterable[pa.Table]) -> tuple[int, int] | None:
    """(first, last) ``ts_event_ns`` over the tables (venue time; capture time where it is -1)."""
    lo, hi = None, None
    for t in tables:
        if t.num_rows == 0:
            continue
        ts = t.column("ts_event_ns").to_numpy()
        ts = np.where(ts >= 0, ts, t.column("ts_recv_ns").to_numpy())
        lo = int(ts.min()) if lo is None else min(lo, int(ts.min()))
        hi = int(ts.max()) if hi is None else max(hi, int(ts.max()))
    return None if lo is None else (lo, hi)


def iso(ts_ns: int) -> str:
    """A UTC instant with microseconds, for metadata."""
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).isoformat(timespec="microseconds")


def reasons(rejected: Iterable[pa.Table]) -> dict[str, int]:
    """Rejected rows per reason code."""
    out: Counter[str] = Counter()
    for t in rejected:
        if t.num_rows:
            for v in pc.value_counts(t.column("reason").combine_chunks()).to_pylist():
                out[str(v["values"])] += int(v["counts"])
    return dict(sorted(out.items()))


def gap_rows(tables: Iterable[pa.Table]) -> int:
    """Rows flagged ``F_GAP`` (a sequence gap or checksum failure precedes them)."""
    total = 0
    for t in tables:
        if t.num_rows and "flags" in t.column_names:
            total += int(np.count_nonzero(t.column("flags").to_numpy() & F_GAP))
    return total


def preview(table: pa.Table, rows: int = PREVIEW_ROWS) -> MetadataValue:
    """The first rows as a Markdown table (bytes and lists shortened)."""
    head = table.slice(0, rows).to_pylist()
    if not head:
        return MetadataValue.md("_no rows_")
    cols = [c for c in table.column_names if c not in ("venue", "symbol")]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head:
        lines.append("| " + " | ".join(_cell(row[c]) for c in cols) + " |")
    return MetadataValue.md("\n".join(lines))


def _cell(value: object) -> str:
    if isinstance(value, bytes):
        value = value[:40].decode("utf-8", "replace")
    elif isinstance(value, list):
        value = "[" + ", ".join(str(v) for v in value[:3]) + (", ...]" if len(value) > 3 else "]")
    return str(value).replace("|", "\\|").replace("\n", " ")[:60]


def describe(tables: Mapping[Target, pa.Table], writes: Sequence[PartitionWrite], *,
             record: RecordType, rejected: Mapping[Target, pa.Table] | None = None) -> dict[str, object]:
    """The metadata a data engineer wants from one materialization of ``record``.

    rows, partitions, rejected rows by reason, rows after a gap, time span covered, bytes written
    and a preview of the first rows.
    """
    parts = [t for t in tables.values() if t.num_rows]
    meta: dict[str, object] = {
        "dagster/row_count": sum(t.num_rows for t in parts),
        "partitions": len(tables),
        "gap_rows": gap_rows(parts),
        "bytes_written": sum(w.bytes_written for w in writes),
        "files_written": len(writes),
    }
    if rejected is not None:
        by_reason = reasons(rejected.values())
        meta["rejected_rows"] = sum(by_reason.values())
        meta["rejected_by_reason"] = MetadataValue.json(by_reason)
    span = time_span(parts)
    if span is not None:
        meta["first_event"], meta["last_event"] = iso(span[0]), iso(span[1])
        meta["span_s"] = round((span[1] - span[0]) / 1e9, 3)
    meta["preview"] = preview(concat(record, parts) if parts else record.empty_table())
    return meta
