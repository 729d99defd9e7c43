"""A disk cache for what tapeflow pulls from vendors (REST answers, historical ranges), with a TTL
that knows the market session.

How long an answer stays true depends on what it is about and when it was pulled:

- a **settled range** (its data ends before the market's last close and at least ``settle_s``
  ago) never changes: kept until removed;
- anything else (latest values, a range that reaches into the present) pulled **while the market
  trades** lives ``live_ttl_s``;
- pulled **while the market is closed**, it stays true until the next open (nothing trades in
  between), but at most ``closed_ttl_max_s`` (a vendor may still correct a closed day).

Keys are a hash of the vendor, the endpoint and the canonical parameters; parameters that look like
credentials are refused (a key must never sit in a file name or a cache index). Entries are written
atomically (a temporary file and a rename); an unreadable entry is a miss, logged, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError
from tapeflow.sessions import Session

log = logging.getLogger(__name__)

_S = 1_000_000_000
FOREVER = -1
_CREDENTIAL = re.compile(r"key|token|secret|passw|auth|signature|cookie", re.IGNORECASE)


@dataclass
class PullCache:
    """Cached vendor answers under ``root``.

    Args:
        root: the cache folder (created on first write).
        session: the market the answers are about (:data:`tapeflow.sessions.SESSIONS`).
        live_ttl_s: lifetime of an unsettled answer pulled while the market trades.
        settle_s: how long after its end a range counts as settled.
        closed_ttl_max_s: longest lifetime of an answer pulled while the market is closed.
        clock_ns: wall time (tests pass a fixed clock).
    """

    root: Path
    session: Session
    live_ttl_s: float = 60.0
    settle_s: float = 3600.0
    closed_ttl_max_s: float = 3 * 86400.0
    clock_ns: Callable[[], int] = time.time_ns
    hits: int = field(default=0, init=False)
    misses: int = field(default=0, init=False)

    def expiry_ns(self, now_ns: int, end_ns: int | None = None) -> int:
        """When an answer pulled at ``now_ns`` about data ending at ``end_ns`` (None: latest
        values) stops being true; :data:`FOREVER` for a settled range."""
        if end_ns is not None and end_ns <= now_ns - int(self.settle_s * _S):
            if self.session.always_open or end_ns <= self.session.last_close_ns(now_ns):
                return FOREVER
        if self.session.is_open(now_ns):
            return now_ns + int(self.live_ttl_s * _S)
        return min(self.session.next_open_ns(now_ns), now_ns + int(self.closed_ttl_max_s * _S))

    def key(self, vendor: str, endpoint: str, params: Mapping[str, Any]) -> str:
        """The entry's key.

        Raises:
            ConfigError: a parameter named like a credential.
        """
        secret = sorted(name for name in params if _CREDENTIAL.search(name))
        if secret:
            raise ConfigError(f"pull cache: parameter(s) {secret} look like credentials; pass them "
                              "to the client, never as cached request parameters")
        text = json.dumps([vendor, endpoint, params], sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, vendor: str, endpoint: str, params: Mapping[str, Any]) -> bytes | None:
        """The cached answer, or None when absent, expired or unreadable."""
        body, meta = self._paths(self.key(vendor, endpoint, params))
        try:
            info = json.loads(meta.read_text())
            expires = int(info["expires_ns"])
            if expires != FOREVER and expires <= self.clock_ns():
                self.misses += 1
                return None
            data = body.read_bytes()
            if len(data) != int(info["bytes"]):
                raise ValueError(f"{len(data)} bytes where {info['bytes']} were written")
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("pull cache: entry %s unreadable (%s): pulled again", meta.stem, exc)
            self.misses += 1
            return None
        self.hits += 1
        return data

    def put(self, vendor: str, endpoint: str, params: Mapping[str, Any], data: bytes,
            end_ns: int | None = None) -> int:
        """Store ``data``; returns its expiry (:data:`FOREVER` for a settled range)."""
        now = self.clock_ns()
        expires = self.expiry_ns(now, end_ns)
        body, meta = self._paths(self.key(vendor, endpoint, params))
        body.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(body, data)
        _atomic_write(meta, json.dumps({"vendor": vendor, "endpoint": endpoint, "pulled_ns": now,
                                        "expires_ns": expires, "end_ns": end_ns,
                                        "bytes": len(data)}).encode())
        return expires

    def fetch(self, vendor: str, endpoint: str, params: Mapping[str, Any], pull: Callable[[], bytes],
              end_ns: int | None = None) -> bytes:
        """The cached answer, or ``pull()``'s, stored for next time."""
        cached = self.get(vendor, endpoint, params)
        if cached is not None:
            return cached
        data = pull()
        self.put(vendor, endpoint, params, data, end_ns)
        return data

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.body", folder / f"{key}.json"


def cache_from_env(default_session: str, env: Mapping[str, str] | None = None) -> PullCache | None:
    """The pull cache the environment asks for: ``TAPEFLOW_PULL_CACHE`` (its folder; unset or empty:
    no cache), ``TAPEFLOW_PULL_CACHE_TTL`` (seconds an unsettled answer pulled in session lives,
    default 60) and ``TAPEFLOW_PULL_CACHE_SESSION`` (the market, else ``default_session``).

    Raises:
        ConfigError: a TTL that is not a positive number, or an unknown session.
    """
    from tapeflow.sessions import session

    env = os.environ if env is None else env
    root = env.get("TAPEFLOW_PULL_CACHE", "")
    if not root:
        return None
    text = env.get("TAPEFLOW_PULL_CACHE_TTL", "") or "60"
    try:
        ttl = float(text)
    except ValueError:
        ttl = float("nan")
    if not ttl > 0 or ttl == float("inf"):
        raise ConfigError(f"TAPEFLOW_PULL_CACHE_TTL must be a positive number of seconds, got {text!r}")
    return PullCache(Path(root), session(env.get("TAPEFLOW_PULL_CACHE_SESSION") or default_session),
                     live_ttl_s=ttl)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
