"""The one way alerts reach the network: an allowlisted, pinned, redirect-free HTTP POST.

Every destination is resolved first and each of its addresses checked: loopback needs
``allow.loopback``, private, link-local (e.g. a cloud's metadata service), reserved and multicast
addresses need ``allow.private``, and when ``allow.hosts`` is given the host must be one of them
(``*.example.com`` matches subdomains). The connection then goes to the address that was checked,
not to a second lookup, and redirects are not followed, so neither DNS rebinding nor a 30x can
move a request past the check. Failures are :class:`DeliveryFailure` with a closed reason and no
URL (a Slack or gateway URL can carry a token).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tapeflow.alerts.config import Allow
from tapeflow.errors import TapeflowError


class DeliveryFailure(TapeflowError):
    """One attempt failed.

    Attributes:
        reason: one of ``tapeflow.schemas.alerts.DELIVERY_REASONS``.
        status_code: the receiver's reply code (0 when none came).
        retryable: whether another attempt may succeed (a 4xx other than 408/429 will not, nor
            a blocked destination).
    """

    def __init__(self, reason: str, detail: str, *, status_code: int = 0, retryable: bool = True) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.status_code, self.retryable = reason, status_code, retryable


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str


def check(url: str, allow: Allow) -> Target:
    """Resolve ``url`` and check every address against ``allow``.

    Raises:
        DeliveryFailure: ``blocked_destination`` (not retryable) or ``connection_refused`` when the
            name does not resolve (retryable: DNS may come back).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryFailure("blocked_destination", "not an http(s) URL", retryable=False)
    host = parts.hostname
    if allow.hosts and not any(_host_matches(host, pattern) for pattern in allow.hosts):
        raise DeliveryFailure("blocked_destination", "host is not in allow.hosts", retryable=False)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise DeliveryFailure("connection_refused", "the host name does not resolve") from None
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        why = refusal(ipaddress.ip_address(address.split("%")[0]), allow)
        if why:
            raise DeliveryFailure("blocked_destination", f"{why} address (see [allow])", retryable=False)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, addresses[0])


def refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow: Allow) -> str:
    """Why ``ip`` may not be reached under ``allow`` ('' when it may)."""
    if ip.is_loopback:
        return "" if allow.loopback else "a loopback"
    if ip.is_link_local or ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified:
        return "" if allow.private else "a private or link-local"
    return ""


def _host_matches(host: str, pattern: str) -> bool:
    host, pattern = host.lower(), pattern.lower()
    return host.endswith(pattern[1:]) if pattern.startswith("*.") else host == pattern


class _Pinned(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout_s: float, ca_file: str | None = None) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout_s: float, ca_file: str | None = None) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s,
                         context=ssl.create_default_context(cafile=ca_file))
        self._address = target.address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str], *, allow: Allow, timeout_s: float,
         ca_file: str | None = None) -> int:
    """POST ``body`` to ``url`` once; returns the 2xx status. HTTPS verifies the server's
    certificate and host name against the system CAs, or ``ca_file`` (a private CA).

    Raises:
        DeliveryFailure: blocked, refused, reset, timed out, or a non-2xx reply (3xx included:
            redirects are not followed).
    """
    target = check(url, allow)
    connection: Any = (_PinnedTLS if target.scheme == "https" else _Pinned)(target, timeout_s, ca_file)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)
        status = int(response.status)
    except TimeoutError:
        raise DeliveryFailure("timeout", f"no reply within {timeout_s:g} s") from None
    except ConnectionRefusedError:
        raise DeliveryFailure("connection_refused", "the receiver refused the connection") from None
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
            http.client.IncompleteRead):
        raise DeliveryFailure("connection_reset", "the receiver closed the connection") from None
    except ssl.SSLError as exc:
        raise DeliveryFailure("io_error", f"TLS failed ({type(exc).__name__})", retryable=False) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryFailure("io_error", f"{type(exc).__name__}") from None
    finally:
        connection.close()
    if 200 <= status < 300:
        return status
    if status >= 500 or status in (408, 429):
        raise DeliveryFailure("http_5xx" if status >= 500 else "http_4xx", f"HTTP {status}",
                              status_code=status)
    raise DeliveryFailure("http_4xx" if status >= 400 else "bad_response", f"HTTP {status}",
                          status_code=status, retryable=False)
