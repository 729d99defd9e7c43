"""Alerts: rules on signals and feed status, throttled, delivered with retries to webhooks, Slack,
SMS gateways, email and files, every attempt in a ledger (``docs/alerts.md``).

``config`` (the rules file, validated), ``engine`` (:class:`~tapeflow.alerts.engine.AlertEngine`:
match, throttle, queue), ``delivery`` (ordered outboxes, retries, ledger rows, dead letters),
``channels`` (the formats), ``transport`` (the allowlisted HTTP POST), ``secrets``, ``journal``
(queued deliveries and ledger rows across restarts), ``state`` (throttle windows across restarts),
``acks`` (the acknowledgements file ``tapeflow serve`` writes), ``ledger`` (the ledger journals
into the lake and ClickHouse), ``stage`` (the live flow's step). Imports nothing
here, so ``tapeflow --help`` does not load the engine.
"""
