"""ClickHouse server DSNs: where credentials may come from, TLS, and masking for every message.

A server DSN is ``http(s)://[user[:password]@]host[:port][/database][?option=value...]``.

- ``https`` always means TLS, whatever the port (clickhouse-connect alone infers TLS from ports
  443/8443 only and would send ``Authorization: Basic ...`` in the clear to ``https://h:9440``).
  The server certificate is verified by default; ``?ca_cert=/path/ca.pem`` names the CA to trust,
  ``?verify=false`` turns verification off and logs a warning every time a client is opened.
- Credentials come from exactly one of: the DSN's userinfo, the environment
  (:data:`USER_ENV`, :data:`PASSWORD_ENV`) or a file (:data:`PASSWORD_FILE_ENV`). A credential
  in the query string (``?password=...``, ``?user=...``, tokens) is refused with a message that
  says where to put it, and two sources of a password at once are refused too (which one wins
  would be a guess).
- :func:`redact_dsn` masks userinfo and every secret-looking query value; :func:`mask_secrets`
  scrubs known secrets out of any text (a driver's error message) before it is shown.

See docs/security.md.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import clickhouse_connect

from tapeflow.errors import ConfigError, StorageError

USER_ENV = "TAPEFLOW_CLICKHOUSE_USER"
PASSWORD_ENV = "TAPEFLOW_CLICKHOUSE_PASSWORD"
PASSWORD_FILE_ENV = "TAPEFLOW_CLICKHOUSE_PASSWORD_FILE"
MASK = "***"

log = logging.getLogger(__name__)

# Query keys that carry a credential: refused by parse_server_dsn, masked by redact_dsn.
_CREDENTIAL_KEY = re.compile(r"pass|pwd|secret|token|auth|^(user|username|user_name|key)$", re.IGNORECASE)
_SHAPE = ("expected http(s)://[user[:password]@]host[:port][/database][?option=value], with any "
          "'/', '?', '#', '@' or ':' in the user or password percent-encoded")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
# Signs in a driver's error that the TLS handshake, not the server, failed.
_TLS_FAILURE = ("CERTIFICATE_VERIFY_FAILED", "SSLCertVerificationError", "certificate verify failed")


@dataclass(frozen=True)
class ServerDsn:
    """A parsed server DSN with its credentials resolved (the password never appears in ``repr``).

    Attributes:
        scheme: ``http`` or ``https``.
        host: server host name or address.
        port: TCP port (8123 for http, 8443 for https when the DSN names none).
        database: database, or None for the user's default.
        username: ClickHouse user, or None for the server's default user.
        password: the password ("" for none).
        verify: verify the server certificate (https only).
        ca_cert: CA bundle to verify against, or None for the system's.
        options: the other query options, handed to clickhouse-connect as they are.
        password_source: where the password came from (``dsn``, ``env``, ``file`` or ``none``).
    """

    scheme: str
    host: str
    port: int
    database: str | None
    username: str | None
    password: str = field(repr=False)
    verify: bool = True
    ca_cert: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    password_source: str = "none"

    @property
    def secure(self) -> bool:
        """True when the connection uses TLS."""
        return self.scheme == "https"

    @property
    def address(self) -> str:
        """``scheme://host:port/database`` without credentials or options, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.database or ''}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``clickhouse_connect.get_client`` (TLS stated, never inferred)."""
        kwargs: dict[str, Any] = dict(self.options)
        kwargs.update(host=self.host, port=self.port, interface=self.scheme, secure=self.secure,
                      password=self.password)
        if self.username is not None:
            kwargs["username"] = self.username
        if self.database is not None:
            kwargs["database"] = self.database
        if self.secure:
            kwargs["verify"] = self.verify
            if self.ca_cert is not None:
                kwargs["ca_cert"] = self.ca_cert
        return kwargs


def parse_server_dsn(dsn: str, env: Mapping[str, str] | None = None) -> ServerDsn:
    """Parse an ``http(s)://`` DSN and resolve its credentials.

    Args:
        dsn: the DSN.
        env: where :data:`USER_ENV`, :data:`PASSWORD_ENV` and :data:`PASSWORD_FILE_ENV` are read
            (default: ``os.environ``, read now, at the call).

    Returns:
        The parsed DSN.

    Raises:
        ConfigError: the DSN is malformed, carries a credential in its query string, has two
            sources of a password, an unknown ``verify`` value, or the password file is unreadable
            or empty. Messages show the DSN masked.
    """
    env = os.environ if env is None else env
    shown = redact_dsn(dsn)
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError:  # its message quotes the bad part, which may be a piece of the password
        raise ConfigError(f"warehouse DSN {shown!r} is malformed: {_SHAPE}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"warehouse DSN {shown!r} is not http(s)://...")
    if not parts.hostname:
        raise ConfigError(f"warehouse DSN {shown!r} names no host")
    if "@" in parts.path or "@" in parts.fragment:
        raise ConfigError(f"warehouse DSN {shown!r} has an '@' outside its userinfo: {_SHAPE}")
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if _CREDENTIAL_KEY.search(key):
            raise ConfigError(
                f"warehouse DSN {shown!r} carries a credential in its query string ({key}=...): put the user "
                f"and password in the DSN as http(s)://user:password@host/..., or in {USER_ENV} and "
                f"{PASSWORD_ENV} / {PASSWORD_FILE_ENV} (a file holding only the password)")
        options[key] = value
    verify = _flag(options.pop("verify", "true"), "verify", shown)
    ca_cert = options.pop("ca_cert", None)
    options.pop("secure", None)  # the scheme decides, never a query option
    options.pop("interface", None)
    username = unquote(parts.username) if parts.username else env.get(USER_ENV) or None
    password, source = _password(parts, env, shown)
    return ServerDsn(scheme=parts.scheme, host=parts.hostname,
                     port=port or (8443 if parts.scheme == "https" else 8123),
                     database=unquote(parts.path.strip("/")) or None, username=username, password=password,
                     verify=verify, ca_cert=ca_cert, options=options, password_source=source)


def connect_server(dsn: str, env: Mapping[str, str] | None = None) -> Any:
    """Open a clickhouse-connect client for a server DSN (see :func:`parse_server_dsn`).

    Logs a warning when certificate verification is off, and when a password would travel over
    plain http to a host other than this machine.

    Raises:
        ConfigError: the DSN is invalid (see :func:`parse_server_dsn`).
        StorageError: the server cannot be reached, refused the credentials, or its certificate
            failed verification; the message names the server, never a credential.
    """
    server = parse_server_dsn(dsn, env)
    if server.secure and not server.verify:
        log.warning("TLS certificate verification is OFF for %s (verify=false in the DSN): the connection "
                    "is encrypted but the server is not authenticated", server.address)
    if not server.secure and server.password and server.host not in _LOOPBACK:
        log.warning("the ClickHouse password for %s is sent unencrypted over http; use https://",
                    server.address)
    try:
        return clickhouse_connect.get_client(**server.client_kwargs())
    except Exception as exc:  # the driver raises its own, urllib3's and OSError; all mean "cannot connect"
        raise StorageError(_connect_failure(server, exc)) from None


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its userinfo and every credential-like query value masked, for messages.

    Never raises. Everything before the last ``@`` is masked, so a password holding an unencoded
    ``/``, ``?`` or ``#`` is masked too (at worst more than the userinfo is).
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return dsn
    if "@" in rest:
        rest = MASK + "@" + rest.rpartition("@")[2]
    rest, hash_, fragment = rest.partition("#")
    head, qmark, query = rest.partition("?")
    if qmark:
        query = "&".join(_mask_pair(pair) for pair in query.split("&"))
    return f"{scheme}{sep}{head}{qmark}{query}{hash_}{fragment}"


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret (as given and percent-encoded) replaced by ``***``."""
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe=""), quote(secret)}:
                text = text.replace(form, MASK)
    return text


def _mask_pair(pair: str) -> str:
    key, eq, _ = pair.partition("=")
    return f"{key}={MASK}" if eq and _CREDENTIAL_KEY.search(unquote(key)) else pair


def _flag(value: str, name: str, shown: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"warehouse DSN {shown!r}: {name}={value!r} is not true/false")


def _password(parts: Any, env: Mapping[str, str], shown: str) -> tuple[str, str]:
    sources: list[tuple[str, str]] = []
    if parts.password is not None:
        sources.append(("dsn", unquote(parts.password)))
    if env.get(PASSWORD_ENV):
        sources.append(("env", env[PASSWORD_ENV]))
    if env.get(PASSWORD_FILE_ENV):
        sources.append(("file", _read_password_file(Path(env[PASSWORD_FILE_ENV]))))
    if len(sources) > 1:
        named = {"dsn": "the DSN's userinfo", "env": PASSWORD_ENV, "file": PASSWORD_FILE_ENV}
        raise ConfigError(f"the ClickHouse password for {shown!r} is given twice "
                          f"({' and '.join(named[s] for s, _ in sources)}): keep one")
    return (sources[0][1], sources[0][0]) if sources else ("", "none")


def _read_password_file(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{PASSWORD_FILE_ENV}={path}: cannot read the password file ({exc.strerror})") \
            from None
    except UnicodeDecodeError:  # its message quotes the bytes around the bad one
        raise ConfigError(f"{PASSWORD_FILE_ENV}={path}: the password file is not UTF-8") from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigError(f"{PASSWORD_FILE_ENV}={path}: the password file is empty")
    if path.stat().st_mode & 0o077:
        log.warning("%s=%s is readable by other users; chmod 600 it", PASSWORD_FILE_ENV, path)
    return password


def _connect_failure(server: ServerDsn, exc: BaseException) -> str:
    detail = mask_secrets(f"{type(exc).__name__}: {exc}", [server.password])
    if any(sign in detail for sign in _TLS_FAILURE):
        return (f"cannot connect to ClickHouse at {server.address}: the server's TLS certificate failed "
                f"verification; trust its CA with ?ca_cert=/path/ca.pem in the DSN (or, insecure, "
                f"?verify=false) ({detail})")
    return f"cannot connect to ClickHouse at {server.address}: {detail}"
