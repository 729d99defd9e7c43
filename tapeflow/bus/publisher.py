"""Publish the live flow's rows to Redis Streams, exactly once across a recovery, never blocking the flow.

:class:`RedisPublisher` takes ``(table_name, pa.Table)`` micro-batches, cuts each into its
streams with ids derived from the rows (:mod:`tapeflow.bus.streams`), queues the entries and
sends them with pipelined ``XADD <stream> MAXLEN ~ <n> <id> row <json>``. Redis refuses an id at
or below a stream's last one: such an entry was published before (a replay after recovery, a
kill between the send and the snapshot) and is counted in ``duplicates``, not raised.

When Redis cannot be reached (down at start, dropped mid-run, a hung socket past its timeout) the
entries wait in a bounded buffer, retried with backoff at each new batch and each snapshot, and a
line on stderr says so; the buffer is part of :class:`BusState`, so a kill during an outage loses
nothing. An outage longer than ``retry_s`` dead-letters what waits (and what arrives until Redis
answers again) with reason ``unavailable``; rows beyond ``buffer_rows`` are dead-lettered oldest
first as ``buffer_full``; an entry Redis answers with any other error is dead-lettered as
``refused`` (:mod:`tapeflow.bus.deadletter`). Nothing raises into the flow.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from tapeflow.bus.deadletter import Drop, write_dead_letters
from tapeflow.bus.streams import FIELD, split_streams
from tapeflow.storage.dsn import redact_dsn

FIRST_WAIT_S = 0.2
LONGEST_WAIT_S = 5.0
PIPELINE_ROWS = 2000
# Redis: "The ID specified in XADD is equal or smaller than the target stream top item"
_DUPLICATE = "equal or smaller"

Entry = tuple[str, str, bytes]  # (stream, id, row JSON)


@dataclass
class BusStats:
    """What the publisher did (kept in its resume state).

    Attributes:
        published: entries Redis stored.
        duplicates: entries Redis refused as at or below the stream's last id (published before).
        dead_lettered: rows written to the dead-letter file, per :class:`Drop` reason.
        outages: times Redis stopped answering.
        per_stream: entries stored per stream.
    """

    published: int = 0
    duplicates: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    outages: int = 0
    per_stream: dict[str, int] = field(default_factory=dict)


@dataclass
class BusState:
    """The publisher's resume state: each stream's last assigned id, the entries not yet sent, stats."""

    last_ids: dict[str, tuple[int, int]] = field(default_factory=dict)
    pending: list[Entry] = field(default_factory=list)
    stats: BusStats = field(default_factory=BusStats)


def connect(url: str, *, timeout_s: float = 5.0) -> Any:
    """A ``redis.Redis`` for ``url`` that fails fast instead of retrying (the publisher retries)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_connect_timeout=min(1.0, timeout_s), socket_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 0))


class RedisPublisher:
    """Publishes micro-batches to Redis Streams (see the module docstring).

    Args:
        url: ``redis://[user:password@]host:port[/db]`` (``rediss://`` for TLS).
        dead_letters: the dead-letter file (JSON lines).
        maxlen: approximate ``MAXLEN`` of every stream (0: no trimming).
        prefix: prepended to every stream name (e.g. ``tapeflow:``).
        retry_s: how long an outage may last before waiting rows are dead-lettered.
        buffer_rows: most rows waiting for Redis; older ones beyond it are dead-lettered.
        state: resume state from a snapshot (None: a fresh start).
        err: where status lines go.
        clock: monotonic seconds (tests pass a fake one).
        client: a ready client (tests, the benchmark); None: :func:`connect` on first use.
        idempotent: False lets Redis number the entries (``*``): the control of the recovery tests,
            which a replay publishes twice.
    """

    def __init__(self, url: str, dead_letters: Path, *, maxlen: int = 100_000, prefix: str = "",
                 retry_s: float = 60.0, buffer_rows: int = 100_000, state: BusState | None = None,
                 err: IO[str] | None = None, clock: Callable[[], float] = time.monotonic,
                 client: Any = None, idempotent: bool = True) -> None:
        self.url, self.shown = url, redact_dsn(url)
        self.dead_letters = dead_letters
        self.maxlen, self.prefix = maxlen, prefix
        self.retry_s, self.buffer_rows = retry_s, buffer_rows
        state = state or BusState()
        self.last_ids = dict(state.last_ids)
        self.pending: deque[Entry] = deque(state.pending)
        self.stats = state.stats
        self._err = err
        self._clock = clock
        self._client = client
        self.idempotent = idempotent
        self._down_since: float | None = None
        self._wait_s = FIRST_WAIT_S
        self._next_try = 0.0

    def publish(self, name: str, table: pa.Table) -> None:
        """Queue a micro-batch's rows under their streams and ids, then send what waits."""
        for rows in split_streams(name, table, self.last_ids, self.prefix):
            self.pending.extend(zip([rows.stream] * len(rows.ids), rows.ids, rows.rows, strict=True))
        self.flush()

    def flush(self, wait_s: float = 0.0) -> bool:
        """Send the waiting entries; while Redis is down, try again after the backoff, for up to
        ``wait_s`` seconds (0: one try if one is due). Returns True when nothing waits."""
        deadline = self._clock() + wait_s
        while self.pending:
            now = self._clock()
            if self._down_since is not None and now < self._next_try:
                if self._next_try > deadline:
                    break
                time.sleep(self._next_try - now)
            try:
                self._send()
            except Exception as exc:  # noqa: BLE001 - any failure to reach Redis is an outage, never a crash
                if not _unreachable(exc):
                    raise
                self._went_down(exc)
                if self._clock() >= deadline:
                    break
                continue
            self._came_back()
        self._bound()
        return not self.pending

    def snapshot(self) -> BusState:
        """The resume state (a quick send first, so the snapshot holds as little as it can)."""
        self.flush()
        return BusState(dict(self.last_ids), list(self.pending), _copy(self.stats))

    def close(self, wait_s: float = 5.0) -> None:
        """Send what waits, for up to ``wait_s`` seconds; dead-letter the rest as ``unavailable``."""
        if not self.flush(wait_s) and self.pending:
            self._drop(len(self.pending), Drop.UNAVAILABLE, f"{self.shown} not answering when the flow ended")
        if self._client is not None:
            self._client.close()

    def _send(self) -> None:
        if self._client is None:
            self._client = connect(self.url)
        while self.pending:
            chunk = [self.pending[i] for i in range(min(PIPELINE_ROWS, len(self.pending)))]
            pipe = self._client.pipeline(transaction=False)
            trim = ("MAXLEN", "~", self.maxlen) if self.maxlen else ()
            for stream, entry_id, row in chunk:
                pipe.execute_command("XADD", stream, *trim, entry_id if self.idempotent else "*", FIELD, row)
            results = pipe.execute(raise_on_error=False)
            refused: list[tuple[Entry, str]] = []
            for entry, result in zip(chunk, results, strict=True):
                if not isinstance(result, Exception):
                    self.stats.published += 1
                    self.stats.per_stream[entry[0]] = self.stats.per_stream.get(entry[0], 0) + 1
                elif _DUPLICATE in str(result):
                    self.stats.duplicates += 1
                elif isinstance(result, _link_errors()):
                    raise result
                else:
                    refused.append((entry, str(result)))
            for _ in chunk:
                self.pending.popleft()
            for entry, message in refused:
                self._dead_letter([entry], Drop.REFUSED, message)

    def _went_down(self, exc: BaseException) -> None:
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            self._wait_s = FIRST_WAIT_S
            self.stats.outages += 1
            self._say(f"{self.shown} unavailable ({type(exc).__name__}: {exc}); buffering up to "
                      f"{self.buffer_rows} rows, retrying for {self.retry_s:g} s")
        else:
            self._wait_s = min(self._wait_s * 2, LONGEST_WAIT_S)
        self._next_try = now + self._wait_s
        if self._client is not None:
            self._client.close()
            self._client = None

    def _came_back(self) -> None:
        if self._down_since is not None:
            self._say(f"{self.shown} answering again after {self._clock() - self._down_since:.1f} s; "
                      f"waiting rows sent")
            self._down_since = None

    def _bound(self) -> None:
        if self._down_since is not None and self._clock() - self._down_since >= self.retry_s and self.pending:
            self._drop(len(self.pending), Drop.UNAVAILABLE,
                       f"{self.shown} not answering for {self._clock() - self._down_since:.1f} s")
        excess = len(self.pending) - self.buffer_rows
        if excess > 0:
            self._drop(excess, Drop.BUFFER_FULL, f"more than {self.buffer_rows} rows waited for {self.shown}")

    def _drop(self, n: int, reason: Drop, detail: str) -> None:
        entries = [self.pending.popleft() for _ in range(n)]
        self._dead_letter(entries, reason, detail)
        self._say(f"{n} rows dead-lettered ({reason}: {detail}) to {self.dead_letters}")

    def _dead_letter(self, entries: list[Entry], reason: Drop, detail: str) -> None:
        write_dead_letters(self.dead_letters, entries, reason, detail)
        self.stats.dead_lettered[str(reason)] = self.stats.dead_lettered.get(str(reason), 0) + len(entries)

    def _say(self, text: str) -> None:
        print(f"live: bus: {text}", file=self._err or sys.stderr, flush=True)


def _unreachable(exc: BaseException) -> bool:
    import redis

    # a refused entry comes back as a value (``raise_on_error=False``); anything raised is the link
    return isinstance(exc, redis.RedisError | OSError)


def _link_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)


def _copy(stats: BusStats) -> BusStats:
    return BusStats(stats.published, stats.duplicates, dict(stats.dead_lettered), stats.outages,
                    dict(stats.per_stream))
