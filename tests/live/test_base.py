"""The live connector base against a tiny in-test websockets server: backoff schedule, stale ->
reconnect, rate limiter and Retry-After, journal before decode, STATUS rows, thread adapter close."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import websockets

from tapeflow.errors import ConfigError
from tapeflow.live import (
    Backoff,
    Connector,
    ConnectorSettings,
    LiveBatch,
    RawFrame,
    TokenBucket,
    iterate_in_thread,
    retry_after_s,
)
from tapeflow.schemas.records import TRADE
from tapeflow.venues.binance.parse import BinanceDecoder, decode


def trade_frame(i: int) -> str:
    return json.dumps({"stream": "btcusdt@trade", "data": {
        "e": "trade", "s": "BTCUSDT", "t": i, "p": "100.5", "q": "0.25", "m": i % 2 == 0,
        "T": 1_700_000_000_000}})


class TradesClient(Connector):
    """A minimal venue: one URL, the Binance decoder, an app-level ping."""

    default_ping_interval_s = None

    def __init__(self, url: str, **kwargs: object) -> None:
        self.url = url
        self.pings = 0
        self.seen_by_after_frame: list[bytes] = []
        super().__init__(["BTCUSDT"], venue="binance-usdm", **kwargs)  # type: ignore[arg-type]

    def ws_url(self) -> str:
        return self.url

    def subscribe_messages(self) -> list[str]:
        return [json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1})]

    def make_decoder(self) -> BinanceDecoder:
        d = BinanceDecoder()
        d.venues = [self.venue]
        return d

    def ping_message(self) -> str | None:
        return '{"op":"ping"}'

    def after_frame(self, frame: RawFrame) -> None:
        self.seen_by_after_frame.append(frame.data)


@contextlib.asynccontextmanager
async def serve(handler: Callable) -> AsyncIterator[str]:
    async with websockets.serve(handler, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def collect(client: Connector, until: Callable[[list[LiveBatch]], bool],
                  timeout_s: float = 20) -> list[LiveBatch]:
    out: list[LiveBatch] = []

    async def run() -> None:
        async with contextlib.aclosing(client.batches()) as gen:
            async for b in gen:
                out.append(b)
                if until(out):
                    return

    await asyncio.wait_for(run(), timeout_s)
    return out


def states(batches: list[LiveBatch]) -> list[str]:
    return [s for b in batches for s in b.status.column("state").to_pylist()]


def test_backoff_schedule_is_capped_exponential_with_seeded_jitter() -> None:
    b = Backoff(0.5, 8.0, factor=2.0, jitter=0.2, seed=42)
    got = [b.next() for _ in range(7)]
    rng = random.Random(42)
    want = [min(8.0, min(8.0, 0.5 * 2**n) * rng.uniform(0.8, 1.2)) for n in range(7)]
    assert got == want
    assert got[-1] <= 8.0 and got[-2] <= 8.0  # capped, jitter included
    assert 0.4 <= got[0] <= 0.6 and 3.2 <= got[3] <= 4.8
    b.reset()
    assert 0.4 <= b.next() <= 0.6
    a, b2 = Backoff(1, 2, seed=7), Backoff(1, 2, seed=7)
    assert [a.next() for _ in range(3)] == [b2.next() for _ in range(3)]
    with pytest.raises(ConfigError, match="jitter=1.5"):
        Backoff(1, 2, jitter=1.5)


def test_token_bucket_rate_burst_and_retry_after_hold() -> None:
    now = [100.0]
    tb = TokenBucket(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert tb.try_acquire() and tb.try_acquire()
    assert not tb.try_acquire()
    assert tb.delay() == pytest.approx(0.5)
    now[0] += 0.5
    assert tb.try_acquire() and not tb.try_acquire()
    now[0] += 10  # a quiet spell refills only up to the burst
    assert tb.try_acquire() and tb.try_acquire() and not tb.try_acquire()
    now[0] += 10
    tb.hold(3.0)  # HTTP 429 Retry-After: 3
    assert tb.delay() == pytest.approx(3.0)
    assert not tb.try_acquire()
    now[0] += 3.0
    assert tb.try_acquire()
    assert tb.granted == 6 and tb.held == 1
    assert retry_after_s({"Retry-After": "7"}, 1.0) == 7.0
    assert retry_after_s({"retry-after": "soon"}, 1.5) == 1.5
    assert retry_after_s({}, 2.0) == 2.0


def test_frames_are_journaled_before_decoding_and_batches_carry_records(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    sent = 40

    async def handler(ws: websockets.ServerConnection) -> None:
        await ws.recv()  # the subscription
        for i in range(sent):
            await ws.send(trade_frame(i))
        await ws.send(b"{not json")  # bad input: a dead letter, not a crash
        await ws.wait_closed()

    async def main() -> tuple[TradesClient, list[LiveBatch], list[bool]]:
        async with serve(handler) as url:
            client = TradesClient(url, journal=journal_dir, settings=ConnectorSettings(seed=1))
            journaled_first: list[bool] = []
            original = client.after_frame

            def check(frame: RawFrame) -> None:
                # decode happens after the journal write: the frame's bytes are on disk already
                journal = b"".join(p.read_bytes() for p in journal_dir.rglob("*.jsonl"))
                journaled_first.append(frame.data in journal)
                original(frame)

            client.after_frame = check  # type: ignore[method-assign]
            batches = await collect(client, lambda bs: sum(len(b.frames) for b in bs) >= sent + 1)
            return client, batches, journaled_first

    client, batches, journaled_first = asyncio.run(main())
    assert len(journaled_first) == sent + 1 and all(journaled_first)
    trades = [b.get(TRADE) for b in batches]
    assert sum(t.num_rows for t in trades) == sent
    assert [i for t in trades for i in t.column("sequence").to_pylist()] == list(range(sent))
    rejected = [r for b in batches for r in b.records.get("rejected", TRADE.empty_table()).to_pylist()]
    assert len(rejected) == 1 and rejected[0]["reason"] in ("truncated", "bad_json")
    files = list((journal_dir / "binance-usdm").glob("*.jsonl"))
    assert len(files) == 1
    lines = files[0].read_bytes().splitlines()
    assert len(lines) == sent + 1
    assert rejected[0]["location"] == f"{files[0].name}:{sent + 1}"
    # the journal decodes, as a batch, to the trades the client decoded live
    batch_trades = [c.get(TRADE) for c in decode([files[0]])]
    assert sum(t.num_rows for t in batch_trades) == sent
    assert states(batches)[:2] == ["connected", "syncing"]


def test_stale_feed_reconnects_with_backoff_and_status_rows() -> None:
    connections = []

    async def handler(ws: websockets.ServerConnection) -> None:
        connections.append(ws)
        await ws.recv()
        await ws.send(trade_frame(len(connections)))
        await ws.wait_closed()  # silence until then: the client must call it stale

    async def main() -> tuple[TradesClient, list[LiveBatch]]:
        async with serve(handler) as url:
            client = TradesClient(url, settings=ConnectorSettings(
                stale_after_s=0.3, seed=3, backoff_initial_s=0.05, backoff_max_s=0.2, max_connects=3))
            batches = await collect(client, lambda bs: False)
            return client, batches

    client, batches = asyncio.run(main())
    assert client.connects == 3 and len(connections) == 3
    st = states(batches)
    assert st.count("stale") == 3 and st.count("connected") == 3
    assert st[-1] == "disconnected"
    # the connection worked each time (a frame came), so the backoff restarts from its first step
    ref = Backoff(0.05, 0.2, seed=3)
    want = []
    for _ in range(2):
        want.append(ref.next())
        ref.reset()
    assert client.delays_s == want
    assert all(0.04 <= d <= 0.06 for d in want)
    assert sum(b.get(TRADE).num_rows for b in batches) == 3


def test_refused_connections_back_off_exponentially() -> None:
    async def main() -> TradesClient:
        client = TradesClient("ws://127.0.0.1:9", settings=ConnectorSettings(
            seed=5, backoff_initial_s=0.01, backoff_max_s=0.04, backoff_jitter=0.1, max_connects=5))
        await collect(client, lambda bs: False)
        return client

    client = asyncio.run(main())
    ref = Backoff(0.01, 0.04, jitter=0.1, seed=5)
    assert client.delays_s == [pytest.approx(ref.next()) for _ in range(4)]
    assert client.delays_s[-1] <= 0.04


def test_venue_ping_is_sent() -> None:
    got: list[str] = []

    async def handler(ws: websockets.ServerConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for msg in ws:
                got.append(msg)
                await ws.send(trade_frame(len(got)))

    async def main() -> None:
        async with serve(handler) as url:
            client = TradesClient(url, settings=ConnectorSettings(ping_interval_s=0.05, seed=1))
            await collect(client, lambda bs: sum(b.get(TRADE).num_rows for b in bs) >= 4)

    asyncio.run(main())
    assert got[0].startswith('{"method": "SUBSCRIBE"')
    assert got[1:4] == ['{"op":"ping"}'] * 3


def test_rest_429_holds_requests_for_retry_after(tmp_path: Path) -> None:
    from aiohttp import web

    hits: list[float] = []

    async def depth(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        if len(hits) == 1:
            return web.Response(status=429, headers={"Retry-After": "1"},
                                text='{"code":-1003,"msg":"slow down"}')
        return web.json_response({"lastUpdateId": 5, "bids": [["1.0", "2"]], "asks": [["2.0", "1"]]})

    async def handler(ws: websockets.ServerConnection) -> None:
        await ws.wait_closed()

    async def main() -> list[LiveBatch]:
        app = web.Application()
        app.router.add_get("/depth", depth)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with serve(handler) as url:
                client = TradesClient(url, settings=ConnectorSettings(seed=1))
                outer = client

                async def on_open() -> None:
                    assert outer.request_rest("BTCUSDT", f"http://127.0.0.1:{port}/depth",
                                              prefix=b'"symbol":"BTCUSDT",')
                    assert not outer.request_rest("BTCUSDT", f"http://127.0.0.1:{port}/depth")  # in flight

                client.on_open = on_open  # type: ignore[method-assign]
                return await collect(client, lambda bs: any(f.channel == "rest"
                                                            for b in bs for f in b.frames))
        finally:
            await runner.cleanup()

    batches = asyncio.run(main())
    assert len(hits) == 2 and hits[1] - hits[0] >= 0.95  # waited out Retry-After: 1
    rest = [f for b in batches for f in b.frames if f.channel == "rest"]
    assert rest[0].data.startswith(b'{"symbol":"BTCUSDT","lastUpdateId": 5,')
    st = [(s, d) for b in batches for s, d in zip(b.status.column("state").to_pylist(),
                                                   b.status.column("detail").to_pylist(), strict=True)]
    assert any(s == "degraded" and "429" in d for s, d in st)
    snap = [b.records["book_delta"] for b in batches if "book_delta" in b.records]
    assert sum(t.num_rows for t in snap) == 3  # clear + one bid + one ask


def test_thread_adapter_iterates_and_closes_cleanly() -> None:
    stop = threading.Event()
    loop_ready = threading.Event()
    url_box: list[str] = []

    async def handler(ws: websockets.ServerConnection) -> None:
        await ws.recv()
        i = 0
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await ws.send(trade_frame(i))
                i += 1
                await asyncio.sleep(0.001)

    def server() -> None:
        async def main() -> None:
            async with serve(handler) as url:
                url_box.append(url)
                loop_ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)
        asyncio.run(main())

    t = threading.Thread(target=server, daemon=True)
    t.start()
    assert loop_ready.wait(10)
    try:
        client = TradesClient(url_box[0], settings=ConnectorSettings(seed=1))
        it = iterate_in_thread(client, max_pending=2)
        seen = 0
        for batch in it:
            seen += batch.get(TRADE).num_rows
            if seen >= 50:
                break
        assert it.poll(5.0) is not None  # the stream goes on until we close
        it.close(timeout_s=5)
        assert not it.alive
        with pytest.raises(StopIteration):
            next(it)
        assert client.sync.state["BTCUSDT"] == "disconnected"
        assert seen >= 50
    finally:
        stop.set()
        t.join(5)


def test_thread_adapter_hands_a_client_error_to_the_consumer() -> None:
    class Broken(TradesClient):
        def ws_url(self) -> str:
            raise ConfigError("no endpoint configured for venue 'x'")

    it = iterate_in_thread(Broken("ws://unused"))
    with pytest.raises(ConfigError, match="no endpoint configured"):
        for _ in range(100):  # the first batch may not be the error: poll until it comes
            it.poll(5.0)
    with pytest.raises(StopIteration):
        next(it)
    it.close()
    assert not it.alive
