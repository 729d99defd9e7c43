"""The derivatives REST pollers against a real aiohttp server on 127.0.0.1 serving the recorded REST
bodies of derivatives/nautilus_fixtures: rows equal the file decode of the same body, intervals and
jitter, the rate budget seen at the server, 429 with Retry-After, a 500 then recovery, a malformed
body, network errors. Timing asserts use bounds far wider than the intervals (a loaded 2-core box)."""

from __future__ import annotations

import asyncio
import math
import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tapeflow.derivatives import decoder
from tapeflow.derivatives.poll import Poller, RateBudget, backoff_s, next_interval_s, retry_after_s
from tapeflow.derivatives.poll_config import (
    FUNDING_INTERVAL_S,
    INSURANCE_FUND_INTERVAL_S,
    MARK_INTERVAL_S,
    OPEN_INTEREST_INTERVAL_S,
    Endpoint,
    VenuePoll,
    binance_usdm,
    okx,
)
from tapeflow.errors import ConfigError
from tapeflow.wire.capture import HTTP, CaptureLine, Decoded
from tests.conftest import need

FIXTURES = "derivatives/nautilus_fixtures"
WALL_NS = 1_700_000_000_000_000_000
PREMIUM = "/fapi/v1/premiumIndex"
OPEN_INTEREST = "/fapi/v1/openInterest"
OKX_MARK = "/api/v5/public/mark-price"
BODIES = {
    PREMIUM: "binance_http_futures_market_premium_index.json",
    OPEN_INTEREST: "binance_http_futures_market_open_interest.json",
    OKX_MARK: "okx_http_get_mark_price.json",
}
Reply = tuple[int, bytes | None, dict[str, str]]  # None: the recorded body


class Venue:
    """A loopback server: each path answers its scripted replies in order, then its recorded body."""

    def __init__(self, root: Path, script: dict[str, list[Reply]] | None = None) -> None:
        self.bodies = {p: need(root / FIXTURES / name).read_bytes() for p, name in BODIES.items()}
        self.script = {p: list(r) for p, r in (script or {}).items()}
        self.hits: list[tuple[float, str]] = []  # (loop time at arrival, path)
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append((asyncio.get_running_loop().time(), request.path))
        queue = self.script.get(request.path)
        status, body, headers = queue.pop(0) if queue else (200, None, {})
        body = self.bodies[request.path] if body is None else body
        return web.Response(status=status, body=body, headers=headers, content_type="application/json")

    async def __aenter__(self) -> Venue:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def times(self, path: str | None = None) -> list[float]:
        return [t for t, p in self.hits if path is None or p == path]


def binance(base_url: str, paths: dict[str, float], **kw: Any) -> VenuePoll:
    eps = [Endpoint(p, {"symbol": "BTCUSDT"}, interval) for p, interval in paths.items()]
    kw = {"budget_weight": 1000, "budget_window_s": 60.0, "backoff_s": 0.05, "max_backoff_s": 0.2} | kw
    return VenuePoll("binance-futures", base_url, eps, **kw)


def poll(venues: list[VenuePoll], until: Callable[[list[Decoded]], bool], max_s: float = 5.0
         ) -> tuple[list[Decoded], Poller]:
    """Run a poller until ``until(answers)`` holds (or ``max_s`` passes: the caller's asserts fail)."""
    answers: list[Decoded] = []

    async def main() -> None:
        stop = asyncio.Event()

        def on_rows(d: Decoded) -> None:
            answers.append(d)
            if until(answers):
                stop.set()

        poller.on_rows = on_rows
        asyncio.get_running_loop().call_later(max_s, stop.set)
        await poller.run(stop)

    poller = Poller(venues, lambda d: None, wall_ns=lambda: WALL_NS, rng=random.Random(7))
    asyncio.run(main())
    return answers, poller


def rows(d: Decoded) -> dict[str, list[dict[str, Any]]]:
    """The tables as rows, NaN (no predicted funding rate) spelled so that it compares equal."""
    def spell(v: Any) -> Any:
        return "NaN" if isinstance(v, float) and math.isnan(v) else v

    return {k: [{c: spell(v) for c, v in r.items()} for r in t.to_pylist()] for k, t in d.tables.items()}


def file_decode(fmt: str, body: bytes, url: str) -> dict[str, list[dict[str, Any]]]:
    dec = decoder(fmt)
    dec.feed(CaptureLine(WALL_NS, HTTP, url, body, "file"))
    return rows(dec.flush(0, "file"))


def rejected(answers: list[Decoded]) -> list[dict[str, Any]]:
    return [r for d in answers if "rejected" in d.tables for r in d.tables["rejected"].to_pylist()]


def test_rows_equal_the_file_decode_of_the_same_body(real_data: Path) -> None:
    async def serve() -> tuple[list[Decoded], Venue]:
        async with Venue(real_data) as venue:
            bn = binance(venue.base_url, {PREMIUM: 0.05, OPEN_INTEREST: 0.05})
            ok = VenuePoll("okx", venue.base_url, [Endpoint(OKX_MARK, {"instId": "BTC-USDT-SWAP"}, 0.05)],
                           budget_weight=10, budget_window_s=2.0)
            answers, _ = await asyncio.to_thread(
                poll, [bn, ok], lambda a: len({d.source.split("?")[0] for d in a}) >= len(BODIES)
            )
            return answers, venue

    answers, venue = asyncio.run(serve())
    first = {}
    for d in answers:
        first.setdefault(d.source.split("?")[0].removeprefix(venue.base_url), d)
    assert set(first) == set(BODIES)
    for path, name in BODIES.items():
        fmt = "okx" if path == OKX_MARK else "binance-futures"
        expected = file_decode(fmt, (real_data / FIXTURES / name).read_bytes(), f"https://venue{path}")
        assert "rejected" not in expected and expected
        assert rows(first[path]) == expected, path


def test_jitter_draws_stay_within_bounds_and_spread() -> None:
    rng = random.Random(3)
    draws = [next_interval_s(10.0, 0.2, rng) for _ in range(2000)]
    assert 8.0 <= min(draws) < 8.2 and 11.8 < max(draws) <= 12.0
    assert next_interval_s(10.0, 0.0, rng) == 10.0


def test_polls_at_the_interval_with_jitter(real_data: Path) -> None:
    async def serve() -> list[float]:
        async with Venue(real_data) as venue:
            bn = binance(venue.base_url, {PREMIUM: 0.1}, jitter=0.2)
            await asyncio.to_thread(poll, [bn], lambda a: len(a) >= 6)
            return venue.times(PREMIUM)

    times = asyncio.run(serve())
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) >= 5
    # each interval is drawn in [0.08, 0.12] s; the server may see it up to a little shorter
    assert min(gaps) >= 0.06, gaps
    assert len({round(g, 3) for g in gaps}) > 1, gaps  # jittered, not a fixed period


def test_rate_budget_fake_clock_never_exceeds_and_waits_exactly() -> None:
    now = [0.0]
    budget = RateBudget(5, 1.0, clock=lambda: now[0])
    spent: list[tuple[float, int]] = []
    rng = random.Random(11)
    for _ in range(300):
        w = rng.randint(1, 3)
        wait = budget.wait_s(w)
        now[0] += wait
        assert budget.wait_s(w) == 0.0
        budget.spend(w)
        spent.append((now[0], w))
        now[0] += rng.choice([0.0, 0.0, 0.05, 0.3])
    for t, _ in spent:
        assert sum(w for s, w in spent if t <= s < t + 1.0) <= 5
    budget.pause(2.5)
    assert budget.wait_s(1) == 2.5


def test_rate_budget_is_never_exceeded_at_the_server(real_data: Path) -> None:
    window_s = 0.4

    async def serve() -> list[float]:
        async with Venue(real_data) as venue:
            bn = binance(venue.base_url, {PREMIUM: 0.01, OPEN_INTEREST: 0.01}, budget_weight=3,
                         budget_window_s=window_s)
            await asyncio.to_thread(poll, [bn], lambda a: len(a) >= 12)
            return venue.times()

    times = asyncio.run(serve())
    assert len(times) >= 12
    # the arrival of a request can be late by its delivery; 0.75 of the window leaves it room
    worst = max(sum(1 for s in times if t <= s < t + 0.75 * window_s) for t in times)
    assert worst <= 3, times
    # two endpoints at 10 ms would make ~40 requests a 0.4 s window unthrottled
    assert times[-1] - times[0] >= (len(times) // 3 - 1) * window_s * 0.75


def test_429_with_retry_after_holds_the_venue_back(real_data: Path) -> None:
    # two good answers first: the first decode's warm-up (imports, Arrow) must not pass for a pause
    too_many = (429, b'{"code":-1003,"msg":"Too many requests"}', {"Retry-After": "0.5"})
    script = {PREMIUM: [(200, None, {}), (200, None, {}), too_many]}

    async def serve() -> tuple[list[Decoded], Poller, list[tuple[float, str]]]:
        async with Venue(real_data, script) as venue:
            bn = binance(venue.base_url, {PREMIUM: 0.02, OPEN_INTEREST: 0.02})
            answers, poller = await asyncio.to_thread(
                poll, [bn], lambda a: sum("mark_price" in d.tables for d in a) >= 3
            )
            return answers, poller, venue.hits

    answers, poller, hits = asyncio.run(serve())
    t429 = [t for t, p in hits if p == PREMIUM][2]
    after = [t - t429 for t, _ in hits if t > t429]
    # a request already in flight may land just after; none after that until Retry-After passed
    assert not [dt for dt in after if 0.1 < dt < 0.45], after
    premium_after = [t - t429 for t, p in hits if p == PREMIUM and t > t429]
    assert premium_after and premium_after[0] >= 0.45
    assert poller.stats.rate_limited == 1
    [dead] = rejected(answers)
    assert dead["reason"] == "venue_error" and "HTTP 429" in dead["detail"]


def test_500_is_a_dead_letter_then_the_poll_recovers(real_data: Path) -> None:
    script = {PREMIUM: [(500, b"<html>Internal Server Error</html>", {})]}

    async def serve() -> tuple[list[Decoded], Poller]:
        async with Venue(real_data, script) as venue:
            bn = binance(venue.base_url, {PREMIUM: 0.02})
            return await asyncio.to_thread(poll, [bn], lambda a: len(a) >= 2)

    answers, poller = asyncio.run(serve())
    [dead] = rejected(answers[:1])
    assert dead["reason"] == "venue_error" and "HTTP 500" in dead["detail"]
    assert dead["raw"] == b"<html>Internal Server Error</html>" and dead["ts_recv_ns"] == WALL_NS
    body = (real_data / FIXTURES / BODIES[PREMIUM]).read_bytes()
    assert rows(answers[1]) == file_decode("binance-futures", body, f"https://venue{PREMIUM}")
    assert poller.stats.dead_letters == 1 and poller.stats.answers >= 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"symbol": "BTCUSDT", "markPrice": ', "truncated"),
        (b"[1, 2]", "bad_shape"),
        (b"not json", "bad_json"),
    ],
)
def test_malformed_body_is_a_dead_letter(real_data: Path, body: bytes, reason: str) -> None:
    script = {PREMIUM: [(200, body, {})]}

    async def serve() -> tuple[list[Decoded], Poller]:
        async with Venue(real_data, script) as venue:
            bn = binance(venue.base_url, {PREMIUM: 0.02})
            return await asyncio.to_thread(poll, [bn], lambda a: len(a) >= 2)

    answers, poller = asyncio.run(serve())
    [dead] = rejected(answers)
    assert dead["reason"] == reason and dead["raw"] == body
    assert "mark_price" in answers[1].tables  # the next poll decodes as usual
    assert poller.stats.dead_letters == 1


def test_network_errors_are_counted_and_retried_with_backoff() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bn = binance(f"http://127.0.0.1:{port}", {PREMIUM: 0.01}, backoff_s=0.05, max_backoff_s=0.1)
    answers, poller = poll([bn], lambda a: True, max_s=0.6)
    assert answers == []
    # ~0.05 + 0.1 + 0.1 ... s of backoff in 0.6 s: retried, but never at the 10 ms interval
    assert 2 <= poller.stats.network_errors <= 8, poller.stats
    assert poller.stats.requests == poller.stats.network_errors


def test_backoff_doubles_to_its_cap_and_retry_after_parses() -> None:
    venue = binance("http://127.0.0.1:1", {PREMIUM: 1.0}, jitter=0.0, backoff_s=1.0, max_backoff_s=5.0)
    rng = random.Random(1)
    assert [backoff_s(venue, n, rng) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry_after_s("3", 9.0) == 3.0
    assert retry_after_s(None, 9.0) == 9.0 and retry_after_s("soon", 9.0) == 9.0
    assert retry_after_s("Thu, 01 Jan 1970 00:00:00 GMT", 9.0) == 0.0


def test_defaults_are_the_replaced_systems() -> None:
    assert (FUNDING_INTERVAL_S, MARK_INTERVAL_S, OPEN_INTEREST_INTERVAL_S, INSURANCE_FUND_INTERVAL_S) == (
        30.0, 10.0, 15.0, 300.0)
    intervals = {e.path.rsplit("/", 1)[-1]: e.interval_s for e in okx().endpoints}
    assert intervals == {
        "funding-rate": 30.0, "mark-price": 10.0, "open-interest": 15.0, "insurance-fund": 300.0
    }
    assert dict(okx(("ETH-USDT-SWAP",)).endpoints[-1].params)["instFamily"] == "ETH-USDT"
    bn = {e.path.rsplit("/", 1)[-1]: e.interval_s for e in binance_usdm().endpoints}
    assert bn == {"premiumIndex": 10.0, "openInterest": 15.0, "insuranceBalance": 300.0}
    assert binance_usdm().budget_weight == 2400 and binance_usdm().budget_window_s == 60.0
    assert Endpoint("/x", {"b": "2", "a": "1"}).url("http://h:1/") == "http://h:1/x?a=1&b=2"


@pytest.mark.parametrize(
    "build",
    [
        lambda: Endpoint("fapi/v1/premiumIndex"),
        lambda: Endpoint("/x", interval_s=0),
        lambda: Endpoint("/x", interval_s=float("nan")),
        lambda: Endpoint("/x", weight=0),
        lambda: binance_usdm(base_url="ftp://h"),
        lambda: binance_usdm(base_url="http://h/api"),
        lambda: binance_usdm(mark_interval_s=-1),
        lambda: VenuePoll("nope", "http://h", [Endpoint("/x")], 1, 1.0),
        lambda: VenuePoll("okx", "http://h", [], 1, 1.0),
        lambda: VenuePoll("okx", "http://h", [Endpoint("/x", weight=5)], 4, 1.0),
        lambda: VenuePoll("okx", "http://h", [Endpoint("/x")], 4, 0.0),
        lambda: VenuePoll("okx", "http://h", [Endpoint("/x")], 4, 1.0, jitter=1.0),
        lambda: VenuePoll("okx", "http://h", [Endpoint("/x")], 4, 1.0, backoff_s=2.0, max_backoff_s=1.0),
    ],
)
def test_bad_config_raises_config_error(build: Callable[[], object]) -> None:
    with pytest.raises(ConfigError):
        build()


def test_a_failing_callback_stops_the_poll_and_is_raised(real_data: Path) -> None:
    def on_rows(d: Decoded) -> None:
        raise ValueError("sink is down")

    async def serve() -> None:
        async with Venue(real_data) as venue:
            poller = Poller([binance(venue.base_url, {PREMIUM: 0.02, OPEN_INTEREST: 0.02})], on_rows)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(5.0, stop.set)
            await poller.run(stop)

    with pytest.raises(ValueError, match="sink is down"):
        asyncio.run(serve())
