"""Alert rules, channels and delivery settings: one TOML file, validated like the thresholds file.

The file (``TAPEFLOW_ALERTS_CONFIG``; ``docs/alerts.md`` has a full example)::

    quiet = false                       # the maintenance switch: match, count, send nothing
    [delivery]                          # retries (every key optional)
    max_attempts = 8
    [allow]                             # destinations beyond public addresses
    loopback = false
    [channel.ops]                       # a named channel of one type
    type = "webhook"
    url = "https://alerts.example.com/tapeflow"
    secret = "env:TAPEFLOW_WEBHOOK_KEY"
    [rule.whales]                       # a rule on one source, sending to named channels
    source = "signal"
    kinds = ["whale"]
    min_confidence = 0.8
    severity = "critical"
    channels = ["ops"]

Anything unknown, mistyped, out of range or dangling (a rule naming no channel) is a
:class:`ConfigError` naming the file, the key and its line; secret values are never in a message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tapeflow.alerts.secrets import Secret, resolve
from tapeflow.schemas.records import SIGNAL_KINDS
from tapeflow.tomlconfig import KeyLocator, read_toml

SEVERITIES = ("info", "warning", "critical")
# What a rule can watch: the flow's signal and STATUS rows, failed Dagster asset checks ("quality")
# and failed Dagster runs ("run"), the last two fed by dagster_project/alerts.py.
SOURCES = ("signal", "status", "quality", "run")
CHECK_SEVERITIES = ("ERROR", "WARN")  # Dagster's AssetCheckSeverity values
STATUS_STATES = ("disconnected", "resyncing", "stale", "degraded", "gap", "skew", "checksum_mismatch",
                 "connected", "synced", "recovered")

# channel type -> key -> (kind, required); kinds: str, url (a literal or a secret reference),
# secret, int, bool, strs
CHANNEL_KEYS: dict[str, dict[str, tuple[str, bool]]] = {
    "webhook": {"url": ("url", True), "secret": ("secret", True), "timeout_ms": ("int", False),
                "ca_file": ("str", False)},
    "slack": {"url": ("url", True), "timeout_ms": ("int", False), "ca_file": ("str", False)},
    "sms": {"url": ("url", True), "account": ("secret", True), "token": ("secret", True),
            "from": ("str", True), "to": ("strs", True), "timeout_ms": ("int", False),
            "ca_file": ("str", False)},
    "file": {"path": ("str", True)},
    "email": {"host": ("str", True), "port": ("int", False), "starttls": ("bool", False),
              "username": ("secret", False), "password": ("secret", False), "from": ("str", True),
              "to": ("strs", True), "ca_file": ("str", False), "timeout_ms": ("int", False)},
}
DELIVERY_KEYS: dict[str, tuple[type, float, float]] = {
    "max_attempts": (int, 1, 1000),
    "backoff_base_ms": (int, 1, 3_600_000),
    "backoff_max_ms": (int, 1, 86_400_000),
    "jitter": (float, 0.0, 1.0),
    "timeout_ms": (int, 10, 600_000),
    "max_pending": (int, 1, 10_000_000),
}
ALLOW_KEYS = ("loopback", "private", "hosts")
RULE_KEYS = ("source", "severity", "channels", "kinds", "states", "min_confidence", "instruments",
             "window_ns", "enabled", "assets", "checks", "check_severities", "jobs", "ack_hold_ns")
# keys that only one source reads: source -> keys
SOURCE_KEYS = {"signal": ("kinds", "min_confidence"), "status": ("states",),
               "quality": ("assets", "checks", "check_severities"), "run": ("jobs",)}


@dataclass(frozen=True)
class Delivery:
    """Retry policy of every channel: ``max_attempts`` tries, waits of ``backoff_base_ms`` doubling
    up to ``backoff_max_ms``, each shortened by up to ``jitter`` of itself (randomly); at most
    ``max_pending`` alerts wait per channel (more are dead-lettered as ``overflow``)."""

    max_attempts: int = 8
    backoff_base_ms: int = 500
    backoff_max_ms: int = 60_000
    jitter: float = 0.5
    timeout_ms: int = 5_000
    max_pending: int = 10_000


@dataclass(frozen=True)
class Allow:
    """Destinations allowed besides public addresses (``hosts``: if given, the only host names)."""

    loopback: bool = False
    private: bool = False
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Channel:
    """One configured destination: ``values`` holds its type's keys (secrets as :class:`Secret`)."""

    name: str
    type: str
    values: Mapping[str, Any]

    def secrets(self) -> list[Secret]:
        """Every secret this channel holds (to scrub from anything a receiver echoes back)."""
        return [v for v in self.values.values() if isinstance(v, Secret)]


@dataclass(frozen=True)
class Rule:
    """When to alert, how loud, and where.

    Attributes:
        name: the rule's table name.
        source: what it watches (one of :data:`SOURCES`).
        severity: one of :data:`SEVERITIES`.
        channels: names of configured channels.
        kinds: signal kinds (empty: every kind); ``source = "signal"`` only.
        states: feed states (empty: the bad ones); ``source = "status"`` only.
        min_confidence: signals below it do not match.
        instruments: symbols (empty: every instrument; a check or run of no instrument then never
            matches).
        assets: asset keys (``a/b``) of failed checks (empty: every asset); ``quality`` only.
        checks: check names (empty: every check); ``quality`` only.
        check_severities: check severities that alert (default ``ERROR``: the blocking ones);
            ``quality`` only.
        jobs: job names of failed runs (empty: every job); ``run`` only.
        window_ns: one message per (rule, instrument) per window; 0 sends every match.
        enabled: a rule can be switched off without deleting it.
        ack_hold_ns: venue time after an acknowledged alert during which its rule and instrument's
            follow-ups are held back (counted, not sent); 0: an acknowledgement holds nothing back.
    """

    name: str
    source: str
    severity: str
    channels: tuple[str, ...]
    kinds: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    min_confidence: float = 0.0
    instruments: tuple[str, ...] = ()
    window_ns: int = 60_000_000_000
    enabled: bool = True
    assets: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    check_severities: tuple[str, ...] = ("ERROR",)
    jobs: tuple[str, ...] = ()
    ack_hold_ns: int = 3_600_000_000_000


@dataclass(frozen=True)
class AlertsConfig:
    """The validated contents of one alerts file."""

    path: Path
    rules: tuple[Rule, ...]
    channels: Mapping[str, Channel]
    delivery: Delivery = Delivery()
    allow: Allow = Allow()
    quiet: bool = False
    secrets: tuple[Secret, ...] = field(default=(), repr=False)


def load(path: Path, env: Mapping[str, str] | None = None) -> AlertsConfig:
    """Read and validate an alerts file; secrets are read from ``env`` (default the process's).

    Raises:
        ConfigError: unreadable, not TOML, or an unknown key, wrong type, out-of-range value,
            unset secret or dangling channel name; the message names the file, key and line.
    """
    path = Path(path)
    text, doc = read_toml(path, "alerts file")
    return _Validator(path, text, env).document(doc)


class _Validator(KeyLocator):
    def __init__(self, path: Path, text: str, env: Mapping[str, str] | None) -> None:
        super().__init__(path, text)
        self.env = env

    def document(self, doc: dict[str, Any]) -> AlertsConfig:
        unknown = sorted(set(doc) - {"quiet", "delivery", "allow", "channel", "rule"})
        if unknown:
            raise self.fail(unknown[0], "unknown key (the file takes quiet, [delivery], [allow], "
                            "[channel.NAME], [rule.NAME])")
        quiet = self.boolean("quiet", doc.get("quiet", False))
        delivery = Delivery(**self.delivery(self.table("delivery", doc.get("delivery", {}))))
        allow_doc = self.table("allow", doc.get("allow", {}))
        for key in sorted(set(allow_doc) - set(ALLOW_KEYS)):
            raise self.fail(f"allow.{key}", f"unknown key (known: {', '.join(ALLOW_KEYS)})")
        allow = Allow(self.boolean("allow.loopback", allow_doc.get("loopback", False)),
                      self.boolean("allow.private", allow_doc.get("private", False)),
                      self.strings("allow.hosts", allow_doc.get("hosts", [])))
        channels = {name: self.channel(name, body)
                    for name, body in self.table("channel", doc.get("channel", {})).items()}
        rules_doc = self.table("rule", doc.get("rule", {}))
        if not rules_doc:
            raise self.fail("rule", "at least one [rule.NAME] table is required")
        rules = tuple(self.rule(name, body, channels) for name, body in rules_doc.items())
        secrets = tuple(s for c in channels.values() for s in c.secrets())
        return AlertsConfig(self.path, rules, channels, delivery, allow, quiet, secrets)

    def table(self, where: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise self.fail(where, "must be a table")
        return body

    def boolean(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"must be true or false, got {value!r}")
        return value

    def strings(self, where: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(where, "must be a list of non-empty strings")
        return tuple(value)

    def number(self, where: str, value: Any, kind: type, low: float, high: float) -> Any:
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.fail(where, f"must be an integer, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"must be a number, got {value!r}")
        if not math.isfinite(value) or not low <= value <= high:
            raise self.fail(where, f"{value!r} is out of range [{low}, {high}]")
        return kind(value)

    def delivery(self, body: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in body.items():
            if key not in DELIVERY_KEYS:
                raise self.fail(f"delivery.{key}", f"unknown key (known: {', '.join(DELIVERY_KEYS)})")
            out[key] = self.number(f"delivery.{key}", value, *DELIVERY_KEYS[key])
        if out.get("backoff_max_ms", 60_000) < out.get("backoff_base_ms", 500):
            raise self.fail("delivery.backoff_max_ms", "must be >= backoff_base_ms")
        return out

    def channel(self, name: str, body: Any) -> Channel:
        where = f'channel."{name}"'
        body = self.table(where, body)
        kind = body.get("type")
        if kind not in CHANNEL_KEYS:
            raise self.fail(f"{where}.type", f"must be one of {', '.join(CHANNEL_KEYS)}, got {kind!r}")
        spec = CHANNEL_KEYS[kind]
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key == "type":
                continue
            dotted = f"{where}.{key}"
            if key not in spec:
                raise self.fail(dotted, f"unknown key for a {kind} channel (known: {', '.join(spec)})")
            values[key] = self.channel_value(dotted, spec[key][0], value)
        missing = [k for k, (_, required) in spec.items() if required and k not in values]
        if missing:
            raise self.fail(f"{where}.type", f"a {kind} channel needs {', '.join(missing)}")
        return Channel(name, kind, values)

    def channel_value(self, dotted: str, kind: str, value: Any) -> Any:
        if kind == "secret" or (kind == "url" and isinstance(value, str)
                                and value.startswith(("env:", "file:"))):
            # a Slack URL or a gateway URL with a token in it is a credential: it may come from env
            secret = resolve(value, dotted, self.env)
            if kind == "url" and not secret.reveal().startswith(("http://", "https://")):
                raise self.fail(dotted, f"the value of {secret.source} is not an http(s) URL")
            return secret
        if kind == "int":
            return self.number(dotted, value, int, 10, 600_000)
        if kind == "bool":
            return self.boolean(dotted, value)
        if kind == "strs":
            return self.strings(dotted, value)
        if not isinstance(value, str) or not value:
            raise self.fail(dotted, f"must be a non-empty string, got {type(value).__name__}")
        if kind == "url" and not value.startswith(("http://", "https://")):
            raise self.fail(dotted, "must be an http(s) URL, 'env:VARIABLE' or 'file:PATH'")
        return value

    def rule(self, name: str, body: Any, channels: Mapping[str, Channel]) -> Rule:
        where = f'rule."{name}"'
        body = self.table(where, body)
        for key in body:
            if key not in RULE_KEYS:
                raise self.fail(f"{where}.{key}", f"unknown key (known: {', '.join(RULE_KEYS)})")
        source = body.get("source", "signal")
        if source not in SOURCES:
            raise self.fail(f"{where}.source", f"must be one of {', '.join(SOURCES)}, got {source!r}")
        severity = body.get("severity", "warning")
        if severity not in SEVERITIES:
            raise self.fail(f"{where}.severity", f"must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        names = self.strings(f"{where}.channels", body.get("channels", []))
        if not names:
            raise self.fail(f"{where}.channels", "name at least one channel")
        for channel in names:
            if channel not in channels:
                raise self.fail(f"{where}.channels", f"no channel {channel!r} (have: {', '.join(channels)})")
        kinds = self.choices(f"{where}.kinds", body.get("kinds", []), SIGNAL_KINDS)
        states = self.choices(f"{where}.states", body.get("states", []), STATUS_STATES)
        if source != "signal" and (kinds or "min_confidence" in body):
            raise self.fail(f"{where}.source", "kinds and min_confidence apply to signal rules only")
        if source != "status" and states:
            raise self.fail(f"{where}.states", "states apply to status rules only")
        for other, keys in SOURCE_KEYS.items():
            for key in keys:
                if other != source and other not in ("signal", "status") and key in body:
                    raise self.fail(f"{where}.{key}", f"{key} applies to {other} rules only")
        severities = self.choices(f"{where}.check_severities", body.get("check_severities", ["ERROR"]),
                                  CHECK_SEVERITIES)
        if not severities:
            raise self.fail(f"{where}.check_severities", "name at least one severity")
        return Rule(
            name=name, source=source, severity=severity, channels=names, kinds=kinds, states=states,
            min_confidence=self.number(f"{where}.min_confidence", body.get("min_confidence", 0.0),
                                       float, 0, 1),
            instruments=self.strings(f"{where}.instruments", body.get("instruments", [])),
            window_ns=self.number(f"{where}.window_ns", body.get("window_ns", 60_000_000_000), int, 0,
                                  86_400_000_000_000),
            enabled=self.boolean(f"{where}.enabled", body.get("enabled", True)),
            assets=self.strings(f"{where}.assets", body.get("assets", [])),
            checks=self.strings(f"{where}.checks", body.get("checks", [])),
            check_severities=severities,
            jobs=self.strings(f"{where}.jobs", body.get("jobs", [])),
            ack_hold_ns=self.number(f"{where}.ack_hold_ns", body.get("ack_hold_ns", 3_600_000_000_000), int,
                                    0, 7 * 86_400_000_000_000),
        )

    def choices(self, where: str, value: Any, known: tuple[str, ...]) -> tuple[str, ...]:
        values = self.strings(where, value)
        for v in values:
            if v not in known:
                raise self.fail(where, f"{v!r} is not one of {', '.join(known)}")
        return values
