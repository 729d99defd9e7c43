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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from tapeflow.errors import ConfigError
from tapeflow.live.batching import WATERMARK, Batch, Heartbeat, cut_batches, partition_paths
from tapeflow.live.shutdown import stop_requested
from tapeflow.settings import DEFAULT_BATCH_EVENTS
from tapeflow.venues import get_format

__all__ = ["WATERMARK", "CaptureResume", "CaptureSource", "Heartbeat", "IdleStop", "LiveSource",
           "cut_batches", "partition_paths"]

FIRST_ROW_TIMEOUT_NS = 60_000_000_000  # the least wait for a first data row when an idle stop is set


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
        if stop_requested():
            raise StopIteration  # asked to stop (tapeflow.live.shutdown): not done
        while True:
            for batch in self._queue:
                self._count(batch)
                return [self._heartbeat.stamp(batch) if self._heartbeat is not None else batch]
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done = True
                raise StopIteration
            self._queue = cut_batches(self._skip_emitted(chunk.tables), self._batch_events, self._batch_ns)

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
        batch_ns: a micro-batch spans less than this much capture time (None, the default: no
            time bound). Capture time is not the replay's clock: a bound cuts a sparse capture
            into tiny batches (a LOBSTER day, ~2.5 messages per second, became 23,400 batches of
            1 s) whose fixed cost per batch then dominates.
        heartbeat_ns: send the partition's capture-time watermark to all its instruments every
            this much capture time (:class:`Heartbeat`; None: no heartbeats).

    Raises:
        ConfigError: an unknown format, no paths, a missing file or a non-positive bound.
    """

    def __init__(self, format_name: str, paths: Sequence[Path | str], *,
                 batch_events: int = DEFAULT_BATCH_EVENTS, batch_ns: int | None = None,
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


class IdleStop:
    """When a live partition with an idle stop ends: ``idle_ns`` with no batch at all, counted from
    the first empty poll (time spent downstream never counts), once a data row has arrived; before
    the first data row, only when none came within ``first_row_ns`` of the first poll.

    A slow start is no idle feed: a first connect on a busy machine, or a fresh checkout's first
    kernel compile (~20 s, ``tapeflow.warm``), takes longer than a replay's idle stop, and a run
    that stopped before its first row had nothing at all. STATUS rows alone do not start the idle
    clock (a connector failing to connect writes them in a loop), nor do they hold off the bound.

    Args:
        idle_ns: the idle stop.
        first_row_ns: the bound on the wait for the first data row (None:
            ``max(idle_ns, FIRST_ROW_TIMEOUT_NS)``).
    """

    def __init__(self, idle_ns: int, first_row_ns: int | None = None) -> None:
        self.idle_ns = idle_ns
        self.first_row_ns = max(idle_ns, FIRST_ROW_TIMEOUT_NS) if first_row_ns is None else first_row_ns
        self.started: float | None = None
        self.got_data = False
        self._idle_since: float | None = None

    def stop(self, now: float, *, batch: bool, data: bool) -> bool:
        """Whether to stop now (monotonic seconds), after a poll that got a ``batch`` (any rows)
        holding ``data`` rows (rows other than STATUS) or nothing."""
        self.started = now if self.started is None else self.started
        self.got_data = self.got_data or data
        if not self.got_data:
            return now - self.started >= self.first_row_ns / 1e9
        if batch:
            self._idle_since = None
            return False
        self._idle_since = self._idle_since or now
        return now - self._idle_since >= self.idle_ns / 1e9


class _LivePartition(StatefulSourcePartition[Batch, None]):
    def __init__(self, source: LiveSource) -> None:
        self._source = source
        self._client = source.make_client()
        self._batches = _thread_iterator(self._client)
        self._deadline = (time.monotonic() + source.duration_ns / 1e9) if source.duration_ns else None
        self._idle_stop = (IdleStop(source.idle_stop_ns, source.first_row_timeout_ns)
                           if source.idle_stop_ns else None)
        self._idle = False
        self._heartbeat = Heartbeat(source.heartbeat_ns) if source.heartbeat_ns else None

    def next_batch(self) -> list[Batch]:
        now = time.monotonic()
        if stop_requested() or (self._deadline is not None and now >= self._deadline):
            self.close()
            raise StopIteration
        batch = _poll(self._batches)
        # an empty batch (a quiet connection's awake stamp, ConnectorSettings.awake_interval_s) is none
        got = batch is not None and not batch.empty
        self._idle = not got
        out = {} if batch is None else {k: t for k, t in batch.records.items() if t.num_rows}
        if self._idle_stop is not None and self._idle_stop.stop(now, batch=got, data=bool(out)):
            self.close()
            raise StopIteration
        if batch is None:
            return []
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
        idle_stop_ns: stop once no batch came for this long after the first data row (None: never;
            a replayed capture that has run out); see :class:`IdleStop`.
        first_row_timeout_ns: with ``idle_stop_ns``, stop when no data row came this long after the
            start (None: ``max(idle_stop_ns, 60 s)``).
        client_options: extra keyword arguments for the client.
        heartbeat_ns: as :class:`CaptureSource` (the feed's capture clock drives quiet instruments).

    Raises:
        ConfigError: no client module for the venue.
    """

    def __init__(self, venue: str, symbols: Sequence[str], *, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Path | str | None = None,
                 duration_ns: int | None = None, idle_stop_ns: int | None = None,
                 client_options: dict[str, Any] | None = None, heartbeat_ns: int | None = None,
                 first_row_timeout_ns: int | None = None) -> None:
        if not symbols:
            raise ConfigError(f"LiveSource for {venue} needs at least one symbol")
        self.venue = venue
        self.symbols = list(symbols)
        self.endpoint = endpoint
        self.rest_endpoint = rest_endpoint
        self.journal = Path(journal) if journal is not None else None
        self.duration_ns = duration_ns
        self.idle_stop_ns = idle_stop_ns
        self.first_row_timeout_ns = first_row_timeout_ns
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
