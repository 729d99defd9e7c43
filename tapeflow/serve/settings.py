"""What ``tapeflow serve`` runs with: the bind address, the token, and where data comes from.

Read once by the command (:func:`from_args`); the token comes from ``--token``,
``TAPEFLOW_SERVE_TOKEN`` or the file named by ``TAPEFLOW_SERVE_TOKEN_FILE`` and lives in a
:class:`tapeflow.secrets.Secret` (its ``repr`` and ``str`` are a mask; only the token gate reveals
it), so it is never printed or logged.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tapeflow.errors import ConfigError
from tapeflow.secrets import Secret

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class ServeSettings:
    """The server's configuration.

    Attributes:
        host, port: where to listen (loopback unless a token is set).
        lake: the lake root history is read from.
        clickhouse: a warehouse DSN to read history from instead (None: the lake).
        token: the bearer token every API request must carry (None: no auth, loopback only).
        live: ``host:port`` of the flow's publisher (``tapeflow live --publish``); None: no live data.
        acks: the file acknowledgements are kept in.
        dagster_home: Dagster's instance folder, for quality results and runs (None: not shown).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    lake: Path = Path("lake")
    clickhouse: str | None = None
    token: Secret | None = field(default=None, repr=False)
    live: tuple[str, int] | None = None
    acks: Path | None = None
    dagster_home: Path | None = None

    def __post_init__(self) -> None:
        if self.token is not None and not isinstance(self.token, Secret):
            raise TypeError("ServeSettings.token must be a tapeflow.secrets.Secret (resolve_token makes one)")

    def ack_file(self) -> Path:
        return self.acks if self.acks is not None else self.lake / "_alerts" / "acks.jsonl"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(flag: str | None, env: Mapping[str, str] | None = None) -> Secret | None:
    """The token from ``--token``, else ``TAPEFLOW_SERVE_TOKEN``, else ``TAPEFLOW_SERVE_TOKEN_FILE``.

    Raises:
        ConfigError: the token file cannot be read, or a token is shorter than 16 characters.
    """
    env = os.environ if env is None else env
    token = flag or env.get("TAPEFLOW_SERVE_TOKEN") or None
    source = "--token" if flag else "env:TAPEFLOW_SERVE_TOKEN"
    if token is None and env.get("TAPEFLOW_SERVE_TOKEN_FILE"):
        path = Path(env["TAPEFLOW_SERVE_TOKEN_FILE"])
        source = f"file:{path}"
        try:
            token = path.read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"TAPEFLOW_SERVE_TOKEN_FILE {path} cannot be read: {exc.strerror}") from None
        if token is None:
            raise ConfigError(f"TAPEFLOW_SERVE_TOKEN_FILE {path} is empty")
    if token is None:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the serve token must be at least {MIN_TOKEN_CHARS} characters "
                          f"(it has {len(token)})")
    return Secret(token, source)


def parse_address(text: str, what: str, *, allow_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair; port 0 (any free port) if ``allow_zero``.

    Raises:
        ConfigError: not HOST:PORT with a port in range.
    """
    low = 0 if allow_zero else 1
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not low <= int(port) <= 65535:
        raise ConfigError(f"{what} must be HOST:PORT with a port in {low}-65535, got {text!r}")
    return host.strip("[]"), int(port)


def check_bind(settings: ServeSettings) -> None:
    """Refuse to listen beyond loopback without a token.

    Raises:
        ConfigError: a non-loopback host and no token.
    """
    if not is_loopback(settings.host) and settings.token is None:
        raise ConfigError(f"serve: refusing to listen on {settings.host} without a token: set --token, "
                          "TAPEFLOW_SERVE_TOKEN or TAPEFLOW_SERVE_TOKEN_FILE (docs/dashboard.md)")
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"serve: --port must be 0-65535, got {settings.port}")


def check_publish(address: str) -> str:
    """``address`` when it is a loopback ``HOST:PORT`` the flow's publisher may bind (the stream has no auth).

    Raises:
        ConfigError: not HOST:PORT, or not loopback.
    """
    host, _ = parse_address(address, "--publish", allow_zero=True)
    if not is_loopback(host):
        raise ConfigError(f"--publish must be a loopback address (the stream has no auth), got {host!r}")
    return address
