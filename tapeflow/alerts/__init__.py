"""Alerts: rules on signals and feed status, throttled, delivered with retries to webhooks, Slack,
SMS gateways, email and files, every attempt in a ledger (``docs/alerts.md``)."""

from tapeflow.alerts.alert import Alert, AlertError
from tapeflow.alerts.config import AlertsConfig, load
from tapeflow.alerts.engine import AlertEngine

__all__ = ["Alert", "AlertEngine", "AlertError", "AlertsConfig", "load"]
