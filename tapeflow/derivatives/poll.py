"""Asyncio REST pollers of the derivatives endpoints (docs/derivatives.md, "Pollers").

Each endpoint of each :class:`~tapeflow.derivatives.poll_config.VenuePoll` is polled in its own task
at its interval with jitter. Before each request the venue's :class:`RateBudget` is asked for the
request's weight and waits rather than exceed it; a 429 or 418 answer pauses the whole venue for
its ``Retry-After``. Every answer goes through the venue's derivatives decoder as a REST capture
line would, so a poll gives the rows a file decode of the same body gives, and they are handed to
the callback as one :class:`~tapeflow.wire.capture.Decoded` per answer. An answer that is not a 200
is one ``venue_error`` dead letter; bad JSON or a wrong shape is the decoder's own dead letter.
Network errors (refused, reset, timed out) have no answer to record: they are counted and the
request is retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import enum
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from tapeflow.derivatives import decoder
from tapeflow.derivatives.poll_config import Endpoint, VenuePoll
from tapeflow.pullcache import PullCache
from tapeflow.venues.decoder import VenueDecoder
from tapeflow.wire.capture import HTTP, CaptureLine, Decoded
from tapeflow.wire.rejects import Reason

log = logging.getLogger(__name__)

RATE_LIMITED = frozenset({429, 418})  # Binance: 429 over the limit, 418 banned for continuing
RAW_KEPT_BYTES = 4096  # of a non-200 body kept in its dead letter: an HTML error page can be large


class RateBudget:
    """At most ``weight`` of request weight in any window of ``window_s`` seconds.

    A sliding log of what was spent rather than a token bucket: a full bucket refilling while it is
    spent lets through up to twice its size within one window, which a venue counting per window
    would answer with 429s.
    """

    def __init__(self, weight: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.weight = weight
        self.window_s = window_s
        self.clock = clock
        self._spent: deque[tuple[float, int]] = deque()
        self._paused_until = float("-inf")

    def wait_s(self, weight: int) -> float:
        """Seconds until ``weight`` may be spent (0: now)."""
        now = self.clock()
        while self._spent and self._spent[0][0] <= now - self.window_s:
            self._spent.popleft()
        wait = max(0.0, self._paused_until - now)
        over = sum(w for _, w in self._spent) + weight - self.weight
        for at, w in self._spent:
            if over <= 0:
                break
            over -= w
            wait = max(wait, at + self.window_s - now)
        return wait

    def spend(self, weight: int) -> None:
        """Record ``weight`` spent now."""
        self._spent.append((self.clock(), weight))

    def pause(self, seconds: float) -> None:
        """Spend nothing for ``seconds`` (a venue's ``Retry-After``)."""
        self._paused_until = max(self._paused_until, self.clock() + seconds)

    async def acquire(self, weight: int) -> None:
        """Wait until ``weight`` fits the budget, then spend it."""
        while (wait := self.wait_s(weight)) > 0:
            await asyncio.sleep(wait)
        self.spend(weight)


def next_interval_s(interval_s: float, jitter: float, rng: random.Random) -> float:
    """A poll interval drawn uniformly within ``interval_s * (1 ± jitter)``."""
    return interval_s * rng.uniform(1.0 - jitter, 1.0 + jitter)


def backoff_s(venue: VenuePoll, failures: int, rng: random.Random) -> float:
    """The wait after ``failures`` failed requests in a row: doubling from ``backoff_s``, at most
    ``max_backoff_s``, with the venue's jitter so that the endpoints do not retry in step."""
    base = min(venue.backoff_s * 2.0 ** max(0, failures - 1), venue.max_backoff_s)
    return min(next_interval_s(base, venue.jitter, rng), venue.max_backoff_s)


def retry_after_s(value: str | None, default_s: float) -> float:
    """``Retry-After`` in seconds (delta seconds or an HTTP date); ``default_s`` when absent or unreadable."""
    if value:
        with contextlib.suppress(ValueError):
            return max(0.0, float(value))
        with contextlib.suppress(TypeError, ValueError, IndexError):
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return default_s


@dataclass
class PollStats:
    """What the pollers did, by endpoint URL where it matters."""

    requests: int = 0
    answers: int = 0  # 200 answers
    dead_letters: int = 0  # rejected rows, every reason
    network_errors: int = 0
    rate_limited: int = 0  # 429 and 418 answers
    by_url: dict[str, int] = field(default_factory=dict)  # requests per URL
    cache_hits: int = 0  # polls answered from the pull cache (no request, no rate budget)


class Outcome(enum.Enum):
    ANSWERED = "answered"  # any answer to take at the next interval, good or dead-lettered
    RETRY = "retry"  # a network error or a 5xx: back off and ask again
    RATE_LIMITED = "rate_limited"  # the budget is paused; ask again when it allows


OnRows = Callable[[Decoded], None]


class Poller:
    """Polls every endpoint of ``venues`` until stopped, handing each answer's rows to ``on_rows``.

    Args:
        venues: what to poll.
        on_rows: called with the decoded tables of every answer (``rejected`` among them).
        wall_ns: the receive time stamped on the rows (``ts_recv_ns``), ns UTC.
        rng: the jitter's random source (seed it for a reproducible schedule).
        cache: the pull cache (:mod:`tapeflow.pullcache`; None: every poll asks the venue). An
            answer (HTTP 200) is kept for the cache's TTL; a poll of the same URL within it is
            answered from the cache, spending no rate budget and counted in ``stats.cache_hits``.
    """

    def __init__(
        self,
        venues: Sequence[VenuePoll],
        on_rows: OnRows,
        *,
        wall_ns: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
        cache: PullCache | None = None,
    ) -> None:
        self.cache = cache
        self.venues = tuple(venues)
        self.on_rows = on_rows
        self.wall_ns = wall_ns
        self.rng = rng or random.Random()
        self.stats = PollStats()
        self.budgets = [RateBudget(v.budget_weight, v.budget_window_s) for v in self.venues]
        self.decoders: list[VenueDecoder] = [decoder(v.fmt) for v in self.venues]

    async def run(self, stop: asyncio.Event) -> PollStats:
        """Poll until ``stop`` is set; a failing ``on_rows`` stops every poll and is raised here."""
        async with aiohttp.ClientSession() as session:
            tasks = [
                asyncio.create_task(self._loop(session, i, ep, stop))
                for i, venue in enumerate(self.venues)
                for ep in venue.endpoints
            ]
            stopped = asyncio.create_task(stop.wait())
            try:
                done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in [stopped, *tasks]:
                    task.cancel()
                await asyncio.gather(stopped, *tasks, return_exceptions=True)
            for task in done:
                if task is not stopped and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        return self.stats

    async def _loop(self, session: aiohttp.ClientSession, i: int, ep: Endpoint, stop: asyncio.Event) -> None:
        venue, budget = self.venues[i], self.budgets[i]
        delay = self.rng.uniform(0.0, venue.jitter * ep.interval_s)  # endpoints start spread out
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            outcome = self._from_cache(i, ep)
            if outcome is None:
                await budget.acquire(ep.weight)
                outcome = await self._poll_once(session, i, ep)
            if outcome is Outcome.ANSWERED:
                failures = 0
                delay = next_interval_s(ep.interval_s, venue.jitter, self.rng)
            elif outcome is Outcome.RATE_LIMITED:
                failures += 1
                delay = 0.0  # the paused budget holds the next request back
            else:
                failures += 1
                delay = backoff_s(venue, failures, self.rng)

    def _from_cache(self, i: int, ep: Endpoint) -> Outcome | None:
        """Answer the poll from the cache (the rows of the kept body, received now), or None."""
        if self.cache is None:
            return None
        venue, dec = self.venues[i], self.decoders[i]
        url = ep.url(venue.base_url)
        body = self.cache.get(venue.fmt, ep.path, {"url": url})
        if body is None:
            return None
        self.stats.cache_hits += 1
        log.debug("derivatives poll %s: from the pull cache", url)
        dec.feed(CaptureLine(self.wall_ns(), HTTP, url, body, url))
        self.on_rows(dec.flush(len(body), url))
        return Outcome.ANSWERED

    async def _poll_once(self, session: aiohttp.ClientSession, i: int, ep: Endpoint) -> Outcome:
        venue, dec = self.venues[i], self.decoders[i]
        url = ep.url(venue.base_url)
        self.stats.requests += 1
        self.stats.by_url[url] = self.stats.by_url.get(url, 0) + 1
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=venue.timeout_s)) as resp:
                status, body = resp.status, await resp.read()
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.stats.network_errors += 1
            log.warning("derivatives poll %s failed: %s", url, exc.__class__.__name__)
            return Outcome.RETRY
        recv_ns = self.wall_ns()
        if status == 200:
            self.stats.answers += 1
            dec.feed(CaptureLine(recv_ns, HTTP, url, body, url))
            if self.cache is not None:
                self.cache.put(venue.fmt, ep.path, {"url": url}, body)
        else:
            detail = f"{ep.path}: HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
            dec.rejects.add(Reason.VENUE_ERROR, detail, url, body[:RAW_KEPT_BYTES], ts_recv_ns=recv_ns)
        decoded = dec.flush(len(body), url)
        if "rejected" in decoded.tables:
            self.stats.dead_letters += decoded.tables["rejected"].num_rows
        self.on_rows(decoded)
        if status in RATE_LIMITED:
            self.stats.rate_limited += 1
            budget = self.budgets[i]
            budget.pause(retry_after_s(retry_after, backoff_s(venue, 1, self.rng)))
            return Outcome.RATE_LIMITED
        return Outcome.RETRY if status >= 500 else Outcome.ANSWERED
