"""Bytewax sources of the market flow: capture/journal/simulator files, and live venue connectors.

Every source emits **micro-batches**: ``dict[str, pa.Table]`` of decoded records keyed by record
name (``book_delta``, ``order_event``, ``trade``, ``quote``, ``rejected``, ``status``...), decoded
by the venue's own decoder exactly as ``tapeflow ingest`` / ``tapeflow book`` decode the same files.
One Bytewax item per micro-batch keeps the per-item cost (~10 us) negligible.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from tapeflow.errors import ConfigError
from tapeflow.venues import get_format

Batch = dict[str, pa.Table]
DEFAULT_BATCH_EVENTS = 5000
DEFAULT_BATCH_NS = 1_000_000_000


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


WATERMARK = "_watermark"  # batch key of heartbeat rows (a leading "_" keeps it out of every sink)
_WATERMARK_SCHEMA = pa.schema([("venue", pa.string()), ("symbol", pa.string()), ("ts_recv_ns", pa.int64())])
_NOT_FEED = ("status", "rejected")  # their times are not the feed's capture clock (status: wall time)


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
        known = set(self.instruments)
        for name, table in batch.items():
            if name in _NOT_FEED or name.startswith("_") or not table.num_rows:
                continue
            self.watermark_ns = max(self.watermark_ns, pc.max(table.column("ts_recv_ns")).as_py())
            for venue, symbol in _instruments(table):
                if (venue, symbol) not in known:
                    known.add((venue, symbol))
                    self.instruments.append((venue, symbol))
        # a mark counts the multiples of every_ns strictly below the watermark (instants before it are final)
        mark = (self.watermark_ns - 1) // self.every_ns if self.watermark_ns >= 0 else -1
        if mark <= self._mark or not self.instruments:
            return batch
        self._mark = mark
        n = len(self.instruments)
        table = pa.table([pa.array([v for v, _ in self.instruments], pa.string()),
                          pa.array([s for _, s in self.instruments], pa.string()),
                          pa.array([self.watermark_ns] * n, pa.int64())], schema=_WATERMARK_SCHEMA)
        return {**batch, WATERMARK: table}


def _instruments(table: pa.Table) -> list[tuple[str, str]]:
    venue, symbol = pc.min_max(table.column("venue")), pc.min_max(table.column("symbol"))
    if venue["min"] == venue["max"] and symbol["min"] == symbol["max"]:
        return [(venue["min"].as_py(), symbol["min"].as_py())]  # the common case: one instrument
    pairs = table.select(["venue", "symbol"]).group_by(["venue", "symbol"], use_threads=False).aggregate([])
    return list(zip(pairs.column("venue").to_pylist(), pairs.column("symbol").to_pylist(), strict=True))


@dataclass(frozen=True)
class CaptureResume:
    """Where a capture partition stands: rows of each record type already emitted.

    Decoders keep state across a stream (book sync, symbol maps), so a resume re-decodes the
    partition from its first file and skips exactly these rows: exact, at the price of decoding
    the emitted part again.
    """

    emitted: tuple[tuple[str, int], ...] = ()
    done: bool = False
    heartbeat: Heartbeat | None = None


class _CapturePartition(StatefulSourcePartition[Batch, CaptureResume]):
    def __init__(self, format_name: str, paths: list[Path], batch_events: int, batch_ns: int | None,
                 resume: CaptureResume | None, heartbeat_ns: int | None = None) -> None:
        self._heartbeat = (copy.deepcopy(resume.heartbeat) if resume and resume.heartbeat
                           else Heartbeat(heartbeat_ns) if heartbeat_ns else None)
        self._emitted = dict(resume.emitted) if resume else {}
        self._done = bool(resume and resume.done)
        self._skip = dict(self._emitted)
        self._chunks = iter(get_format(format_name).decode(paths)) if not self._done else iter(())
        self._batch_events, self._batch_ns = batch_events, batch_ns
        self._queue: Iterator[Batch] = iter(())

    def next_batch(self) -> list[Batch]:
        for batch in self._queue:
            self._count(batch)
            return [self._heartbeat.stamp(batch) if self._heartbeat is not None else batch]
        chunk = next(self._chunks, None)
        if chunk is None:
            self._done = True
            raise StopIteration
        self._queue = cut_batches(self._skip_emitted(chunk.tables), self._batch_events, self._batch_ns)
        return []

    def _skip_emitted(self, tables: Batch) -> Batch:
        out = {}
        for name, table in tables.items():
            skip = min(self._skip.get(name, 0), table.num_rows)
            if skip:
                self._skip[name] -= skip
            if table.num_rows > skip:
                out[name] = table.slice(skip)
        return out

    def _count(self, batch: Batch) -> None:
        for name, table in batch.items():
            self._emitted[name] = self._emitted.get(name, 0) + table.num_rows

    def snapshot(self) -> CaptureResume:
        return CaptureResume(tuple(sorted(self._emitted.items())), self._done, copy.deepcopy(self._heartbeat))


class CaptureSource(FixedPartitionedSource[Batch, CaptureResume]):
    """Capture, journal or simulator files as micro-batches of decoded records.

    One partition per group of files that form one stream (see :func:`partition_paths`); the
    resume state (:class:`CaptureResume`) makes recovery exact.

    Args:
        format_name: a ``tapeflow formats`` name (``binance``, ``sim``, ``kraken``...).
        paths: the files; a journal folder's days or a capture with its REST snapshot file go in
            one folder, so they stay one stream.
        batch_events: at most this many rows (all record types) per micro-batch.
        batch_ns: a micro-batch spans less than this much capture time (None: no time bound).
        heartbeat_ns: send the partition's capture-time watermark to all its instruments every
            this much capture time (:class:`Heartbeat`; None: no heartbeats).

    Raises:
        ConfigError: an unknown format, no paths, a missing file or a non-positive bound.
    """

    def __init__(self, format_name: str, paths: Sequence[Path | str], *,
                 batch_events: int = DEFAULT_BATCH_EVENTS, batch_ns: int | None = DEFAULT_BATCH_NS,
                 heartbeat_ns: int | None = None) -> None:
        get_format(format_name)  # an unknown format fails here, at build time, not on a worker
        if not paths:
            raise ConfigError("CaptureSource needs at least one file")
        missing = [str(p) for p in paths if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"capture files not found: {', '.join(missing)}")
        if batch_events < 1 or any(v is not None and v <= 0 for v in (batch_ns, heartbeat_ns)):
            raise ConfigError(f"batch_events ({batch_events}), batch_ns ({batch_ns}) and heartbeat_ns "
                              f"({heartbeat_ns}) must be > 0")
        self.format_name = format_name
        self.partitions = partition_paths(paths)
        self.batch_events = batch_events
        self.batch_ns = batch_ns
        self.heartbeat_ns = heartbeat_ns

    def list_parts(self) -> list[str]:
        return list(self.partitions)

    def build_part(self, step_id: str, for_part: str, resume_state: CaptureResume | None
                   ) -> _CapturePartition:
        return _CapturePartition(self.format_name, self.partitions[for_part], self.batch_events,
                                 self.batch_ns, resume_state, self.heartbeat_ns)


class _LivePartition(StatefulSourcePartition[Batch, None]):
    def __init__(self, source: LiveSource) -> None:
        self._source = source
        self._client = source.make_client()
        self._batches = _thread_iterator(self._client)
        self._deadline = (time.monotonic() + source.duration_ns / 1e9) if source.duration_ns else None
        self._idle_since: float | None = None
        self._idle = False
        self._heartbeat = Heartbeat(source.heartbeat_ns) if source.heartbeat_ns else None

    def next_batch(self) -> list[Batch]:
        now = time.monotonic()
        if self._deadline is not None and now >= self._deadline:
            self.close()
            raise StopIteration
        batch = _poll(self._batches)
        self._idle = batch is None
        if batch is None:
            # idle counts from the first empty poll, so time spent downstream never counts
            self._idle_since = self._idle_since or now
            if self._source.idle_stop_ns and now - self._idle_since >= self._source.idle_stop_ns / 1e9:
                self.close()
                raise StopIteration
            return []
        self._idle_since = None
        out = {k: t for k, t in batch.records.items() if t.num_rows}
        if batch.status.num_rows:
            out["status"] = batch.status
        if out and self._heartbeat is not None:
            out = self._heartbeat.stamp(out)
        return [out] if out else []

    def next_awake(self) -> datetime | None:
        # poll an idle feed every 5 ms instead of spinning the worker
        return datetime.now(UTC) + timedelta(milliseconds=5) if self._idle else None

    def snapshot(self) -> None:
        # a live feed cannot be rewound: after a resume the connector resyncs from a fresh
        # snapshot and says so in STATUS rows; the journal holds every frame for a batch repair
        return None

    def close(self) -> None:
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()


class LiveSource(FixedPartitionedSource[Batch, None]):
    """A live venue feed (the venue's declared client) as micro-batches of decoded records.

    The connector journals every frame before decoding it and emits STATUS rows (connected,
    resyncing, stale...), which the flow sends to the status sink. One partition (one
    connection) per source.

    Args:
        venue: the venue folder name (``binance``, ``bybit``, ``kraken``, ``coinbase``, ``okx``).
        symbols: the venue's instrument symbols.
        endpoint: websocket URL (default: the venue's own; a replay server's ``ws_url`` in tests).
        rest_endpoint: REST base URL for snapshots.
        journal: journal root folder (None: no journal).
        duration_ns: stop after this long (None: run until stopped).
        idle_stop_ns: stop once no batch came for this long (None: never; a replayed capture
            that has run out).
        client_options: extra keyword arguments for the client.
        heartbeat_ns: as :class:`CaptureSource` (the feed's capture clock drives quiet instruments).

    Raises:
        ConfigError: no client module for the venue.
    """

    def __init__(self, venue: str, symbols: Sequence[str], *, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Path | str | None = None,
                 duration_ns: int | None = None, idle_stop_ns: int | None = None,
                 client_options: dict[str, Any] | None = None, heartbeat_ns: int | None = None) -> None:
        if not symbols:
            raise ConfigError(f"LiveSource for {venue} needs at least one symbol")
        self.venue = venue
        self.symbols = list(symbols)
        self.endpoint = endpoint
        self.rest_endpoint = rest_endpoint
        self.journal = Path(journal) if journal is not None else None
        self.duration_ns = duration_ns
        self.idle_stop_ns = idle_stop_ns
        self.client_options = dict(client_options or {})
        self.heartbeat_ns = heartbeat_ns
        self.client_class()  # fail at build time on an unknown venue

    def client_class(self) -> type:
        """The venue's connector class, as its venue folder declares it (``FORMAT.client``)."""
        from tapeflow.wire.registry import client_class

        return client_class(self.venue)

    def make_client(self) -> Any:
        """A new connector instance for this source's symbols, endpoints and journal."""
        journal = None
        if self.journal is not None:
            from tapeflow.journal import Journal

            journal = Journal(self.journal)
        return self.client_class()(self.symbols, endpoint=self.endpoint, rest_endpoint=self.rest_endpoint,
                                   journal=journal, **self.client_options)

    def list_parts(self) -> list[str]:
        return [f"{self.venue}:{','.join(self.symbols)}"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _LivePartition:
        return _LivePartition(self)


def _thread_iterator(client: Any) -> Any:
    from tapeflow import live

    return live.iterate_in_thread(client)


def _poll(batches: Any) -> Any:
    # never block the worker: Bytewax sources cooperate, and next_awake paces an idle feed
    poll = getattr(batches, "poll", None)
    if poll is not None:
        return poll(0.0)
    return next(batches)
