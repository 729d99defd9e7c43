"""The alert: what one matched rule tells people, and its ids."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tapeflow.errors import TapeflowError


class AlertError(TapeflowError):
    """A request the alerts engine cannot serve (e.g. acknowledging an alert it never raised)."""


@dataclass(frozen=True)
class Alert:
    """One message to send.

    Attributes:
        alert_id: stable for one rule and one source row (a replayed signal gets the same id, so
            receivers de-duplicate by it and by the idempotency key).
        rule, severity, source: the rule that matched, its severity, and what it watches.
        kind: the signal kind or feed state (``suppressed`` for a window's closing count).
        venue, symbol: the instrument.
        ts_event_ns: venue time of the source row.
        created_ns: wall time the engine raised the alert (latency is measured from it).
        confidence: the signal's calibrated probability (NaN for other sources).
        title: one line for people.
        detail: the few numbers a person needs (the signal's evidence, the status detail).
        suppressed: matches of this rule and instrument held back since its previous message.
    """

    alert_id: str
    rule: str
    severity: str
    source: str
    kind: str
    venue: str
    symbol: str
    ts_event_ns: int
    created_ns: int
    confidence: float
    title: str
    detail: dict[str, Any] = field(default_factory=dict)
    suppressed: int = 0

    def payload(self) -> dict[str, Any]:
        """The JSON object every channel sends (NaN confidence as null: JSON has no NaN)."""
        out = asdict(self)
        if out["confidence"] != out["confidence"]:
            out["confidence"] = None
        return out

    def body(self) -> bytes:
        """The payload as compact JSON bytes (what the webhook signs)."""
        return json.dumps(self.payload(), sort_keys=True, separators=(",", ":")).encode()

    def text(self) -> str:
        """A short human message (Slack, SMS, email subject line)."""
        more = f" (+{self.suppressed} suppressed)" if self.suppressed else ""
        return f"[{self.severity.upper()}] {self.title}{more}"


def alert_id(*parts: object) -> str:
    """A short stable id from the identity of the rule and the source row."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


def idempotency_key(alert: Alert, channel: str) -> str:
    """One key per alert and channel, sent with every attempt (``Idempotency-Key``)."""
    return alert_id(alert.alert_id, channel)
