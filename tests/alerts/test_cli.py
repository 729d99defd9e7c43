"""``tapeflow alerts check`` and ``tapeflow alerts test`` against a real receiver; the documented example."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeflow.alerts.config import load
from tapeflow.cli import main
from tapeflow.errors import ConfigError
from tapeflow.schemas.alerts import ALERT_DELIVERY
from tapeflow.storage import lake
from tests.alerts.receivers import HttpReceiver, free_port

EXAMPLE = Path(__file__).parents[2] / "docs" / "alerts.example.toml"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver(b"cli-key").start()
    yield r
    r.stop()


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(f"""\
[delivery]
max_attempts = 2
backoff_base_ms = 5
[allow]
loopback = true
[channel.hook]
type = "webhook"
url = "{url}"
secret = "env:CLI_HOOK_KEY"
[channel.log]
type = "file"
path = "{tmp_path / 'alerts.jsonl'}"
[rule.all]
kinds = ["whale"]
channels = ["hook", "log"]
""")
    return path


def test_alerts_test_sends_through_every_channel(tmp_path: Path, receiver: HttpReceiver,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLI_HOOK_KEY", "cli-key")
    path = _config(tmp_path, receiver.url("webhook"))
    assert main(["alerts", "check", "--config", str(path)]) == 0
    assert "rule all" in capsys.readouterr().out
    assert main(["alerts", "test", "--config", str(path), "--ledger", str(tmp_path / "lake")]) == 0
    out = capsys.readouterr().out
    assert "hook" in out and "log" in out and out.count("delivered") == 2, out
    assert len(receiver.accepted) == 1 and receiver.rejected == [] and (tmp_path / "alerts.jsonl").exists()
    assert lake.read(ALERT_DELIVERY, tmp_path / "lake").num_rows == 2


def test_alerts_test_reports_a_failing_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLI_HOOK_KEY", "cli-key")
    path = _config(tmp_path, f"http://127.0.0.1:{free_port()}/webhook")
    assert main(["alerts", "test", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "dead_letter  connection_refused after 2 attempt(s)" in out, out
    monkeypatch.delenv("TAPEFLOW_ALERTS_CONFIG", raising=False)
    assert main(["alerts", "test"]) != 0
    assert "TAPEFLOW_ALERTS_CONFIG" in capsys.readouterr().err


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("x")
    text = EXAMPLE.read_text().replace("/run/secrets/twilio_token", str(secret))
    text = text.replace("/run/secrets/smtp_password", str(secret))
    (tmp_path / "a.toml").write_text(text)
    env = {k: "x" for k in ("TAPEFLOW_WEBHOOK_KEY", "TWILIO_ACCOUNT_SID", "TAPEFLOW_SMTP_USER")}
    with pytest.raises(ConfigError, match="env:TAPEFLOW_SLACK_URL is not an http"):
        load(tmp_path / "a.toml", env={**env, "TAPEFLOW_SLACK_URL": "x"})
    config = load(tmp_path / "a.toml", env={**env, "TAPEFLOW_SLACK_URL": "https://hooks.slack.com/services/T/B/x"})
    assert [r.name for r in config.rules] == ["whales", "manipulation", "feed", "checks", "runs"]
    assert set(config.channels) == {"ops", "slack", "pager", "mail", "log"}
