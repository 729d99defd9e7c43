"""A Bytewax source that runs every connector of a failover config and hands on the failover
stage's output (``tapeflow.live.failover.FailoverStage``; docs/failover.md).

One partition holds all the config's connections (the stage must see every source's rows in one
arrival order to decide). A source whose venue no other source uses journals under the journal
root as a lone feed does (``<journal>/<venue>/<day>.jsonl``, where the batch side and the
gap-repair rebuild find it); sources sharing a venue journal under ``<journal>/<source name>``
each, so two writers never share a file. Each poll feeds the stage every batch that arrived,
stamped with its arrival time (when its frames were read off the socket, or its STATUS rows
written), in that order across the sources, so a flow held up for a while (a first kernel
compile, a warehouse's first load) does not reorder what happened on the sockets; then, when
nothing is left queued, it ticks the stage (the start grace and the hold run on it).

Each connector stamps when it last read its socket (``ConnectorSettings.awake_interval_s``, turned
on here: ``stale_after`` / 20, at most 100 ms) and hands on an empty batch saying so while its feed is
quiet; the stage judges a source's silence on those stamps alone, so a connector that did not run
(a starved process) is never found silent (docs/failover.md, "Silence").
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.sources import IdleStop, LiveSource
from tapeflow.live.batching import Batch, Heartbeat
from tapeflow.live.failover import FailoverStage, awake_interval_ns
from tapeflow.live.failover_config import FailoverConfig
from tapeflow.live.shutdown import stop_requested
from tapeflow.schemas.records import SOURCE_SWITCH

_MAX_POLLS = 64  # batches taken from one source per poll, so one busy feed cannot starve the others


class _FailoverPartition(StatefulSourcePartition[Batch, None]):
    def __init__(self, source: FailoverSource) -> None:
        from tapeflow import live

        self._source = source
        self.stage = FailoverStage(source.config)
        self._feeds = {name: live.iterate_in_thread(src.make_client())
                       for name, src in source.sources.items()}
        self._deadline = (time.monotonic() + source.duration_ns / 1e9) if source.duration_ns else None
        self._idle_stop = (IdleStop(source.idle_stop_ns, source.first_row_timeout_ns)
                           if source.idle_stop_ns else None)
        self._idle = False
        self._done = False
        self._last_ns = 0
        self._heartbeat = Heartbeat(source.heartbeat_ns) if source.heartbeat_ns else None

    def next_batch(self) -> list[Batch]:
        if self._done:
            raise StopIteration
        now = time.monotonic()
        if stop_requested() or (self._deadline is not None and now >= self._deadline) or not self._feeds:
            return self._finish()
        arrived = []
        backlog = data = real = False
        for name, feed in list(self._feeds.items()):
            for _ in range(_MAX_POLLS):
                try:
                    got = feed.poll(0.0)
                except StopIteration:
                    del self._feeds[name]
                    break
                if got is None:
                    break
                arrived.append((_arrival_ns(got), len(arrived), name, got))
                data = data or any(t.num_rows for t in got.records.values())
                real = real or not got.empty
            else:
                backlog = True
        # in the order things happened on the sockets, not the order the feeds were polled in (a
        # worker held up for a while finds several feeds' batches queued at once)
        outs = []
        for arrival_ns, _, name, got in sorted(arrived, key=lambda a: a[:2]):
            self._last_ns = max(self._last_ns, arrival_ns)
            awake = got.awake_ns if got.awake_ns >= 0 else None
            outs.append(self.stage.feed(name, self._last_ns, _batch(got), awake_ns=awake))
        # an empty batch (an awake stamp of a quiet connection) is no batch to the idle stop
        self._idle = not real
        if self._idle_stop is not None and self._idle_stop.stop(now, batch=real, data=data):
            return self._finish()
        if not backlog:  # with batches still queued, now is not when the newest row arrived
            outs.append(self.stage.tick(max(self._last_ns, time.time_ns())))
        return [self._stamp(b) for b in outs if b]


    def _finish(self) -> list[Batch]:
        self.close()
        self._done = True
        out = self.stage.close()
        return [self._stamp(out)] if out else []

    def _stamp(self, batch: Batch) -> Batch:
        if self._heartbeat is None:
            return batch
        # a switch row's capture time is the stage's arrival clock, not the feed's (a replay's
        # rows keep their recorded capture times): it must not move the feed's watermark
        switches = batch.pop(SOURCE_SWITCH.name, None)
        batch = self._heartbeat.stamp(batch)
        return batch if switches is None else {**batch, SOURCE_SWITCH.name: switches}

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(milliseconds=5) if self._idle else None

    def snapshot(self) -> None:
        # live feeds cannot be rewound (as flows.sources.LiveSource): a resume starts the stage afresh
        return None

    def close(self) -> None:
        for feed in self._feeds.values():
            feed.close()
        self._feeds = {}


class FailoverSource(FixedPartitionedSource[Batch, None]):
    """Every source of a failover config as one stream of micro-batches, the stage applied.

    Args:
        config: the failover config (``tapeflow.live.failover_config.load_failover``).
        journal: journal root (None: no journal; sources sharing a venue under
            ``<journal>/<source name>``).
        duration_ns, idle_stop_ns, heartbeat_ns, first_row_timeout_ns: as
            :class:`flows.sources.LiveSource` (the idle clock starts at the first data row of any
            source).
        client_options: per source name, keyword arguments added to the config's (tests: settings
            objects a TOML file cannot hold).

    Raises:
        ConfigError: a source whose venue has no connector.
    """

    def __init__(self, config: FailoverConfig, *, journal: Path | str | None = None,
                 duration_ns: int | None = None, idle_stop_ns: int | None = None,
                 heartbeat_ns: int | None = None, first_row_timeout_ns: int | None = None,
                 client_options: dict[str, dict[str, Any]] | None = None) -> None:
        self.config = config
        self.duration_ns, self.idle_stop_ns, self.heartbeat_ns = duration_ns, idle_stop_ns, heartbeat_ns
        self.first_row_timeout_ns = first_row_timeout_ns
        extra = client_options or {}
        venues = [spec.venue for spec in config.sources]

        def journal_of(name: str, venue: str) -> Path | None:
            if journal is None:
                return None
            return Path(journal) / name if venues.count(venue) > 1 else Path(journal)

        awake_s = awake_interval_ns(config.stale_after_ns) / 1e9
        self.sources = {}
        for spec in config.sources:
            source = LiveSource(spec.venue, config.symbols_of(spec.name), endpoint=spec.endpoint,
                                rest_endpoint=spec.rest_endpoint, journal=journal_of(spec.name, spec.venue),
                                client_options={**spec.client_options(), **extra.get(spec.name, {})})
            _watch_awake(source, awake_s)
            self.sources[spec.name] = source

    def list_parts(self) -> list[str]:
        return ["failover:" + ",".join(self.sources)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _FailoverPartition:
        return _FailoverPartition(self)


def _watch_awake(source: LiveSource, every_s: float) -> None:
    # a connector's awake stamps, unless its settings already ask for them; a client of another
    # kind (no ConnectorSettings) gives none and the stage judges it on the arrival clock
    from tapeflow.live.connector import Connector, ConnectorSettings

    if not issubclass(source.client_class(), Connector):
        return
    settings = source.client_options.get("settings") or ConnectorSettings()
    if settings.awake_interval_s is None:
        source.client_options["settings"] = dataclasses.replace(settings, awake_interval_s=every_s)


def _arrival_ns(got: Any) -> int:
    # when its frames were read off the socket, or when the connector wrote its STATUS rows (a slow
    # flow must not make a feed look silent); an empty batch: when its connector was awake
    if got.empty and got.awake_ns >= 0:
        return int(got.awake_ns)
    if got.frames:
        return max(f.ts_recv_ns for f in got.frames)
    if got.status.num_rows:
        return int(got.status.column("ts_recv_ns").to_numpy().max())
    return time.time_ns()


def _batch(got: Any) -> Batch:
    out = {k: t for k, t in got.records.items() if t.num_rows}
    if got.status.num_rows:
        out["status"] = got.status
    return out
