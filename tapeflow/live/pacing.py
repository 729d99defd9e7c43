"""Pacing of a live connector: reconnect backoff and the REST rate limiter.

Both take their clock (and the backoff its random source) as arguments, so tests check exact
schedules without sleeping.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

from tapeflow.errors import ConfigError


class Backoff:
    """Capped exponential backoff with multiplicative jitter.

    The n-th delay (from 0) is ``min(max_s, initial_s * factor**n) * u`` with ``u`` drawn
    uniformly in ``[1 - jitter, 1 + jitter]`` and the product capped at ``max_s``; jitter keeps a
    fleet of connectors from reconnecting in lockstep after a venue outage.

    Args:
        initial_s: first delay.
        max_s: the cap.
        factor: growth per failed attempt.
        jitter: relative spread, 0 <= jitter < 1.
        seed: seeds the jitter (None: unpredictable), for deterministic tests.

    Raises:
        ConfigError: a non-positive delay or factor below 1, or jitter outside [0, 1).
    """

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0, *, factor: float = 2.0,
                 jitter: float = 0.2, seed: int | None = None) -> None:
        if not (initial_s > 0 and max_s >= initial_s and factor >= 1 and 0 <= jitter < 1):
            raise ConfigError(f"backoff initial_s={initial_s} max_s={max_s} factor={factor} jitter={jitter} "
                              "needs 0 < initial_s <= max_s, factor >= 1, 0 <= jitter < 1")
        self.initial_s, self.max_s, self.factor, self.jitter = initial_s, max_s, factor, jitter
        self.attempt = 0
        self._rng = random.Random(seed)

    def next(self) -> float:
        """The delay before the next attempt, in seconds (and count the attempt)."""
        base = min(self.max_s, self.initial_s * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        return min(self.max_s, base * self._rng.uniform(1 - self.jitter, 1 + self.jitter))

    def reset(self) -> None:
        """A connection worked: the next failure starts from ``initial_s`` again."""
        self.attempt = 0


class TokenBucket:
    """Rate limiter of REST requests: ``rate_per_s`` tokens a second, bursts up to ``burst``.

    A venue's HTTP 429 (too many requests) or 418 (IP banned) with ``Retry-After`` blocks every
    request until then (:meth:`hold`), whatever tokens are left.

    Args:
        rate_per_s: sustained request rate.
        burst: bucket size (requests that may go at once after a quiet spell).
        clock: monotonic seconds (``time.monotonic`` unless a test passes its own).
    """

    def __init__(self, rate_per_s: float = 1.0, burst: int = 2, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ConfigError(f"rate limiter rate_per_s={rate_per_s} burst={burst}: both must be positive")
        self.rate_per_s, self.burst, self.clock = rate_per_s, burst, clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._hold_until = float("-inf")
        self.granted = 0
        self.held = 0

    def delay(self) -> float:
        """Seconds until a request may go (0 when one may go now); takes no token."""
        now = self._refill()
        wait_hold = max(0.0, self._hold_until - now)
        wait_token = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate_per_s
        return max(wait_hold, wait_token)

    def try_acquire(self) -> bool:
        """Take a token if a request may go now."""
        if self.delay() > 0:
            return False
        self._tokens -= 1
        self.granted += 1
        return True

    async def acquire(self) -> None:
        """Wait until a request may go, then take a token."""
        while not self.try_acquire():
            await asyncio.sleep(self.delay())

    def hold(self, seconds: float) -> None:
        """Block every request for ``seconds`` from now (a 429/418 ``Retry-After``)."""
        self.held += 1
        self._hold_until = max(self._hold_until, self.clock() + max(0.0, seconds))

    def _refill(self) -> float:
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now
        return now


def retry_after_s(headers: Mapping[str, str], default_s: float) -> float:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), else ``default_s``."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return default_s
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default_s
