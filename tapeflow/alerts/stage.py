"""The live flow's alerts step: each micro-batch's ``signal`` and ``status`` rows -> the engine.

``flows.sinks.AlertSink`` wires it after the signals stage (one instance per flow: the sink has
one partition, so throttle windows and the outbox live on one worker). Per batch it submits the
rows and sends the closing counts of throttle windows that ended by the newest venue time seen.
Delivery runs on a thread of its own (the courier): it wakes when alerts are queued or a retry falls
due, makes a delivery pass and appends the attempts' ledger rows to the lake, so a slow or dead
receiver never holds up the flow's next batch. At the end the stage sends the closing counts of the
windows still open, stops the courier and keeps delivering for up to ``drain_s``; what is left
waits in the journal for the next run.

Per batch the stage also applies the acknowledgements ``tapeflow serve`` appended to the acks file
since the last batch (before the batch's rows, so an acknowledged alert's follow-ups in it are held
back), saves the throttle state beside the journal, and hands the alerts it raised to ``publish``
(the flow's live stream, so the dashboard's alert feed shows them as they are raised).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa

from tapeflow.alerts.acks import AckReader
from tapeflow.alerts.alert import Alert
from tapeflow.alerts.config import load
from tapeflow.alerts.engine import AlertEngine
from tapeflow.schemas.records import SIGNAL, STATUS

DRAIN_S = 10.0
IDLE_WAKE_S = 0.5  # the courier's longest sleep with nothing due (a missed wake costs at most this)

log = logging.getLogger(__name__)


class AlertStage:
    """An :class:`AlertEngine` fed by the flow's items.

    Args:
        config: the alerts file (validated here: a bad file fails at build time).
        journal: the engine's outbox journal (queued deliveries survive a restart).
        lake: where the delivery ledger (``alert_delivery``) is appended; None: kept in memory.
        drain_s: how long :meth:`close` keeps delivering what is still queued.
        acks: the acknowledgements file ``tapeflow serve`` appends to (None: not read).
        publish: called with the alerts each batch raised (the flow's live stream; None: not published).

    Raises:
        ConfigError: the alerts file is bad.
        StorageError: the journal or the saved throttle state cannot be read.
    """

    def __init__(self, config: Path, journal: Path, lake: Path | None = None, *,
                 drain_s: float = DRAIN_S, acks: Path | None = None,
                 publish: Callable[[list[Alert]], None] | None = None) -> None:
        journal.parent.mkdir(parents=True, exist_ok=True)
        self.engine = AlertEngine(load(config), journal=journal)
        self.lake, self.drain_s = lake, drain_s
        self.acks = AckReader(acks) if acks is not None else None
        self.publish = publish
        self.raised: list[Alert] = []
        self.newest_event_ns = -sys.maxsize
        self._writer = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()  # idle and wake change together
        self._courier = threading.Thread(target=self._run_courier, name="tapeflow-alerts-courier",
                                         daemon=True)
        self._courier.start()

    def apply(self, items: Iterable[tuple[str, pa.Table]]) -> list[Alert]:
        """Submit one micro-batch's ``signal`` and ``status`` tables (others are ignored) and close
        the windows that ended; returns the alerts raised. Their delivery (and its ledger rows) is
        the courier's: this call never waits on a receiver."""
        if self.acks is not None:
            self.engine.apply_acks(self.acks.read_new())
        raised: list[Alert] = []
        for name, table in items:
            if name == SIGNAL.name:
                raised += self.engine.submit_table(table)
            elif name == STATUS.name:
                raised += [a for row in table.to_pylist() for a in self.engine.submit_status(row)]
            else:
                continue
            if table.num_rows:
                self.newest_event_ns = max(self.newest_event_ns, max(table.column("ts_event_ns").to_pylist()))
        if raised or self.engine.pending:
            raised += self.engine.close_windows(self.newest_event_ns)
        self.engine.save_state()
        if raised and self.publish is not None:
            self._publish(raised)
        if self.engine.pending:
            with self._lock:
                self._idle.clear()
                self._wake.set()
        self.raised += raised
        return raised

    def _publish(self, alerts: list[Alert]) -> None:
        try:
            self.publish(alerts)  # type: ignore[misc]
        except Exception:  # the stream is for watching: its failure must not stop alerting
            log.exception("alerts: publishing %d alert(s) on the live stream failed", len(alerts))

    def wait_delivered(self, timeout_s: float) -> bool:
        """Wait until the courier has made a pass after the last queued alert and nothing is due
        now (retries waiting on their backoff may remain); returns whether that happened in time."""
        return self._idle.wait(timeout_s)

    def _run_courier(self) -> None:
        while not self._stop.is_set():
            due_s = self.engine.outbox.next_due_s()
            wait_s = IDLE_WAKE_S if due_s is None else min(max(due_s - time.monotonic(), 0.0), IDLE_WAKE_S)
            self._wake.wait(wait_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.engine.deliver_pending()
                self._ledger()
            except Exception:  # a bug here must not kill the thread silently: log it, keep the queue
                log.exception("alerts courier: a delivery pass failed; the queue is kept and retried")
            due_s = self.engine.outbox.next_due_s()
            with self._lock:
                if not self._wake.is_set() and (due_s is None or due_s > time.monotonic()):
                    self._idle.set()

    def close(self) -> None:
        """Send the closing counts of open windows, deliver for up to ``drain_s``, write the ledger."""
        self._stop.set()
        self._wake.set()
        self._courier.join()
        closing = self.engine.close_windows(sys.maxsize)
        self.raised += closing
        if closing and self.publish is not None:
            self._publish(closing)
        deadline = time.monotonic() + self.drain_s
        self.engine.deliver_pending()
        while self.engine.pending and time.monotonic() < deadline:
            due_s = self.engine.outbox.next_due_s()
            time.sleep(min(max(due_s - time.monotonic(), 0.0) if due_s is not None else 0.05, 0.5))
            self.engine.deliver_pending()
        self._ledger()
        if self._writer is not None:
            self._writer.close()
        self.engine.close()

    def _ledger(self) -> None:
        if self.lake is None:
            return
        if self._writer is None:
            from tapeflow.storage.writer import Writer

            self._writer = Writer(self.lake)
        self.engine.write_ledger(self._writer)
