"""The alerts file: validated with messages naming file, key and line; secrets from env or files only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.alerts.config import load
from tapeflow.errors import ConfigError, TapeflowError

GOOD = """\
quiet = false
[delivery]
max_attempts = 5
backoff_base_ms = 10
[allow]
loopback = true
[channel.ops]
type = "webhook"
url = "https://alerts.example.com/tapeflow"
secret = "env:HOOK_KEY"
[channel.log]
type = "file"
path = "alerts.jsonl"
[rule.whales]
source = "signal"
kinds = ["whale", "institutional"]
min_confidence = 0.8
instruments = ["BTCUSDT"]
severity = "critical"
channels = ["ops", "log"]
window_ns = 60_000_000_000
[rule.feed]
source = "status"
states = ["gap", "stale"]
channels = ["log"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    return path


def test_a_good_file_gives_rules_channels_and_policy(tmp_path: Path) -> None:
    config = load(_write(tmp_path, GOOD), env={"HOOK_KEY": "k3y"})
    whales, feed = config.rules
    assert (whales.kinds, whales.min_confidence, whales.instruments, whales.severity) == (
        ("whale", "institutional"), 0.8, ("BTCUSDT",), "critical")
    assert whales.channels == ("ops", "log") and feed.states == ("gap", "stale")
    assert feed.severity == "warning"
    assert config.delivery.max_attempts == 5 and config.delivery.backoff_base_ms == 10
    assert config.delivery.backoff_max_ms == 60_000  # the default where the file says nothing
    assert config.allow.loopback and not config.allow.private
    assert config.channels["ops"].values["secret"].reveal() == "k3y"
    assert "k3y" not in repr(config)  # a secret prints as a mask, config included


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ('min_confidence = 0.8', 'min_confidence = 1.5', 'rule."whales".min_confidence', "out of range"),
    ('kinds = ["whale", "institutional"]', 'kinds = ["walrus"]', 'rule."whales".kinds', "'walrus'"),
    ('severity = "critical"', 'severity = "loud"', 'rule."whales".severity', "info, warning, critical"),
    ('channels = ["ops", "log"]', 'channels = ["pager"]', 'rule."whales".channels', "no channel 'pager'"),
    ('max_attempts = 5', 'max_attempts = "five"', "delivery.max_attempts", "integer"),
    ('max_attempts = 5', 'max_tries = 5', "delivery.max_tries", "unknown key"),
    ('type = "file"', 'type = "pigeon"', 'channel."log".type', "webhook, slack"),
    ('path = "alerts.jsonl"', 'paht = "alerts.jsonl"', 'channel."log".paht', "unknown key"),
    ('url = "https://alerts.example.com/tapeflow"', 'url = "ftp://x"', 'channel."ops".url', "http(s) URL"),
    ('states = ["gap", "stale"]', 'states = ["gap"]\nkinds = ["whale"]', 'rule."feed".source',
     "signal rules only"),
    ('source = "status"', 'source = "weather"', 'rule."feed".source', "signal, status, quality, run"),
    ('states = ["gap", "stale"]', 'jobs = ["tapeflow_days"]', 'rule."feed".jobs', "run rules only"),
    ('states = ["gap", "stale"]', 'checks = ["rows"]', 'rule."feed".checks', "quality rules only"),
    ('min_confidence = 0.8', 'min_confidence = 0.8\nack_hold_ns = -1', 'rule."whales".ack_hold_ns',
     "out of range"),
])
def test_bad_values_name_file_key_and_line(tmp_path: Path, old: str, new: str, key: str, words: str) -> None:
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load(path, env={"HOOK_KEY": "k3y"})
    message = str(caught.value)
    assert message.startswith(f"{path}:") and key in message and words in message, message
    line = message.split(":")[1]
    assert line.isdigit(), message  # every one of these keys is found on its line


def test_secrets_come_from_env_or_files_never_literals(tmp_path: Path) -> None:
    literal = GOOD.replace('secret = "env:HOOK_KEY"', 'secret = "hunter2hunter2"')
    with pytest.raises(ConfigError, match="'env:VARIABLE' or 'file:PATH'") as caught:
        load(_write(tmp_path, literal), env={})
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="HOOK_KEY is not set"):
        load(_write(tmp_path, GOOD), env={})
    key_file = tmp_path / "hook.key"
    key_file.write_text("from-a-file\n")
    config = load(_write(tmp_path, GOOD.replace("env:HOOK_KEY", f"file:{key_file}")), env={})
    assert config.channels["ops"].values["secret"].reveal() == "from-a-file"
    with pytest.raises(ConfigError, match="cannot read secret file"):
        load(_write(tmp_path, GOOD.replace("env:HOOK_KEY", f"file:{tmp_path}/absent")), env={})


def test_unreadable_and_non_toml_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(_write(tmp_path, "[rule.x\n"))
    with pytest.raises(ConfigError, match="at least one"):
        load(_write(tmp_path, "quiet = true\n"))
    assert issubclass(ConfigError, TapeflowError)


def test_quality_and_run_rules_take_their_own_match_keys(tmp_path: Path) -> None:
    text = GOOD + """\
[rule.checks]
source = "quality"
assets = ["signals"]
checks = ["signals_quality"]
check_severities = ["ERROR", "WARN"]
instruments = ["BTCUSDT"]
channels = ["log"]
[rule.runs]
source = "run"
jobs = ["tapeflow_days"]
severity = "critical"
channels = ["log"]
"""
    config = load(_write(tmp_path, text), env={"HOOK_KEY": "k3y"})
    checks, runs = config.rules[2:]
    assert (checks.source, checks.assets, checks.checks, checks.check_severities) == (
        "quality", ("signals",), ("signals_quality",), ("ERROR", "WARN"))
    assert (runs.source, runs.jobs, runs.severity, runs.check_severities) == (
        "run", ("tapeflow_days",), "critical", ("ERROR",))
    for bad, key, words in [('check_severities = ["ERROR", "WARN"]', "check_severities", "'LOUD'"),
                            ('check_severities = ["ERROR", "WARN"]', "check_severities", "at least one"),
                            ('jobs = ["tapeflow_days"]', "jobs", "non-empty strings")]:
        value = {"'LOUD'": 'check_severities = ["LOUD"]', "at least one": "check_severities = []",
                 "non-empty strings": 'jobs = [""]'}[words]
        path = _write(tmp_path, text.replace(bad, value))
        with pytest.raises(ConfigError, match=words) as caught:
            load(path, env={"HOOK_KEY": "k3y"})
        assert key in str(caught.value) and str(caught.value).split(":")[1].isdigit(), caught.value
