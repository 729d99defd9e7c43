"""Micro-batches of the live flow: how a decoded stream is cut, grouped and stamped with its clock.

A Bytewax item costs ~10 us per stateful step, so the live flow moves **micro-batches**
(``dict[str, pa.Table]`` keyed by record name), never single events. This module holds the rules
the flow's sources follow (``flows.sources``): which files form one stream
(:func:`partition_paths`), how a decoded chunk is cut into batches in arrival order
(:func:`cut_batches`) and the partition's capture-time watermark sent to quiet instruments
(:class:`Heartbeat`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from tapeflow.book.l2 import instrument_groups
from tapeflow.derived.metrics import single_value

Batch = dict[str, pa.Table]
WATERMARK = "_watermark"  # batch key of heartbeat rows (a leading "_" keeps it out of every sink)
_WATERMARK_SCHEMA = pa.schema([("venue", pa.string()), ("symbol", pa.string()), ("ts_recv_ns", pa.int64())])
_NOT_FEED = ("status", "rejected")  # their times are not the feed's capture clock (status: wall time)


def partition_paths(paths: Sequence[Path | str]) -> dict[str, list[Path]]:
    """Group files that must be decoded in sequence: one group per parent folder, in given order.

    A decoder carries state across the files of one stream (a Binance REST snapshot beside its
    websocket capture, one journal file per day), and one instrument's events must reach its book
    in order, so they are one partition; different folders (``sim/<symbol>/``, ``journal/<venue>/``)
    are independent and may run on different workers.
    """
    groups: dict[str, list[Path]] = {}
    for p in map(Path, paths):
        groups.setdefault(str(p.parent), []).append(p)
    return groups


def cut_batches(tables: Batch, batch_events: int, batch_ns: int | None) -> Iterator[Batch]:
    """Cut one decoded chunk into micro-batches of at most ``batch_events`` rows (all tables
    together) spanning less than ``batch_ns`` of capture time, in arrival order.

    Tables are merged on the running maximum of their ``ts_recv_ns`` (stable, so each table keeps
    its own row order and every batch holds a contiguous slice of each table); a row without a
    capture time (-1, e.g. some dead letters) rides with the rows before it.
    """
    # order events first: rows of one venue event share a capture time, so an event's L3 rows then
    # lead its aggregated L2 rows and the book stage's ``auto`` sees L3 first, as batch does
    names = sorted((n for n, t in tables.items() if t.num_rows), key=lambda n: n != "order_event")
    if not names:
        return
    if len(names) == 1 and batch_ns is None:
        # one table, no time bound: plain slices (no merge of capture times to compute)
        table = tables[names[0]]
        for start in range(0, table.num_rows, batch_events):
            yield {names[0]: table.slice(start, batch_events)}
        return
    keys = [np.maximum.accumulate(tables[n].column("ts_recv_ns").to_numpy()) for n in names]
    owner = np.concatenate([np.full(len(k), i, np.int64) for i, k in enumerate(keys)])
    merged = np.concatenate(keys)
    order = np.argsort(merged, kind="stable")
    merged, owner = merged[order], owner[order]
    cursor = [0] * len(names)
    start, total = 0, len(merged)
    while start < total:
        end = min(total, start + batch_events)
        if batch_ns is not None:
            end = min(end, int(np.searchsorted(merged, merged[start] + batch_ns, side="left")))
        end = max(end, start + 1)
        counts = np.bincount(owner[start:end], minlength=len(names))
        batch = {}
        for i, n in enumerate(names):
            if counts[i]:
                batch[n] = tables[n].slice(cursor[i], int(counts[i]))
                cursor[i] += int(counts[i])
        yield batch
        start = end


@dataclass
class Heartbeat:
    """A partition's capture-time watermark, sent to every instrument of the partition.

    The watermark is the largest ``ts_recv_ns`` the partition has emitted. Each time it passes a
    multiple of ``every_ns``, the batch gets a :data:`WATERMARK` table: one row per instrument the
    partition has seen, all with the watermark. The flow routes each row to its instrument, and the
    book stage emits the grid instants before it, so a quiet instrument's snapshots (and metrics)
    come out as the partition's clock moves, not only at its own next event. Everything follows the
    rows, so a replay stamps the same batches every time.

    It assumes what a single connection gives: capture times in arrival order within the partition
    (a later row below the watermark would belong to an instant already emitted).

    Attributes:
        every_ns: heartbeat spacing in capture time (the snapshot grid's interval is a good value).
        watermark_ns: the partition's largest capture time so far (-1: none).
        instruments: (venue, symbol) of every instrument seen, in first-seen order.
    """

    every_ns: int
    watermark_ns: int = -1
    instruments: list[tuple[str, str]] = field(default_factory=list)
    _mark: int = -1

    def stamp(self, batch: Batch) -> Batch:
        """``batch`` plus a :data:`WATERMARK` table when the watermark passed a multiple of ``every_ns``."""
        known: set[tuple[str, str]] | None = None
        for name, table in batch.items():
            if name in _NOT_FEED or name.startswith("_") or not table.num_rows:
                continue
            self.watermark_ns = max(self.watermark_ns, int(table.column("ts_recv_ns").to_numpy().max()))
            for pair in _instruments(table):
                if known is None:
                    known = set(self.instruments)
                if pair not in known:
                    known.add(pair)
                    self.instruments.append(pair)
        # a mark counts the multiples of every_ns strictly below the watermark (instants before it are final)
        mark = (self.watermark_ns - 1) // self.every_ns if self.watermark_ns >= 0 else -1
        if mark <= self._mark or not self.instruments:
            return batch
        self._mark = mark
        n = len(self.instruments)
        table = pa.table([pa.array([v for v, _ in self.instruments], pa.string()),
                          pa.array([s for _, s in self.instruments], pa.string()),
                          pa.array(np.full(n, self.watermark_ns, np.int64))], schema=_WATERMARK_SCHEMA)
        return {**batch, WATERMARK: table}


def _instruments(table: pa.Table) -> list[tuple[str, str]]:
    return [(v, s) for v, s, _ in instrument_rows(table)]


def instrument_rows(table: pa.Table) -> list[tuple[str, str, np.ndarray | None]]:
    """``(venue, symbol, row indices)`` per instrument of a non-empty table, in order of first row;
    the indices are None when the whole table is one instrument (the common case, no copy)."""
    venue, symbol = table.column("venue"), table.column("symbol")
    if venue.type != pa.string() or symbol.type != pa.string():
        table = table.set_column(table.schema.get_field_index("venue"), "venue", venue.cast(pa.string()))
        table = table.set_column(table.schema.get_field_index("symbol"), "symbol", symbol.cast(pa.string()))
        venue, symbol = table.column("venue"), table.column("symbol")
    v, s = single_value(venue), single_value(symbol)
    if v is not None and s is not None:
        return [(v, s, None)]
    return list(instrument_groups(table))


__all__ = ["WATERMARK", "Batch", "Heartbeat", "cut_batches", "instrument_rows", "partition_paths"]
