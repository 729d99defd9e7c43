"""The alerts engine: match rows against rules, throttle, queue, deliver (``docs/alerts.md``).

The API the live flow's stage and the Dagster sensors (``dagster_project/alerts.py``) call::

    engine = AlertEngine(alerts.config.load(path))
    engine.submit(signal_row)            # or submit_table(signals), submit_status(status_row)
    engine.submit_quality(check_row)     # a failed Dagster asset check; submit_run(run_row): a failed run
    engine.deliver_pending()             # attempt what is due; call again until engine.pending == 0
    engine.write_ledger(writer)          # the attempts' ledger rows through the one Writer

Throttling runs on the source rows' venue time (``ts_event_ns``), so a replay raises the same
alerts as the live run did: per (rule, instrument) the first match of a window is sent and the
rest are counted; the next message of that key carries the count (``suppressed``), and
:meth:`AlertEngine.close_windows` sends a closing count for a window no later match reopened.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tapeflow.alerts.alert import Alert, AlertError, alert_id
from tapeflow.alerts.config import AlertsConfig, Rule
from tapeflow.alerts.delivery import DeadLetter, Outbox, ledger_table
from tapeflow.alerts.journal import Journal
from tapeflow.alerts.state import Window, state_path
from tapeflow.alerts.state import load as load_state
from tapeflow.alerts.state import save as save_state
from tapeflow.schemas.alerts import ALERT_DELIVERY

# Alerts remembered for acknowledgement and replay de-duplication (a bounded, oldest-first map).
REMEMBERED_ALERTS = 100_000
SIGNAL_COLUMNS = ("ts_event_ns", "venue", "symbol", "kind", "confidence")
STATUS_COLUMNS = ("ts_event_ns", "venue", "symbol", "state")
BAD_STATES = ("disconnected", "resyncing", "stale", "degraded", "gap", "skew", "checksum_mismatch")
QUALITY_COLUMNS = ("ts_event_ns", "venue", "symbol", "asset", "check", "severity", "passed", "run_id")
RUN_COLUMNS = ("ts_event_ns", "venue", "symbol", "job", "run_id")


@dataclass(frozen=True)
class Ack:
    """Who acknowledged an alert, and when (wall ns)."""

    by: str
    at_ns: int


class AlertEngine:
    """Rules -> alerts -> per-channel outboxes.

    Args:
        config: a validated alerts config.
        wall_ns: wall clock in ns (an alert's ``created_ns``, ledger times).
        clock_s: monotonic seconds (retry deadlines).
        seed: the retry jitter's seed.
        journal: a file that keeps the queued deliveries across restarts (None: memory only);
            the throttle windows and acknowledgements are kept beside it (:mod:`tapeflow.alerts.state`,
            saved by :meth:`save_state`) and restored from there.
    """

    def __init__(self, config: AlertsConfig, *, wall_ns: Callable[[], int] = time.time_ns,
                 clock_s: Callable[[], float] = time.monotonic, seed: int | None = None,
                 journal: Path | None = None) -> None:
        self.config = config
        self.quiet = config.quiet
        self.quiet_suppressed = 0
        self.outbox = Outbox(config, wall_ns=wall_ns, clock_s=clock_s, seed=seed,
                             journal=Journal(journal) if journal is not None else None)
        self._wall_ns = wall_ns
        self._windows: dict[tuple[str, str, str], Window] = {}
        self._alerts: OrderedDict[str, Alert] = OrderedDict()
        self._acks: dict[str, Ack] = {}
        self._ledger_written = 0
        self._state = state_path(journal) if journal is not None else None
        self._dirty = False
        if self._state is not None:
            self._windows, acks = load_state(self._state)
            self._acks = {k: Ack(by, at) for k, (by, at) in acks.items()}
            for window in self._windows.values():  # a replay of the row that opened it raises nothing
                if window.template is not None:
                    self._alerts[window.template.alert_id] = window.template
        for queue in self.outbox.queues.values():
            for item in queue:  # restored from the journal: a replay of their rows raises nothing new
                self._alerts[item.alert.alert_id] = item.alert

    # ---- matching
    def submit(self, row: Mapping[str, Any]) -> list[Alert]:
        """Match one ``signal`` row (a mapping of its columns); returns the alerts raised now.

        Raises:
            AlertError: the row lacks a column a rule reads, or its confidence is not a number.
        """
        _require(row, SIGNAL_COLUMNS, "signal")
        try:
            confidence = float(row["confidence"])
        except (TypeError, ValueError):
            raise AlertError(f"signal row's confidence is not a number: {row['confidence']!r:.40}") from None
        raised = []
        for rule in self._rules("signal"):
            if rule.kinds and row["kind"] not in rule.kinds:
                continue
            if not confidence >= rule.min_confidence or not self._instrument(rule, row):
                continue
            title = (f"{row['kind']} on {row['venue']} {row['symbol']} "
                     f"(confidence {confidence:.2f}, {row.get('detector', '')})")
            raised += self._raise(rule, row, str(row["kind"]), title, confidence,
                                  _evidence(row.get("evidence", "")), str(row.get("detector", "")))
        return raised

    def submit_table(self, signals: pa.Table) -> list[Alert]:
        """:meth:`submit` every row of a ``signal`` table, in order."""
        return [a for row in signals.to_pylist() for a in self.submit(row)]

    def submit_status(self, row: Mapping[str, Any]) -> list[Alert]:
        """Match one ``status`` row (feed health: gap, stale, degraded, ...).

        Raises:
            AlertError: the row lacks a column a rule reads.
        """
        _require(row, STATUS_COLUMNS, "status")
        raised = []
        for rule in self._rules("status"):
            if row["state"] not in (rule.states or BAD_STATES) or not self._instrument(rule, row):
                continue
            title = f"feed {row['state']} on {row['venue']} {row['symbol']}: {row.get('detail', '')}"[:300]
            raised += self._raise(rule, row, str(row["state"]), title, math.nan,
                                  {"detail": row.get("detail", ""), "sequence": row.get("sequence", -1)}, "")
        return raised

    def submit_quality(self, row: Mapping[str, Any]) -> list[Alert]:
        """Match one asset-check evaluation: a failed check of a watched asset, check and severity.

        ``row``: ``ts_event_ns`` (the evaluation's time), ``venue``/``symbol`` (from its partition;
        empty when it has none), ``asset`` (``a/b``), ``check``, ``severity`` (``ERROR``/``WARN``),
        ``passed``, ``run_id``, and optionally ``partition`` and ``detail``. A passed check never alerts.

        Raises:
            AlertError: the row lacks a column a rule reads.
        """
        _require(row, QUALITY_COLUMNS, "quality")
        if row["passed"]:
            return []
        raised = []
        for rule in self._rules("quality"):
            if (rule.assets and row["asset"] not in rule.assets
                    or rule.checks and row["check"] not in rule.checks):
                continue
            if row["severity"] not in rule.check_severities or not self._instrument(rule, row):
                continue
            where = f" {row['partition']}" if row.get("partition") else ""
            title = f"check {row['check']} failed on {row['asset']}{where}: {row.get('detail', '')}"[:300]
            detail = {"asset": row["asset"], "check": row["check"], "severity": row["severity"],
                      "partition": row.get("partition", ""), "run_id": row["run_id"],
                      "detail": str(row.get("detail", ""))[:500]}
            raised += self._raise(rule, row, str(row["check"]), title, math.nan, detail,
                                  f"{row['asset']}@{row['run_id']}")
        return raised

    def submit_run(self, row: Mapping[str, Any]) -> list[Alert]:
        """Match one failed Dagster run.

        ``row``: ``ts_event_ns`` (the failure's time), ``venue``/``symbol`` (from the run's partition;
        empty when it has none), ``job``, ``run_id``, and optionally ``partition`` and ``detail``.

        Raises:
            AlertError: the row lacks a column a rule reads.
        """
        _require(row, RUN_COLUMNS, "run")
        raised = []
        for rule in self._rules("run"):
            if rule.jobs and row["job"] not in rule.jobs or not self._instrument(rule, row):
                continue
            where = f" {row['partition']}" if row.get("partition") else ""
            title = f"run of {row['job']}{where} failed: {row.get('detail', '')}"[:300]
            detail = {"job": row["job"], "run_id": row["run_id"], "partition": row.get("partition", ""),
                      "detail": str(row.get("detail", ""))[:500]}
            raised += self._raise(rule, row, "run_failure", title, math.nan, detail, str(row["run_id"]))
        return raised

    def close_windows(self, now_event_ns: int) -> list[Alert]:
        """Send a closing count for every window that ended by ``now_event_ns`` with matches held back."""
        raised = []
        for key, window in list(self._windows.items()):
            rule = self._rule(key[0])
            if rule is None:
                del self._windows[key]  # its rule left the file since the window was saved
                continue
            if now_event_ns < max(window.start_ns + rule.window_ns, window.hold_until_ns):
                continue
            self._dirty = True
            del self._windows[key]  # ended: the next match opens a new one
            if window.suppressed and window.template:
                t = window.template
                # an acknowledged key's count is still told (nothing is lost), as information
                acked = f" while acknowledged by {window.acked_by}" if window.acked_by else ""
                alert = Alert(alert_id(t.alert_id, "closed", window.suppressed), t.rule,
                              "info" if acked else t.severity, t.source, "suppressed", t.venue, t.symbol,
                              now_event_ns, self._wall_ns(), math.nan,
                              f"{window.suppressed} more {t.kind} on {t.venue} {t.symbol} held back by rule "
                              f"{t.rule}{acked}", {"acknowledged_by": window.acked_by} if acked else {},
                              window.suppressed)
                raised += self._send(rule, alert)
        return raised

    def _rules(self, source: str) -> Iterable[Rule]:
        return (r for r in self.config.rules if r.enabled and r.source == source)

    def _rule(self, name: str) -> Rule | None:
        # None: a rule removed from the file since its window was saved
        return next((r for r in self.config.rules if r.name == name), None)

    @staticmethod
    def _instrument(rule: Rule, row: Mapping[str, Any]) -> bool:
        return not rule.instruments or row["symbol"] in rule.instruments

    def _raise(self, rule: Rule, row: Mapping[str, Any], kind: str, title: str, confidence: float,
               detail: dict[str, Any], detector: str) -> list[Alert]:
        ts = int(row["ts_event_ns"])
        identity = alert_id(rule.name, rule.source, row["venue"], row["symbol"], kind, ts, detector)
        if identity in self._alerts:
            return []  # the same source row again (a replay after recovery): already raised
        if self.quiet:
            self.quiet_suppressed += 1
            return []
        key = (rule.name, str(row["venue"]), str(row["symbol"]))
        window = self._windows.get(key)
        alert = Alert(identity, rule.name, rule.severity, rule.source, kind, str(row["venue"]),
                      str(row["symbol"]), ts, self._wall_ns(), confidence, title, detail)
        self._dirty = True
        # a late row older than the open window counts in it too: it must not reopen an old window;
        # an acknowledged key holds its follow-ups back until the acknowledgement's hold ends
        if window is not None and (rule.window_ns and ts < window.start_ns + rule.window_ns
                                   or ts < window.hold_until_ns):
            window.suppressed += 1
            return []
        held = window.suppressed if window is not None else 0
        if held:
            alert = Alert(**{**alert.__dict__, "suppressed": held})
        self._windows[key] = Window(ts, 0, alert)
        return self._send(rule, alert)

    def _send(self, rule: Rule, alert: Alert) -> list[Alert]:
        self._alerts[alert.alert_id] = alert
        while len(self._alerts) > REMEMBERED_ALERTS:
            old, _ = self._alerts.popitem(last=False)
            self._acks.pop(old, None)
        self.outbox.enqueue(alert, rule.channels)
        return [alert]

    def send_test(self) -> Alert:
        """Queue one test alert on every configured channel (``tapeflow alerts test``); the quiet
        switch does not hold it back: it checks the channels, not the rules."""
        now = self._wall_ns()
        alert = Alert(alert_id("test", now), "test", "info", "test", "test", "tapeflow", "test", now, now,
                      math.nan, "tapeflow alerts test: this channel works", {})
        self._alerts[alert.alert_id] = alert
        self.outbox.enqueue(alert, tuple(self.config.channels))
        return alert

    # ---- state
    def set_quiet(self, quiet: bool) -> None:
        """The maintenance switch: while on, matches are counted (``quiet_suppressed``), not sent."""
        self.quiet = quiet

    def acknowledge(self, alert_id: str, by: str, at_ns: int | None = None) -> Ack:
        """Mark an alert as seen by ``by`` (at wall time ``at_ns``, default now).

        The first acknowledgement stands. It holds back the follow-ups of the alert's rule and
        instrument: matches before the alert's ``ts_event_ns + rule.ack_hold_ns`` (venue time) are
        counted, not sent, and the count leaves as one ``info`` message when the hold ends.

        Raises:
            AlertError: no such alert (never raised, or forgotten past ``REMEMBERED_ALERTS``).
        """
        alert = self._alerts.get(alert_id)
        if alert is None:
            raise AlertError(f"no alert {alert_id!r} to acknowledge")
        if alert_id in self._acks:
            return self._acks[alert_id]
        ack = self._acks[alert_id] = Ack(by, self._wall_ns() if at_ns is None else at_ns)
        self._dirty = True
        rule = self._rule(alert.rule)
        if rule is not None and rule.ack_hold_ns:
            key = (alert.rule, alert.venue, alert.symbol)
            window = self._windows.setdefault(key, Window(alert.ts_event_ns, 0, alert))
            window.hold_until_ns = max(window.hold_until_ns, alert.ts_event_ns + rule.ack_hold_ns)
            window.acked_by = window.acked_by or by
        return ack

    def apply_acks(self, acks: Iterable[tuple[str, Ack]]) -> int:
        """Apply acknowledgements read from the API's file (:class:`tapeflow.alerts.acks.AckReader`);
        those of alerts this engine does not remember (another engine's, or forgotten) are skipped.

        Returns:
            how many were new here.
        """
        new = 0
        for acked, ack in acks:
            if acked in self._alerts and acked not in self._acks:
                self.acknowledge(acked, ack.by, ack.at_ns)
                new += 1
        return new

    def save_state(self) -> bool:
        """Save the throttle windows and acknowledgements beside the journal when they changed since
        the last save (no journal: nothing to do); returns whether it wrote.

        Raises:
            StorageError: the state file cannot be written.
        """
        if self._state is None or not self._dirty:
            return False
        acks = {k: (a.by, a.at_ns) for k, a in self._acks.items()}
        save_state(self._state, self._windows, acks)
        self._dirty = False
        return True

    def acknowledgement(self, alert_id: str) -> Ack | None:
        """The alert's acknowledgement, None while unacknowledged."""
        return self._acks.get(alert_id)

    def alerts(self) -> list[Alert]:
        """The alerts remembered, oldest first."""
        return list(self._alerts.values())

    # ---- delivery
    def deliver_pending(self) -> list[dict[str, Any]]:
        """Attempt every due delivery (see :class:`tapeflow.alerts.delivery.Outbox`); returns the
        ledger rows of these attempts."""
        return self.outbox.deliver_pending()

    @property
    def pending(self) -> int:
        """Deliveries still waiting (retries included)."""
        return self.outbox.pending

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return self.outbox.dead_letters

    @property
    def ledger(self) -> list[dict[str, Any]]:
        return self.outbox.ledger

    def close(self) -> None:
        """Stop the delivery threads, save the throttle state and close the journal (the queues stay
        in it for the next engine)."""
        self.save_state()
        self.outbox.close()
        if self.outbox.journal is not None:
            self.outbox.journal.close()

    def write_ledger(self, writer: Any) -> int:
        """Append the ledger rows not yet written through ``writer`` (a
        :class:`tapeflow.storage.writer.Writer`: lake and/or ClickHouse ``alert_delivery``) and flush.

        Returns:
            rows written.
        """
        rows = self.outbox.ledger[self._ledger_written:]
        if rows:
            writer.append(ALERT_DELIVERY, ledger_table(rows))
            writer.flush()
            self._ledger_written += len(rows)
        return len(rows)


def _require(row: Mapping[str, Any], columns: tuple[str, ...], record: str) -> None:
    missing = [c for c in columns if c not in row]
    if missing:
        raise AlertError(f"{record} row lacks columns {missing} (has {sorted(row)[:12]})")


def _evidence(text: object) -> dict[str, Any]:
    try:
        value = json.loads(str(text)) if text else {}
    except ValueError:
        return {"evidence": str(text)[:500]}
    return value if isinstance(value, dict) else {"evidence": value}
