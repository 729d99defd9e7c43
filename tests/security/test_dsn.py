"""Where credentials may come from, and that they are masked in every message (tapeflow/storage/dsn.py)."""

from __future__ import annotations

import pytest

from tapeflow.errors import ConfigError, StorageError
from tapeflow.storage.dsn import (
    PASSWORD_ENV,
    PASSWORD_FILE_ENV,
    USER_ENV,
    mask_secrets,
    parse_server_dsn,
)
from tapeflow.storage.warehouse import Warehouse, redact_dsn  # callers import it from warehouse

SECRET = "dsn-canary-51b2"  # noqa: S105 - a canary


def test_userinfo_credentials_and_defaults():
    server = parse_server_dsn(f"https://bob:{SECRET}@ch.example:9440/market", env={})
    assert (server.scheme, server.host, server.port) == ("https", "ch.example", 9440)
    assert server.database == "market"
    assert (server.username, server.password, server.password_source) == ("bob", SECRET, "dsn")
    assert server.verify is True and server.ca_cert is None
    assert SECRET not in repr(server)
    kwargs = server.client_kwargs()
    assert kwargs["interface"] == "https" and kwargs["secure"] is True and kwargs["verify"] is True
    assert parse_server_dsn("https://h/db", env={}).port == 8443
    assert parse_server_dsn("http://h", env={}).port == 8123


def test_percent_encoded_password_is_decoded():
    assert parse_server_dsn("http://u:p%40ss%2Fw@h/db", env={}).password == "p@ss/w"


def test_credentials_from_the_environment_and_a_file(tmp_path):
    env = {USER_ENV: "carol", PASSWORD_ENV: SECRET}
    server = parse_server_dsn("https://h:9440/db", env=env)
    assert (server.username, server.password, server.password_source) == ("carol", SECRET, "env")
    secret_file = tmp_path / "pw"
    secret_file.write_text(SECRET + "\n")
    server = parse_server_dsn("https://h:9440/db", env={PASSWORD_FILE_ENV: str(secret_file)})
    assert (server.password, server.password_source) == (SECRET, "file")


def test_two_sources_of_a_password_are_refused_without_echoing_either(tmp_path):
    with pytest.raises(ConfigError, match=PASSWORD_ENV) as caught:
        parse_server_dsn(f"https://u:{SECRET}@h/db", env={PASSWORD_ENV: "other-secret"})
    assert SECRET not in str(caught.value) and "other-secret" not in str(caught.value)


def test_a_password_file_others_can_read_is_used_with_a_warning(tmp_path, caplog):
    path = tmp_path / "pw"
    path.write_text(SECRET)
    path.chmod(0o600)
    with caplog.at_level("WARNING", logger="tapeflow.storage.dsn"):
        assert parse_server_dsn("https://h/db", env={PASSWORD_FILE_ENV: str(path)}).password == SECRET
        assert not caplog.records
        path.chmod(0o644)
        assert parse_server_dsn("https://h/db", env={PASSWORD_FILE_ENV: str(path)}).password == SECRET
    assert "readable by other users" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize("problem, expect", [("missing", "cannot read"), ("empty", "is empty"),
                                             ("binary", "not UTF-8")])
def test_unusable_password_file_is_a_clear_error(tmp_path, problem, expect):
    path = tmp_path / "pw"
    if problem == "empty":
        path.write_text("\n")
    elif problem == "binary":
        path.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ConfigError, match=expect) as caught:
        parse_server_dsn("https://h/db", env={PASSWORD_FILE_ENV: str(path)})
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("query", [f"password={SECRET}", f"access_token={SECRET}", f"PASSWORD={SECRET}",
                                   f"user=x&password={SECRET}", f"user_name={SECRET}"])
def test_a_credential_in_the_query_string_is_refused_and_masked(query):
    with pytest.raises(ConfigError, match="query string") as caught:
        parse_server_dsn(f"https://h:9440/db?compress=1&{query}", env={})
    message = str(caught.value)
    assert SECRET not in message
    assert PASSWORD_ENV in message and "user:password@host" in message  # says where to put it


def test_warehouse_refuses_a_query_string_password_before_connecting():
    # before: the driver took ?password= and a connect failure echoed the DSN verbatim
    with pytest.raises(ConfigError) as caught:
        Warehouse(f"http://127.0.0.1:9/db?password={SECRET}")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("dsn", [
    f"https://bob:{SECRET}@h:9440/db",
    f"https://bob:{SECRET}@h:9440/db?password={SECRET}&compress=1",
    f"http://h:8123/db?compress=1&password={SECRET}#frag",
    f"http://h/db?access_token={SECRET}",
    f"https://bob:{SECRET}/x?y#z@h:9440/db",  # unencoded / ? # in the password
    f"https://bob:{SECRET}@h:9440/db?q=a@b",
])
def test_redact_dsn_masks_userinfo_and_query_credentials(dsn):
    shown = redact_dsn(dsn)
    assert SECRET not in shown
    assert "***" in shown


def test_redact_dsn_keeps_what_is_not_secret():
    assert redact_dsn("https://bob:pw@h:9440/db?compress=1&password=pw") == \
        "https://***@h:9440/db?compress=1&password=***"
    assert redact_dsn("chdb:///var/wh") == "chdb:///var/wh"


@pytest.mark.parametrize("dsn", [f"https://u:{SECRET}@h:port/db", f"https://u:12/{SECRET}@h/db",
                                 f"https://u:{SECRET}@[::1/db"])
def test_malformed_dsn_is_a_config_error_that_does_not_quote_the_password(dsn):
    with pytest.raises(ConfigError) as caught:
        parse_server_dsn(dsn, env={})
    assert SECRET not in str(caught.value)


def test_unknown_verify_value_is_refused():
    with pytest.raises(ConfigError, match="verify="):
        parse_server_dsn("https://h/db?verify=maybe", env={})


def test_mask_secrets_masks_raw_and_percent_encoded_forms():
    text = f"failed for p@ss/{SECRET} (p%40ss%2F{SECRET})"
    assert mask_secrets(text, [f"p@ss/{SECRET}"]) == "failed for *** (***)"


def test_connect_failure_names_the_server_never_the_password(caplog):
    """Nothing listens on port 9: StorageError with host and port, no secret, no traceback chain."""
    with pytest.raises(StorageError) as caught:
        Warehouse(f"http://u:{SECRET}@127.0.0.1:9/db?connect_timeout=2")
    message = str(caught.value)
    assert message.startswith("cannot connect to ClickHouse at http://127.0.0.1:9/db")
    assert SECRET not in message and caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert SECRET not in caplog.text


def test_connect_server_states_tls_and_warns_about_passwords_over_plain_http(monkeypatch, caplog):
    from tapeflow.storage import dsn as dsn_module

    calls = []
    monkeypatch.setattr(dsn_module.clickhouse_connect, "get_client",
                        lambda **kw: calls.append(kw) or "client")
    with caplog.at_level("WARNING", logger="tapeflow.storage.dsn"):
        assert dsn_module.connect_server(f"https://u:{SECRET}@ch.example:9440/db", env={}) == "client"
        assert not caplog.records
        dsn_module.connect_server(f"http://u:{SECRET}@127.0.0.1:8123/db", env={})
        assert not caplog.records  # this machine: nothing crosses a network
        dsn_module.connect_server(f"http://u:{SECRET}@ch.example:8123/db", env={})
    assert calls[0]["interface"] == "https" and calls[0]["secure"] is True and calls[0]["verify"] is True
    assert "dsn" not in calls[0] and calls[0]["password"] == SECRET
    assert "sent unencrypted over http" in caplog.text and SECRET not in caplog.text


def test_settings_never_print_a_dsn_password():
    from tapeflow.settings import Settings

    settings = Settings.from_env({"TAPEFLOW_CLICKHOUSE": f"https://alice:{SECRET}@h:8443/db?password={SECRET}"})
    assert settings.clickhouse_dsn.count(SECRET) == 2  # the value itself is intact for the client
    for text in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert SECRET not in text and "h:8443/db" in text
