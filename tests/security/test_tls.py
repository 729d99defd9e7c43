"""TLS whenever the DSN says https, checked against a local TLS listener (tests/security/tls_listener.py)."""

from __future__ import annotations

import base64
import logging

import pytest

from tapeflow.cli import main
from tapeflow.errors import StorageError
from tapeflow.storage.warehouse import Warehouse
from tests.security.tls_listener import tls_listener

SECRET = "tls-canary-7f3a9c"  # noqa: S105 - a canary, not a credential
BASIC = base64.b64encode(f"alice:{SECRET}".encode())


@pytest.fixture
def listener(tmp_path):
    with tls_listener(tmp_path) as running:
        yield running


def test_https_on_a_non_tls_default_port_speaks_tls_and_sends_credentials_only_encrypted(listener):
    """Port neither 443 nor 8443: before, clickhouse-connect spoke plain HTTP and sent Basic auth in clear."""
    dsn = f"https://alice:{SECRET}@127.0.0.1:{listener.port}/db?ca_cert={listener.ca_pem}&connect_timeout=5"
    with pytest.raises(StorageError) as caught:
        Warehouse(dsn)
    assert listener.seen, "the client never reached the listener"
    assert not listener.heard_plaintext(), [s.head[:80] for s in listener.seen]
    assert all(s.handshake_ok for s in listener.seen)
    # the listener decrypted the request: the credentials were sent, inside TLS
    assert listener.heard(b"Basic " + BASIC) or listener.heard(SECRET.encode())
    message = str(caught.value)
    assert "AUTHENTICATION_FAILED" in message  # the server's answer came through
    assert SECRET not in message and BASIC.decode() not in message


def test_certificate_verification_is_on_by_default(listener, capsys):
    """No ca_cert: the self-signed chain is refused, a clear one-line error, no traceback, no secret."""
    dsn = f"https://alice:{SECRET}@127.0.0.1:{listener.port}/db?connect_timeout=5"
    code = main(["query", "SELECT 1", "--clickhouse", dsn])
    err = capsys.readouterr().err
    assert code == 2
    assert "TLS certificate failed verification" in err and "ca_cert=" in err
    assert "Traceback" not in err and SECRET not in err and BASIC.decode() not in err
    assert not listener.heard_plaintext()
    assert not any(s.handshake_ok for s in listener.seen)


def test_verify_false_connects_unverified_and_warns(listener, caplog):
    dsn = f"https://alice:{SECRET}@127.0.0.1:{listener.port}/db?verify=false&connect_timeout=5"
    with caplog.at_level(logging.WARNING, logger="tapeflow.storage.dsn"):
        with pytest.raises(StorageError) as caught:
            Warehouse(dsn)
    assert "AUTHENTICATION_FAILED" in str(caught.value)  # handshake done without a trusted chain
    assert any(s.handshake_ok for s in listener.seen) and not listener.heard_plaintext()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("verification is OFF" in w for w in warnings), warnings
    assert not any(SECRET in w for w in warnings)


def test_plain_http_to_the_tls_listener_is_refused_with_a_clear_error(listener, capsys):
    dsn = f"http://127.0.0.1:{listener.port}/db?connect_timeout=5"
    code = main(["query", "SELECT 1", "--clickhouse", dsn])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("tapeflow: error: cannot connect to ClickHouse at http://127.0.0.1:")
    assert "Traceback" not in err
    assert listener.heard_plaintext() and not any(s.handshake_ok for s in listener.seen)


@pytest.mark.parametrize("source", ["environment", "file"])
def test_env_or_file_credentials_are_sent_inside_tls(listener, monkeypatch, tmp_path, source):
    monkeypatch.setenv("TAPEFLOW_CLICKHOUSE_USER", "alice")
    if source == "environment":
        monkeypatch.setenv("TAPEFLOW_CLICKHOUSE_PASSWORD", SECRET)
    else:
        (tmp_path / "pw").write_text(SECRET + "\n")
        monkeypatch.setenv("TAPEFLOW_CLICKHOUSE_PASSWORD_FILE", str(tmp_path / "pw"))
    with pytest.raises(StorageError) as caught:
        Warehouse(f"https://127.0.0.1:{listener.port}/db?ca_cert={listener.ca_pem}&connect_timeout=5")
    assert listener.heard(b"Basic " + BASIC) and not listener.heard_plaintext()
    assert SECRET not in str(caught.value)
