"""The alert delivery ledger: one row per delivery attempt outcome (``docs/alerts.md``).

Declared like every other record (one declaration; the lake dataset ``alert_delivery`` and the
ClickHouse table of the same name are derived from it), kept apart from the feed's records as the
batch runtime's are, so the feed's recovery and demo listings do not grow a dataset they never write.
"""

from __future__ import annotations

from tapeflow.schemas.core import Field, RecordType, common

# Closed sets: an attempt ends in one of OUTCOMES; a failed one names one of REASONS.
DELIVERY_OUTCOMES = ("delivered", "retry", "dead_letter")
DELIVERY_REASONS = (
    "", "http_4xx", "http_5xx", "timeout", "connection_refused", "connection_reset",
    "blocked_destination", "smtp_error", "io_error", "bad_response", "overflow",
)

ALERT_DELIVERY = RecordType(
    "alert_delivery",
    common(
        Field("alert_id", "lstr", "the alert's id (stable for one rule and one source row)"),
        Field("rule", "lstr", "the rule that raised the alert"),
        Field("severity", "lstr", "info, warning or critical"),
        Field("channel", "lstr", "the configured channel's name (never its URL or credentials)"),
        Field("idempotency_key", "str", "the key sent with every attempt of this alert on this channel"),
        Field("attempt", "i32", "1 for the first attempt, counting up"),
        Field("outcome", "lstr", "delivered, retry (will be tried again) or dead_letter (given up)"),
        Field("reason", "lstr", "why an attempt failed: one of DELIVERY_REASONS ('' when delivered)"),
        Field("status_code", "i32", "the receiver's HTTP or SMTP reply code (0 when none came)"),
        Field("latency_ns", "i64", "from the alert's creation to this outcome, ns"),
    ),
    order_by=("venue", "symbol", "ts_event_ns", "alert_id", "channel", "attempt"),
    doc="One delivery attempt of an alert on a channel; ts_event_ns is the outcome's wall time, "
        "ts_recv_ns the alert's creation time.",
)

ALERT_RECORDS: dict[str, RecordType] = {r.name: r for r in (ALERT_DELIVERY,)}
