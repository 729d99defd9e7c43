"""Email over a real SMTP server (STARTTLS + AUTH), the ledger through the one Writer, and the
secrets canary: no credential reaches a log line, a ledger row, a dead letter or an error."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from tapeflow.alerts.config import load
from tapeflow.alerts.engine import AlertEngine
from tapeflow.errors import ConfigError
from tapeflow.schemas.alerts import ALERT_DELIVERY
from tapeflow.storage import lake
from tapeflow.storage.writer import Writer
from tests.alerts.receivers import HttpReceiver, SmtpReceiver, free_port, wait_until

SECOND_NS = 1_000_000_000
CANARY = "CANARY7f3e"


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpReceiver]:
    server = SmtpReceiver(tmp_path, "alerts", f"pw-{CANARY}").start()
    yield server
    server.stop()


def _signal(i: int) -> dict[str, Any]:
    return {"ts_event_ns": i * SECOND_NS, "ts_recv_ns": 0, "venue": "binance", "symbol": "BTCUSDT",
            "kind": "whale", "confidence": 0.9, "detector": "whale/1", "evidence": "{}"}


def _config(tmp_path: Path, channels: str, names: str, env: dict[str, str], max_attempts: int = 3) -> Any:
    path = tmp_path / "alerts.toml"
    path.write_text(f"""\
[delivery]
max_attempts = {max_attempts}
backoff_base_ms = 5
backoff_max_ms = 20
timeout_ms = 10000
[allow]
loopback = true
{channels}
[rule.all]
channels = [{names}]
window_ns = 0
""")
    return load(path, env=env)


def _email_channel(smtp: SmtpReceiver, port: int | None = None) -> str:
    return f"""[channel.mail]
type = "email"
host = "127.0.0.1"
port = {port or smtp.port}
username = "env:SMTP_USER"
password = "env:SMTP_PASSWORD"
from = "tapeflow@example.com"
to = ["desk@example.com", "ops@example.com"]
ca_file = "{smtp.cert}"
"""


def _drain(engine: AlertEngine) -> None:
    wait_until(lambda: engine.pending == 0, engine.deliver_pending)


def test_email_over_starttls_with_auth(tmp_path: Path, smtp: SmtpReceiver) -> None:
    env = {"SMTP_USER": "alerts", "SMTP_PASSWORD": f"pw-{CANARY}"}
    engine = AlertEngine(_config(tmp_path, _email_channel(smtp), '"mail"', env))
    (alert,) = engine.submit(_signal(1))
    _drain(engine)
    (envelope,) = smtp.messages  # accepted only after STARTTLS and a good login (auth_require_tls)
    assert envelope.rcpt_tos == ["desk@example.com", "ops@example.com"]
    message = message_from_bytes(envelope.content)
    assert message["Subject"].startswith("[WARNING] whale")
    assert message["X-Tapeflow-Alert-Id"] == alert.alert_id
    assert json.loads(message.get_payload())["alert_id"] == alert.alert_id
    assert [(r["outcome"], r["status_code"]) for r in engine.ledger] == [("delivered", 250)]


def test_email_bad_password_dead_letters_and_server_down_retries(tmp_path: Path, smtp: SmtpReceiver) -> None:
    env = {"SMTP_USER": "alerts", "SMTP_PASSWORD": "wrong"}
    engine = AlertEngine(_config(tmp_path, _email_channel(smtp), '"mail"', env))
    engine.submit(_signal(1))
    _drain(engine)
    assert [(r["outcome"], r["reason"], r["status_code"]) for r in engine.ledger] == [
        ("dead_letter", "smtp_error", 535)] and smtp.messages == []
    down = AlertEngine(_config(tmp_path, _email_channel(smtp, free_port()), '"mail"', env, max_attempts=2))
    down.submit(_signal(1))
    _drain(down)
    assert [(r["outcome"], r["reason"]) for r in down.ledger] == [
        ("retry", "connection_refused"), ("dead_letter", "connection_refused")]


def test_ledger_goes_through_the_one_writer_to_lake_and_warehouse(tmp_path: Path, dsn: str) -> None:
    config = _config(tmp_path, f'[channel.log]\ntype = "file"\npath = "{tmp_path}/a.jsonl"\n', '"log"', {})
    engine = AlertEngine(config)
    for i in range(3):
        engine.submit(_signal(i))
    _drain(engine)
    with Writer(tmp_path / "lake", dsn) as writer:
        assert engine.write_ledger(writer) == 3
        assert engine.write_ledger(writer) == 0  # rows are written once
        stored = writer.warehouse.fetch(ALERT_DELIVERY)
    table = lake.read(ALERT_DELIVERY, tmp_path / "lake")
    assert sorted(table["alert_id"].to_pylist()) == sorted(a.alert_id for a in engine.alerts())
    assert table["outcome"].to_pylist() == ["delivered"] * 3 and stored.num_rows == 3


def test_secrets_canary_never_leaks(tmp_path: Path, smtp: SmtpReceiver, caplog: pytest.LogCaptureFixture,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = HttpReceiver(f"hook-{CANARY}".encode(), f"AC-{CANARY}", f"tok-{CANARY}").start()
    env = {"HOOK_KEY": f"hook-{CANARY}", "SLACK_URL": receiver.url(f"slack?token=slack-{CANARY}"),
           "SMS_ACCOUNT": f"AC-{CANARY}", "SMS_TOKEN": f"tok-{CANARY}",
           "SMTP_USER": "alerts", "SMTP_PASSWORD": f"pw-{CANARY}"}
    channels = f"""[channel.hook]
type = "webhook"
url = "{receiver.url('webhook')}"
secret = "env:HOOK_KEY"
[channel.slack]
type = "slack"
url = "env:SLACK_URL"
[channel.sms]
type = "sms"
url = "{receiver.url('sms')}"
account = "env:SMS_ACCOUNT"
token = "env:SMS_TOKEN"
from = "+1555"
to = ["+1556"]
""" + _email_channel(smtp)
    config = _config(tmp_path, channels, '"hook", "slack", "sms", "mail"', env, max_attempts=2)
    engine = AlertEngine(config)
    try:
        receiver.faults.extend(["500"] * 8)  # every HTTP channel fails, is retried, dead-letters
        engine.submit(_signal(1))
        _drain(engine)
        engine.submit(_signal(2))
        _drain(engine)  # and now they succeed: the secrets were really in use
    finally:
        receiver.stop()
    assert len(receiver.accepted) == 3 and receiver.rejected == []
    assert any(CANARY in r["path"] for r in receiver.accepted)  # the secrets were the ones sent
    assert sum(r["outcome"] == "dead_letter" for r in engine.ledger) == 3 and len(smtp.messages) == 2
    errors = []
    for bad in ({**env, "SMTP_PASSWORD": ""}, {k: v for k, v in env.items() if k != "SLACK_URL"}):
        with pytest.raises(ConfigError) as caught:
            load(config.path, env=bad)
        errors.append(str(caught.value))
    with Writer(tmp_path / "lake") as writer:
        engine.write_ledger(writer)
    stored = lake.read(ALERT_DELIVERY, tmp_path / "lake").to_pylist()
    # the receivers' own logs (aiohttp's access log prints the Slack URL) are theirs, not ours
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith(("aiohttp", "mail.log"))]
    seen = "\n".join([*ours, *capsys.readouterr(), json.dumps(engine.ledger), json.dumps(stored),
                      repr(engine.dead_letters), repr(engine.alerts()), repr(config), *errors,
                      *(r["body"].decode() for r in receiver.seen if r["kind"] == "webhook")])
    assert len(stored) == len(engine.ledger) >= 10
    assert CANARY not in seen
