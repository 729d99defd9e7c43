"""Alerts: rules on signals and feed status, throttled, delivered with retries to webhooks, Slack,
SMS gateways, email and files, every attempt in a ledger (``docs/alerts.md``).

``config`` (the rules file, validated), ``engine`` (:class:`~tapeflow.alerts.engine.AlertEngine`:
match, throttle, queue), ``delivery`` (ordered outboxes, retries, ledger rows, dead letters),
``channels`` (the formats), ``transport`` (the allowlisted HTTP POST), ``secrets``. Imports nothing
here, so ``tapeflow --help`` does not load the engine.
"""
