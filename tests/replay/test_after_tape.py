"""After the tape ends, real clients stay connected and synced: the server keeps sending the
venue's heartbeat (Kraken ``heartbeat``, Coinbase ``heartbeat`` channel) and answering pings
(Bybit, OKX), so a client's stale timer (2 s here) never fires.

The four venues run at once (one server thread each, the clients in one event loop), each
watched for 4.5 s after its tape ended. Without the heartbeats the Kraken and Coinbase clients go
stale 2 s after their last frame and reconnect (``connects == 2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tapeflow.live import Connector, LiveBatch
from tapeflow.live.connector import ConnectorSettings
from tapeflow.replay import ReplayServer
from tapeflow.venues.bybit.client import BybitClient
from tapeflow.venues.coinbase.client import CoinbaseClient
from tapeflow.venues.kraken.client import KrakenClient
from tapeflow.venues.okx.client import OkxClient
from tests.conftest import REPO, need

# longer than STALE_S plus a heartbeat period: a client without beats reconnects; the servers serve
# as fast as the clients read, so nearly all of a run is this watch, and a loaded machine may hold a
# client's pinger back for a ping or two of it
PAST_END_S = 4.5
STALE_S = 2.0
KRAKEN_PAIRS = ["WAVES/EUR", "XMR/USD", "KSM/XBT", "GRT/ETH", "SC/EUR", "ETH/CHF", "OCEAN/XBT", "OMG/USD",
                "XBT/CHF", "ADA/XBT"]
COINBASE_PRODUCTS = ["SKL-USD", "SKL-BTC", "BAND-GBP", "NMR-EUR", "BAND-BTC", "YFI-BTC", "DASH-BTC", "NU-GBP",
                     "CRV-EUR", "SKL-GBP"]
COINBASE_LINES = 3400  # ~11 s of the capture: every product's snapshot and last_match
KRAKEN_BEAT = b'{"event":"heartbeat"}'

Run = dict[str, Any]  # server, client, batches, heartbeats_sent


def _settings(**kw: float) -> ConnectorSettings:
    return ConnectorSettings(seed=2, stale_after_s=STALE_S, backoff_initial_s=0.1, **kw)


async def _watch(srv: ReplayServer, client: Connector) -> Run:
    """Run ``client`` until ``PAST_END_S`` after ``srv``'s tape ended."""
    batches: list[LiveBatch] = []

    async def consume() -> None:
        async for batch in client.batches():
            batches.append(batch)

    task = asyncio.get_running_loop().create_task(consume())
    start, ended = time.monotonic(), None
    while time.monotonic() - start < 30 and not task.done():
        await asyncio.sleep(0.05)
        if ended is None and srv.finished:
            ended = time.monotonic()
        if ended is not None and time.monotonic() - ended >= PAST_END_S:
            break
    sent = srv.heartbeats_sent
    client.close()
    await asyncio.wait_for(task, 10)
    assert ended is not None, f"{srv.format}: the tape never ended"
    return {"server": srv, "client": client, "batches": batches, "heartbeats_sent": sent}


@pytest.fixture(scope="module")
def runs(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    src = need(real_data / "cryptofeed" / "COINBASE.ws.28.0")
    head = tmp_path_factory.mktemp("coinbase") / "COINBASE.ws.28.0.head"
    head.write_text("".join(src.read_text().splitlines(keepends=True)[:COINBASE_LINES]))
    clients: dict[str, tuple[ReplayServer, Callable[[str], Connector]]] = {
        "kraken": (ReplayServer("kraken", [need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")]),
                   lambda url: KrakenClient(KRAKEN_PAIRS, endpoint=url, trades=False, settings=_settings())),
        "coinbase": (ReplayServer("coinbase", [head]),
                     lambda url: CoinbaseClient(COINBASE_PRODUCTS, endpoint=url, settings=_settings())),
        "bybit": (ReplayServer("bybit", [need(real_data / "bybit" / "xrpusdt-ob500.data.zip")]),
                  lambda url: BybitClient(["XRPUSDT"], depth=500, trades=False, endpoint=url,
                                          settings=_settings(ping_interval_s=0.5))),
        "okx": (ReplayServer("okx", [REPO / "tests" / "fixtures" / "okx" / "books_trades.ns.jsonl"]),
                lambda url: OkxClient(["BTC-USDT", "ETH-USDT-SWAP"], endpoint=url,
                                      settings=_settings(ping_interval_s=0.5))),
    }

    async def all_at_once() -> list[Run]:
        return list(await asyncio.gather(*(_watch(srv, make(srv.ws_url)) for srv, make in clients.values())))

    with contextlib.ExitStack() as stack:
        for srv, _ in clients.values():
            stack.enter_context(srv.run_in_thread())
        done = asyncio.run(all_at_once())
    out = dict(zip(clients, done, strict=True))
    out["coinbase"]["capture"] = head
    return out


def _frames(run: Run) -> list[bytes]:
    return [f.data for b in run["batches"] for f in b.frames]


def _states(run: Run) -> list[str]:
    return [s for b in run["batches"] for s in b.status.column("state").to_pylist()]


def test_kraken_client_gets_heartbeats_and_stays_synced_past_the_end(runs: dict[str, Run],
                                                                      real_data: Path) -> None:
    captured_beats = (real_data / "cryptofeed" / "KRAKEN.ws.50.0").read_bytes().count(b": " + KRAKEN_BEAT)
    assert captured_beats == 31
    run = runs["kraken"]
    client = run["client"]
    assert client.connects == 1 and "stale" not in _states(run)
    got = _frames(run)
    extra = got.count(KRAKEN_BEAT) - captured_beats
    # one beat per ~1 s of silence: 2 or more in the 4.5 s (one may be in flight when the client leaves)
    assert 2 <= extra <= run["heartbeats_sent"] and got[-extra:] == [KRAKEN_BEAT] * extra
    # still synced: every checksum of the whole tape verified, nothing waits for a resync
    assert client.stats.breaks == [] and client.stats.checksums_ok == client.stats.checksums > 4000
    assert client.live_sync.broken() == set()


def test_coinbase_heartbeat_channel_carries_the_last_trade_ids(runs: dict[str, Run]) -> None:
    run = runs["coinbase"]
    last_trade: dict[str, int] = {}
    for ln in run["capture"].read_text().splitlines():
        if '"type":"match"' in ln or '"type":"last_match"' in ln:
            msg = json.loads(ln.split(": ", 1)[1])
            last_trade[msg["product_id"]] = max(last_trade.get(msg["product_id"], 0), msg["trade_id"])
    assert sorted(last_trade) == sorted(COINBASE_PRODUCTS)
    client = run["client"]
    assert client.connects == 1 and "stale" not in _states(run) and "gap" not in _states(run)
    beats = [json.loads(f) for f in _frames(run) if b'"type":"heartbeat"' in f]  # none in the capture
    assert len(beats) >= 2 * len(COINBASE_PRODUCTS)
    assert {b["product_id"] for b in beats} == set(COINBASE_PRODUCTS)
    # the beats agree with the trades the client saw: no false gap
    assert all(b["last_trade_id"] == last_trade[b["product_id"]] for b in beats)
    assert client.stats.breaks == [] and client.live_sync.broken() == set()


@pytest.mark.parametrize("venue", ["bybit", "okx"])
def test_pongs_keep_bybit_and_okx_clients_past_the_end(runs: dict[str, Run], venue: str) -> None:
    run = runs[venue]
    got = _frames(run)
    assert run["client"].connects == 1 and "stale" not in _states(run)
    # a ping every 0.5 s: at least 6 pongs in the 4.5 s after the tape (9 pings)
    assert got.count(b"pong") + sum(b'"ret_msg":"pong"' in f for f in got) >= 6
