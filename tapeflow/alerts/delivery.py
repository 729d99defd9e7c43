"""Delivery: one ordered outbox per channel, retries with backoff and jitter, the ledger, dead letters.

A channel's alerts leave in the order they were raised: the head of a channel's queue is retried
(after ``backoff_base_ms * 2**(attempt-1)``, capped at ``backoff_max_ms``, shortened by a random
share up to ``jitter``) and nothing behind it overtakes it, so a receiver that was down gets every
alert once, in order, when it returns. An attempt that cannot succeed (a 4xx, a blocked
destination) or the ``max_attempts``-th failure moves the alert to the dead letters and the queue
goes on. Every attempt's outcome is one ledger row (:data:`tapeflow.schemas.alerts.ALERT_DELIVERY`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tapeflow.alerts.alert import Alert, idempotency_key
from tapeflow.alerts.channels import send
from tapeflow.alerts.config import AlertsConfig, Delivery
from tapeflow.alerts.journal import Journal
from tapeflow.alerts.transport import DeliveryFailure
from tapeflow.schemas.alerts import ALERT_DELIVERY

log = logging.getLogger(__name__)


@dataclass
class Pending:
    """An alert waiting on one channel."""

    alert: Alert
    channel: str
    key: str
    attempts: int = 0
    due_s: float = 0.0  # monotonic time of the next attempt


@dataclass(frozen=True)
class DeadLetter:
    """An alert a channel gave up on, with the closed reason of its last attempt."""

    alert: Alert
    channel: str
    attempts: int
    reason: str


def backoff_s(policy: Delivery, attempt: int, rng: random.Random) -> float:
    """Seconds to wait after the ``attempt``-th failure (1-based): exponential, capped, jittered."""
    full = min(policy.backoff_max_ms, policy.backoff_base_ms * 2 ** min(attempt - 1, 40)) / 1000
    return full * (1 - policy.jitter * rng.random())


@dataclass
class Outbox:
    """The queues of every channel of a config, delivered by :meth:`deliver_pending`.

    Args:
        config: the channels, the retry policy and the allowlist.
        sender: sends one attempt (tests swap nothing: the default is the real channels).
        clock_s: monotonic seconds (backoff deadlines).
        wall_ns: wall time in ns (ledger times and latency).
        seed: the jitter's random seed (None: unseeded).
        journal: where the queues are kept across restarts (None: in memory only); what it
            holds from before is queued first, in its order.
    """

    config: AlertsConfig
    sender: Callable[..., int] = send
    clock_s: Callable[[], float] = time.monotonic
    wall_ns: Callable[[], int] = time.time_ns
    seed: int | None = None
    journal: Journal | None = None
    queues: dict[str, deque[Pending]] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def __post_init__(self) -> None:
        # one generator per channel: channels draw their jitter in threads of their own
        self._rngs = {name: random.Random(None if self.seed is None else f"{self.seed}:{name}")
                      for name in self.config.channels}
        self._pool: ThreadPoolExecutor | None = None
        self._journal_lock = threading.Lock()
        self.queues = {name: deque() for name in self.config.channels}
        for channel, key, alert in self.journal.restored if self.journal is not None else ():
            if channel in self.queues:  # a channel removed from the config since: not ours to send
                self.queues[channel].append(Pending(alert, channel, key))

    def enqueue(self, alert: Alert, channels: tuple[str, ...]) -> None:
        """Queue ``alert`` behind what each of ``channels`` already holds; a channel already holding
        ``max_pending`` alerts dead-letters it as ``overflow`` (bounded memory under a storm)."""
        items = []
        for name in channels:
            item = Pending(alert, name, idempotency_key(alert, name))
            if len(self.queues[name]) >= self.config.delivery.max_pending:
                self.dead_letters.append(DeadLetter(alert, name, 0, "overflow"))
                self._record([self._row(item, "dead_letter", "overflow", 0)])
                log.warning("alert %s dead-lettered on channel %s: %d alerts already wait",
                            alert.alert_id, name, len(self.queues[name]))
            else:
                items.append(item)
        if self.journal is not None:
            with self._journal_lock:
                self.journal.added([(p.channel, p.key, p.alert) for p in items])
        for item in items:
            self.queues[item.channel].append(item)

    @property
    def pending(self) -> int:
        """Alerts waiting, all channels together."""
        return sum(len(q) for q in self.queues.values())

    def next_due_s(self) -> float | None:
        """Monotonic time the earliest head is due (None: nothing waits)."""
        dues = [q[0].due_s for q in self.queues.values() if q]
        return min(dues) if dues else None

    def deliver_pending(self) -> list[dict[str, Any]]:
        """Attempt every channel's due alerts, in order; returns the ledger rows written now.

        Channels with work due are delivered concurrently, one thread each (a slow receiver holds
        up only its own queue, for the call's duration); rows and dead letters are added in the
        configured channel order, so the ledger does not depend on thread timing.
        """
        now = self.clock_s()
        due = [name for name, queue in self.queues.items() if queue and queue[0].due_s <= now]
        if len(due) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(len(self.queues), thread_name_prefix="tapeflow-alerts")
            results = list(self._pool.map(self._drain, due))
        else:
            results = [self._drain(name) for name in due]
        rows = [row for channel_rows, _ in results for row in channel_rows]
        self._record(rows)
        self.dead_letters.extend(letter for _, letters in results for letter in letters)
        return rows

    def _record(self, rows: list[dict[str, Any]]) -> None:
        if self.journal is not None and rows:
            with self._journal_lock:
                self.journal.ledger(rows)
        self.ledger.extend(rows)

    def close(self) -> None:
        """Stop the delivery threads (the queues stay, and the journal holds them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _drain(self, name: str) -> tuple[list[dict[str, Any]], list[DeadLetter]]:
        queue, channel, rng = self.queues[name], self.config.channels[name], self._rngs[name]
        rows: list[dict[str, Any]] = []
        letters: list[DeadLetter] = []
        while queue and queue[0].due_s <= self.clock_s():
            head = queue[0]
            head.attempts += 1
            try:
                code = self.sender(channel, head.alert, head.key, allow=self.config.allow,
                                   timeout_s=self.config.delivery.timeout_ms / 1000)
            except DeliveryFailure as failure:
                if failure.retryable and head.attempts < self.config.delivery.max_attempts:
                    head.due_s = self.clock_s() + backoff_s(self.config.delivery, head.attempts, rng)
                    rows.append(self._row(head, "retry", failure.reason, failure.status_code))
                    break  # the head blocks its queue: alerts leave in order
                self._done(queue)
                letters.append(DeadLetter(head.alert, name, head.attempts, failure.reason))
                rows.append(self._row(head, "dead_letter", failure.reason, failure.status_code))
                log.warning("alert %s dead-lettered on channel %s after %d attempts: %s",
                            head.alert.alert_id, name, head.attempts, failure.reason)
                continue
            self._done(queue)
            rows.append(self._row(head, "delivered", "", code))
        return rows, letters

    def _done(self, queue: deque[Pending]) -> None:
        item = queue.popleft()
        if self.journal is not None:
            with self._journal_lock:
                self.journal.done(item.key)

    def _row(self, item: Pending, outcome: str, reason: str, code: int) -> dict[str, Any]:
        now = self.wall_ns()
        a = item.alert
        return {
            "ts_event_ns": now, "ts_recv_ns": a.created_ns, "venue": a.venue, "symbol": a.symbol,
            "alert_id": a.alert_id, "rule": a.rule, "severity": a.severity, "channel": item.channel,
            "idempotency_key": item.key, "attempt": item.attempts, "outcome": outcome, "reason": reason,
            "status_code": code, "latency_ns": max(0, now - a.created_ns),
        }


def ledger_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Ledger rows as an :data:`ALERT_DELIVERY` table."""
    if not rows:
        return ALERT_DELIVERY.empty_table()
    return ALERT_DELIVERY.table({name: [row[name] for row in rows] for name in ALERT_DELIVERY.column_names})
