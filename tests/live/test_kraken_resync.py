"""The resubscription logic of the Kraken/Coinbase/OKX clients, without a network."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import orjson
import pytest

from tapeflow.errors import ConfigError
from tapeflow.live.frames import RawFrame
from tapeflow.live.pacing import TokenBucket
from tapeflow.venues.coinbase.client import CoinbaseClient
from tapeflow.venues.kraken.client import KrakenClient
from tapeflow.venues.okx.client import OkxClient
from tapeflow.wire.capture import CaptureLine
from tests.conftest import need
from tests.live.connb_support import received

RATE_PER_S = 10.0


def _deliver(client: KrakenClient, line: CaptureLine) -> None:
    client.decoder.feed(line)
    client.after_frame(RawFrame("kraken", line.recv_ns, line.payload))


def test_breaks_resubscribe_one_pair_each_through_the_rate_limiter(real_data: Path) -> None:
    lines = received(need(real_data / "cryptofeed" / "KRAKEN.ws.50.0"))
    updates = [i for i, ln in enumerate(lines) if b'"c":' in ln.payload]

    async def scenario() -> tuple[list[dict], list[float], KrakenClient, list[str]]:
        client = KrakenClient(["XMR/USD", "SC/EUR"], endpoint="ws://unused", depth=100)
        client.limiter = TokenBucket(RATE_PER_S, 1)  # no burst: one resubscription per 1/RATE_PER_S
        sent: list[dict] = []
        sent_at: list[float] = []

        async def send(message: str) -> None:
            sent.append(json.loads(message))
            sent_at.append(time.monotonic())

        client.send = send  # type: ignore[method-assign]
        for line in lines[:updates[0]]:
            _deliver(client, line)
        # three pairs break in the same instant: corrupt one update of each
        broken: list[str] = []
        for i in updates:
            msg = orjson.loads(lines[i].payload)
            if msg[-1] in broken or len(broken) == 3:
                continue
            broken.append(msg[-1])
            part = next(p for p in msg[1:-2] if "c" in p)
            part["c"] = str((int(part["c"]) + 1) % 2**32)
            _deliver(client, CaptureLine(lines[i].recv_ns, "recv", "", orjson.dumps(msg), f"x:{i}"))
        while client.resubscribes < 3 and len(sent) < 6:
            await asyncio.sleep(0.01)
        return sent, sent_at, client, broken

    sent, sent_at, client, broken = asyncio.run(scenario())
    assert client.resubscribes == 3 and client.limiter.granted == 3
    # per broken pair: unsubscribe then subscribe its book alone, at the client's depth
    pairs = [(a["event"], a["pair"], b["event"], b["pair"])
             for a, b in zip(sent[::2], sent[1::2], strict=True)]
    assert sorted(pairs) == sorted(("unsubscribe", [p], "subscribe", [p]) for p in broken)
    assert all(m["subscription"] == {"name": "book", "depth": 100} for m in sent)
    # the limiter spaced them (a lower bound: a loaded machine only spaces them more)
    starts = sent_at[::2]
    assert all(b - a >= 0.9 / RATE_PER_S for a, b in zip(starts, starts[1:], strict=False))
    states = client.log.drain().column("state").to_pylist()
    assert states.count("checksum_mismatch") == 3 and states.count("resyncing") == 3


def test_no_snapshot_in_time_asks_again_and_a_snapshot_stops_it(real_data: Path) -> None:
    lines = received(need(real_data / "cryptofeed" / "KRAKEN.ws.50.0"))
    snaps = {orjson.loads(ln.payload)[-1]: ln for ln in lines if b'"as":' in ln.payload}

    async def scenario() -> tuple[list[dict], KrakenClient]:
        client = KrakenClient(["XMR/USD"], endpoint="ws://unused")
        client.resync_timeout_s = 0.0
        client.limiter = TokenBucket(1000.0, 10)  # this test is about the timeout, not the rate
        sent: list[dict] = []

        async def send(message: str) -> None:
            sent.append(json.loads(message))

        client.send = send  # type: ignore[method-assign]
        _deliver(client, snaps["XMR/USD"])
        update = next(ln for ln in lines if b'"c":' in ln.payload and b'"XMR/USD"' in ln.payload)
        msg = orjson.loads(update.payload)
        next(p for p in msg[1:-2] if "c" in p)["c"] = "1"
        _deliver(client, CaptureLine(update.recv_ns, "recv", "", orjson.dumps(msg), "x:1"))
        await asyncio.sleep(0.01)
        heartbeat = CaptureLine(update.recv_ns + 1, "recv", "", b'{"event":"heartbeat"}', "x:2")
        _deliver(client, heartbeat)  # past the timeout with no snapshot: ask again
        await asyncio.sleep(0.01)
        _deliver(client, snaps["XMR/USD"])
        _deliver(client, heartbeat)  # synced: nothing more is asked
        await asyncio.sleep(0.01)
        return sent, client

    sent, client = asyncio.run(scenario())
    # one request at the break, one more on the first frame past the timeout, none once synced
    assert client.resubscribes == 2 and len(sent) == 4
    states = client.log.drain().column("state").to_pylist()
    assert states[-2:] == ["synced", "recovered"]


@pytest.mark.parametrize(("client", "expected"), [
    (CoinbaseClient(["BTC-USD"], endpoint="ws://x"),
     [{"type": "unsubscribe", "product_ids": ["BTC-USD"], "channels": ["level2", "matches"]},
      {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["level2", "matches"]}]),
    (OkxClient(["BTC-USDT", "ETH-USDT"], endpoint="ws://x"),
     [{"op": "unsubscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]},
      {"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}]),
])
def test_other_venues_resubscribe_one_book(client: CoinbaseClient | OkxClient, expected: list[dict]) -> None:
    symbol = expected[0].get("product_ids", [None])[0] or expected[0]["args"][0]["instId"]
    assert [json.loads(m) for m in client.resubscribe_messages(symbol)] == expected


@pytest.mark.parametrize(("make", "named"), [
    (lambda: KrakenClient(["XBT/USD"], depth=50), "50"),
    (lambda: CoinbaseClient(["BTC-USD"], book_channel="full"), "'full'"),
    (lambda: OkxClient(["BTC-USDT"], book_channel="books5000"), "'books5000'"),
])
def test_bad_settings_are_config_errors_naming_the_value(make, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        make()


def test_okx_endpoint_gets_the_public_path() -> None:
    assert OkxClient(["BTC-USDT"]).ws_url() == "wss://ws.okx.com:8443/ws/v5/public"
    assert OkxClient(["BTC-USDT"], endpoint="ws://127.0.0.1:9001").ws_url() == "ws://127.0.0.1:9001/ws/v5/public"
    assert OkxClient(["BTC-USDT"], endpoint="ws://h:1/ws/v5/business").ws_url() == "ws://h:1/ws/v5/business"
    assert OkxClient("BTC-USDT, ETH-USDT").symbols == ["BTC-USDT", "ETH-USDT"]
