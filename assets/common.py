"""What every asset body shares: read and write instrument-days of a dataset, and describe each one.

An asset run covers one partition or, under a single-run backfill, a range of them; bodies work
on the list of :class:`~tapeflow.batch.targets.Target` s and write each one as a whole lake
partition (``replace``), so re-materializing a partition leaves exactly one copy. Each partition's
own facts (rows, rejects, gaps, span, bytes) go to that partition's materialization
(:func:`report`), never the run's totals: a range run materializes every partition it covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster import AssetExecutionContext, AssetKey, MetadataValue

from assets.partitions import target_key
from tapeflow.batch.normalize import split_by_target
from tapeflow.batch.stats import PieceStats, partition_stats
from tapeflow.batch.targets import Target
from tapeflow.schemas import RecordType
from tapeflow.schemas.records import REJECTED
from tapeflow.storage import lake as lake_store
from tapeflow.storage.lake import PartitionWrite
from tapeflow.storage.scope import Scope
from tapeflow.storage.writer import Writer

__all__ = ["describe", "preview", "read", "report", "selected", "split_by_target", "write"]

PREVIEW_ROWS = 5


def selected(context: AssetExecutionContext, asset: str) -> bool:
    """Whether this run materializes ``asset`` (a subset run may only execute some assets or checks)."""
    return AssetKey(asset) in context.selected_asset_keys


def read(record: RecordType, lake: Path, targets: Iterable[Target]) -> dict[Target, pa.Table]:
    """The lake partition of ``record`` for each target (empty tables where none was written)."""
    return {t: lake_store.read(record, lake, venue=t.venue, symbol=t.symbol, date=t.date) for t in targets}


def write(record: RecordType, tables: Mapping[Target, pa.Table], lake: Path,
          targets: Iterable[Target], *, scope: Scope | None = None) -> list[PartitionWrite]:
    """Make each target's partition of ``record`` exactly its rows in ``tables``.

    A target with no rows loses the partition an earlier run wrote, so a re-run that now finds
    nothing (a source removed) never leaves stale rows behind. With a ``scope`` (a dataset several
    producers share, ``signal``), only the rows that producer owns are replaced; the others stay.
    """
    slices = [(t.venue, t.symbol, t.date) for t in sorted(set(targets))]
    with Writer(lake) as writer, writer.load(record, "replace", partitions=slices, scope=scope) as load:
        for t in sorted(set(targets)):
            if t in tables:
                load.add(tables[t])
        return load.commit().partitions


def report(context: AssetExecutionContext, asset: str, t: Target, table: pa.Table | PieceStats,
           writes: Sequence[PartitionWrite], *, rejected: pa.Table | None = None, books: bool = False,
           extra: Mapping[str, Any] | None = None) -> None:
    """Attach one partition's own facts to that partition's materialization of ``asset``.

    rows (``dagster/row_count``), rows after a gap, rejected rows by reason (with ``rejected``),
    rows the book may have wrong (with ``books``), first/last event and span, bytes and files
    written, a preview of the first rows, and ``extra``. ``table`` may be the partition's rows or
    what :class:`~tapeflow.batch.stats.PieceStats` counted of them as they streamed past.
    """
    if isinstance(table, PieceStats):
        stats = table.stats(rejected=rejected, books=books)
        table = table.head if table.head is not None else pa.table({})
    else:
        stats = partition_stats(table, rejected=rejected, books=books)
    mine = [w for w in writes if (w.date, w.venue, w.symbol) == (t.date, t.venue, t.symbol)]
    meta: dict[str, Any] = {"dagster/row_count": stats.pop("rows"),
                            "bytes_written": sum(w.bytes_written for w in mine), "files_written": len(mine)}
    for key, value in {**stats, **(extra or {})}.items():
        meta[key] = MetadataValue.json(value) if isinstance(value, dict | list) else value
    meta["preview"] = preview(table)
    context.add_asset_metadata(meta, asset_key=asset, partition_key=target_key(t))


def describe(tables: Mapping[Target, pa.Table], writes: Sequence[PartitionWrite], *,
             record: RecordType, context: AssetExecutionContext, asset: str,
             rejected: Mapping[Target, pa.Table] | None = None, books: bool = False) -> dict[str, Any]:
    """:func:`report` each partition of ``tables``; returns the run's own metadata (what it covered).

    ``record`` names the dataset (kept for callers that describe several records in one step).
    """
    for t, table in tables.items():
        report(context, asset, t, table, writes, books=books,
               rejected=rejected.get(t, _empty_rejected()) if rejected is not None else None)
    return run_metadata(tables.keys())


def run_metadata(targets: Iterable[Target]) -> dict[str, Any]:
    """What a materialization says about its run (every partition of a range run carries it)."""
    return {"partitions_in_run": len(set(targets))}


def _empty_rejected() -> pa.Table:
    return REJECTED.empty_table()


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
