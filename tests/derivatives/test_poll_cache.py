"""The REST pollers' answers through the pull cache (tapeflow/pullcache.py): a poll of the same URL
within the TTL is answered from the cache (the loopback venue sees one request), after it the venue
is asked again."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tapeflow.derivatives.poll import Poller
from tapeflow.pullcache import PullCache
from tapeflow.sessions import session
from tapeflow.wire.capture import Decoded
from tests.derivatives.test_poll import OPEN_INTEREST, WALL_NS, Venue, binance, rows

S = 1_000_000_000


def _run(venue: Venue, cache: PullCache, answers_wanted: int) -> tuple[list[Decoded], Poller]:
    answers: list[Decoded] = []

    async def main() -> None:
        stop = asyncio.Event()

        def on_rows(d: Decoded) -> None:
            answers.append(d)
            if len(answers) >= answers_wanted:
                stop.set()

        poller.on_rows = on_rows
        asyncio.get_running_loop().call_later(5.0, stop.set)
        await poller.run(stop)

    poller = Poller([binance(venue.base_url, {OPEN_INTEREST: 0.02})], lambda d: None,
                    wall_ns=lambda: WALL_NS, rng=random.Random(7), cache=cache)
    asyncio.run(main())
    return answers, poller


def test_a_poll_within_the_ttl_is_answered_from_the_cache(real_data: Path, tmp_path: Path) -> None:
    now = [WALL_NS]
    cache = PullCache(tmp_path / "cache", session("crypto"), live_ttl_s=60.0, clock_ns=lambda: now[0])

    async def serve() -> tuple[list[Decoded], Poller, list[Decoded], Poller, int, int]:
        async with Venue(real_data) as venue:
            first, p1 = await asyncio.to_thread(_run, venue, cache, 4)
            asked_once = len(venue.times(OPEN_INTEREST))
            now[0] += 61 * S  # past the TTL: the venue is asked again, then the new answer is kept
            second, p2 = await asyncio.to_thread(_run, venue, cache, 3)
            return first, p1, second, p2, asked_once, len(venue.times(OPEN_INTEREST))

    first, p1, second, p2, asked_once, asked = asyncio.run(serve())
    assert len(first) >= 4 and asked_once == 1
    assert (p1.stats.requests, p1.stats.cache_hits) == (1, len(first) - 1)
    assert all(rows(d) == rows(first[0]) and rows(d) for d in first)  # the same rows, from the body kept
    assert asked == 2 and (p2.stats.requests, p2.stats.cache_hits) == (1, len(second) - 1)
