"""Delivery to a real local HTTP receiver: signatures, formats, and faults (down, 500, slow, reset)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tapeflow.alerts.channels import sign, verify
from tapeflow.alerts.config import Allow, load
from tapeflow.alerts.engine import AlertEngine
from tapeflow.alerts.transport import refusal
from tests.alerts.receivers import HttpReceiver, free_port, wait_until

KEY = "webhook-test-key"
SECOND_NS = 1_000_000_000


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver(KEY.encode(), "AC123", "sms-token").start()
    yield r
    r.stop()


def _engine(tmp_path: Path, url: str, *, channel: str = "webhook", loopback: bool = True,
            max_attempts: int = 1000, timeout_ms: int = 5000, window_ns: int = 0) -> AlertEngine:
    extra = {"webhook": 'secret = "env:HOOK_KEY"',
             "sms": 'account = "env:SMS_ACCOUNT"\ntoken = "env:SMS_TOKEN"\nfrom = "+15550001"\n'
                    'to = ["+15550002", "+15550003"]',
             "slack": ""}[channel]
    path = tmp_path / "alerts.toml"
    path.write_text(f"""\
[delivery]
max_attempts = {max_attempts}
backoff_base_ms = 5
backoff_max_ms = 40
timeout_ms = {timeout_ms}
[allow]
loopback = {str(loopback).lower()}
[channel.out]
type = "{channel}"
url = "{url}"
{extra}
[rule.all]
channels = ["out"]
window_ns = {window_ns}
""")
    env = {"HOOK_KEY": KEY, "SMS_ACCOUNT": "AC123", "SMS_TOKEN": "sms-token"}
    return AlertEngine(load(path, env=env), seed=7)


def _signal(i: int) -> dict[str, Any]:
    return {"ts_event_ns": i * SECOND_NS, "ts_recv_ns": 0, "venue": "binance", "symbol": "BTCUSDT",
            "kind": "whale", "confidence": 0.9, "detector": "whale/1", "evidence": "{}"}


def _drain(engine: AlertEngine) -> None:
    wait_until(lambda: engine.pending == 0, engine.deliver_pending)


def _outcomes(engine: AlertEngine) -> list[tuple[str, str]]:
    return [(r["outcome"], r["reason"]) for r in engine.ledger]


def test_webhook_is_signed_keyed_and_verifiable(tmp_path: Path, receiver: HttpReceiver) -> None:
    engine = _engine(tmp_path, receiver.url("webhook"))
    (alert,) = engine.submit(_signal(1))
    _drain(engine)
    (got,) = receiver.accepted
    assert receiver.rejected == []  # the receiver's own HMAC check passed
    assert json.loads(got["body"])["alert_id"] == alert.alert_id
    headers = got["headers"]
    assert headers["X-Tapeflow-Alert-Id"] == alert.alert_id and len(headers["Idempotency-Key"]) == 24
    assert verify(KEY.encode(), headers["X-Tapeflow-Timestamp"], got["body"], headers["X-Tapeflow-Signature"])
    old = str(int(headers["X-Tapeflow-Timestamp"]) - 301)
    assert not verify(KEY.encode(), old, got["body"], sign(KEY.encode(), old, got["body"]))  # a replay
    stamp, signature = headers["X-Tapeflow-Timestamp"], headers["X-Tapeflow-Signature"]
    assert not verify(b"other", stamp, got["body"], signature)
    (row,) = engine.ledger
    assert (row["outcome"], row["attempt"], row["status_code"]) == ("delivered", 1, 200)
    assert row["channel"] == "out"
    assert row["latency_ns"] >= 0 and row["idempotency_key"] == headers["Idempotency-Key"]


def test_receiver_down_then_back_gets_every_alert_once_in_order(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet: the receiver is down
    engine = _engine(tmp_path, f"http://127.0.0.1:{port}/webhook")
    ids = [a.alert_id for i in range(6) for a in engine.submit(_signal(i))]
    wait_until(lambda: sum(r["reason"] == "connection_refused" for r in engine.ledger) >= 3,
               engine.deliver_pending)
    assert {r["alert_id"] for r in engine.ledger} == {ids[0]}  # the head blocks: nothing overtakes it
    receiver = HttpReceiver(KEY.encode()).start(port)
    try:
        _drain(engine)
        assert [json.loads(r["body"])["alert_id"] for r in receiver.accepted] == ids
    finally:
        receiver.stop()
    delivered = [r["alert_id"] for r in engine.ledger if r["outcome"] == "delivered"]
    assert delivered == ids and engine.dead_letters == []


@pytest.mark.parametrize(("fault", "reason", "code"), [
    ("500", "http_5xx", 500), ("reset", "connection_reset", 0), ("slow", "timeout", 0),
    ("429", "http_4xx", 429),
])
def test_transient_faults_are_retried_with_the_same_idempotency_key(
        tmp_path: Path, receiver: HttpReceiver, fault: str, reason: str, code: int) -> None:
    receiver.faults.extend([fault, fault])
    receiver.slow_s = 30.0
    # the slow answer comes long after the timeout; the others well within it, even on a loaded machine
    engine = _engine(tmp_path, receiver.url("webhook"), timeout_ms=1000 if fault == "slow" else 10_000)
    engine.submit(_signal(1))
    engine.submit(_signal(2))
    _drain(engine)
    assert _outcomes(engine) == [("retry", reason), ("retry", reason), ("delivered", ""), ("delivered", "")]
    assert [r["status_code"] for r in engine.ledger[:2]] == [code, code]
    assert [r["attempt"] for r in engine.ledger] == [1, 2, 3, 1]
    first_keys = {s["headers"]["Idempotency-Key"] for s in receiver.seen[:3]}
    assert len(first_keys) == 1 and len(receiver.accepted) == 2


def test_permanent_failures_and_exhausted_retries_dead_letter_and_the_queue_goes_on(
        tmp_path: Path, receiver: HttpReceiver) -> None:
    receiver.faults.extend(["400", "500", "500"])
    engine = _engine(tmp_path, receiver.url("webhook"), max_attempts=2)
    ids = [a.alert_id for i in range(3) for a in engine.submit(_signal(i))]
    _drain(engine)
    assert _outcomes(engine) == [("dead_letter", "http_4xx"), ("retry", "http_5xx"),
                                 ("dead_letter", "http_5xx"), ("delivered", "")]
    assert [(d.alert.alert_id, d.attempts, d.reason) for d in engine.dead_letters] == [
        (ids[0], 1, "http_4xx"), (ids[1], 2, "http_5xx")]
    assert [json.loads(r["body"])["alert_id"] for r in receiver.accepted] == [ids[2]]


def test_destinations_outside_the_allowlist_are_never_contacted(tmp_path: Path,
                                                                receiver: HttpReceiver) -> None:
    engine = _engine(tmp_path, receiver.url("webhook"), loopback=False)
    engine.submit(_signal(1))
    _drain(engine)
    assert _outcomes(engine) == [("dead_letter", "blocked_destination")] and receiver.seen == []
    closed = Allow()
    for address, allowed in [("127.0.0.1", False), ("::1", False), ("169.254.169.254", False),
                             ("10.1.2.3", False), ("192.168.0.1", False), ("fd00::1", False),
                             ("fe80::1", False), ("0.0.0.0", False), ("8.8.8.8", True),
                             ("2606:4700::1111", True)]:
        assert (refusal(ipaddress.ip_address(address), closed) == "") is allowed, address
    assert refusal(ipaddress.ip_address("10.1.2.3"), Allow(private=True)) == ""
    assert refusal(ipaddress.ip_address("127.0.0.1"), Allow(loopback=True)) == ""


def test_allow_hosts_limits_host_names(tmp_path: Path) -> None:
    from tapeflow.alerts.transport import DeliveryFailure, check

    allow = Allow(loopback=True, hosts=("*.example.com", "127.0.0.1"))
    assert check("http://127.0.0.1:9/x", allow).address == "127.0.0.1"
    with pytest.raises(DeliveryFailure, match="allow.hosts"):
        check("http://localhost:9/x", allow)


def test_slack_format(tmp_path: Path, receiver: HttpReceiver) -> None:
    engine = _engine(tmp_path, receiver.url("slack"), channel="slack")
    (alert,) = engine.submit(_signal(1))
    _drain(engine)
    body = json.loads(receiver.accepted[0]["body"])
    assert body["text"].startswith("[WARNING] whale on binance BTCUSDT")
    assert body["blocks"][0]["type"] == "section" and alert.alert_id in body["blocks"][0]["text"]["text"]


def test_sms_gateway_form_post_one_per_recipient(tmp_path: Path, receiver: HttpReceiver) -> None:
    engine = _engine(tmp_path, receiver.url("sms"), channel="sms")
    engine.submit(_signal(1))
    _drain(engine)
    assert receiver.rejected == []  # Basic auth and form fields checked by the receiver
    forms = [parse_qs(r["body"].decode()) for r in receiver.accepted]
    assert [f["To"] for f in forms] == [["+15550002"], ["+15550003"]]
    assert all(f["From"] == ["+15550001"] and f["Body"][0].startswith("[WARNING] whale") for f in forms)
    keys = [r["headers"]["Idempotency-Key"] for r in receiver.accepted]
    assert len(set(keys)) == 2 and _outcomes(engine) == [("delivered", "")]


def test_queued_alerts_survive_a_restart_and_are_delivered_once_in_order(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook"
    journal = tmp_path / "state" / "outbox.jsonl"
    config = _engine(tmp_path, url).config
    first = AlertEngine(config, journal=journal, seed=1)
    ids = [a.alert_id for i in range(4) for a in first.submit(_signal(i))]
    wait_until(lambda: len(first.ledger) >= 2, first.deliver_pending)  # the receiver is down
    with journal.open("ab") as out:
        out.write(b'{"op": "add", "chan')  # the crash tore the last append
    # no close: the process "crashed"; a new engine opens the same journal
    receiver = HttpReceiver(KEY.encode()).start(port)
    try:
        second = AlertEngine(config, journal=journal, seed=2)
        assert second.pending == 4
        assert second.submit(_signal(0)) == []  # a replay of a queued row raises nothing new
        _drain(second)
        second.close()
        assert [json.loads(r["body"])["alert_id"] for r in receiver.accepted] == ids
        third = AlertEngine(config, journal=journal)
        assert third.pending == 0  # what was delivered is not sent again
        third.close()
    finally:
        receiver.stop()
        first.close()  # the "crashed" engine's file handle, closed only now


def test_a_full_channel_queue_dead_letters_new_alerts_as_overflow(tmp_path: Path) -> None:
    _engine(tmp_path, f"http://127.0.0.1:{free_port()}/webhook")  # writes alerts.toml; nothing listens
    path = tmp_path / "alerts.toml"
    path.write_text(path.read_text().replace("[delivery]\n", "[delivery]\nmax_pending = 2\n"))
    engine = AlertEngine(load(path, env={"HOOK_KEY": KEY}))
    ids = [a.alert_id for i in range(3) for a in engine.submit(_signal(i))]
    assert engine.pending == 2
    assert [(d.alert.alert_id, d.reason) for d in engine.dead_letters] == [(ids[2], "overflow")]
    assert [(r["alert_id"], r["outcome"], r["reason"]) for r in engine.ledger] == [
        (ids[2], "dead_letter", "overflow")]


def test_a_slow_receiver_holds_up_only_its_own_channel(tmp_path: Path, receiver: HttpReceiver) -> None:
    receiver.faults.append("slow")
    receiver.slow_s = 1.5  # answered (200) after 1.5 s, within the 10 s timeout
    path = tmp_path / "alerts.toml"
    _engine(tmp_path, receiver.url("webhook"), timeout_ms=10_000)  # writes alerts.toml
    path.write_text(path.read_text().replace('channels = ["out"]', 'channels = ["out", "log"]')
                    + f'[channel.log]\ntype = "file"\npath = "{tmp_path / "a.jsonl"}"\n')
    engine = AlertEngine(load(path, env={"HOOK_KEY": KEY}))
    engine.submit(_signal(1))
    _drain(engine)
    engine.close()
    latency_s = {r["channel"]: r["latency_ns"] / 1e9 for r in engine.ledger}
    assert [r["channel"] for r in engine.ledger] == ["out", "log"]  # the configured order, always
    assert latency_s["out"] >= 1.5 and latency_s["log"] < latency_s["out"] - 1.0, latency_s


def test_https_verifies_the_receivers_certificate(tmp_path: Path) -> None:
    from tests.alerts.tls import self_signed

    cert, key = self_signed(tmp_path)
    receiver = HttpReceiver(KEY.encode()).start(tls=(cert, key))
    try:
        url = receiver.url("webhook")
        assert url.startswith("https://")
        untrusted = _engine(tmp_path, url)
        untrusted.submit(_signal(1))
        _drain(untrusted)  # the self-signed certificate is not trusted by the system CAs
        assert _outcomes(untrusted) == [("dead_letter", "io_error")] and receiver.accepted == []
        path = tmp_path / "alerts.toml"
        path.write_text(path.read_text().replace('secret = "env:HOOK_KEY"',
                                                 f'secret = "env:HOOK_KEY"\nca_file = "{cert}"'))
        trusted = AlertEngine(load(path, env={"HOOK_KEY": KEY}))
        trusted.submit(_signal(1))
        _drain(trusted)
        assert _outcomes(trusted) == [("delivered", "")] and len(receiver.accepted) == 1
    finally:
        receiver.stop()
