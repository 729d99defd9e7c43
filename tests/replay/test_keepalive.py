"""Websocket pings as each venue documents them: Binance spot pings every 20 s and cuts a client
that has not answered within a minute, USD-M pings every 3 minutes and waits 10 (aiohttp's own
heartbeat would cut after half the ping period, 10 s). The mechanism runs here scaled down (a
ping every 0.25 s, 1.5 s to answer) with raw aiohttp clients that answer or not.

What a client sees depends on how fast this machine lets it read (pings queue behind book frames,
and the cut is a TCP abort that discards what was not read yet), so the timing claims are the
server's own: who it cut, why, and that the clients that answer were pinged all along."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import aiohttp

from tapeflow.replay import ReplayServer
from tests.conftest import need

SUB = {"event": "subscribe", "pair": ["XBT/CHF"], "subscription": {"name": "book", "depth": 1000}}
WATCH_S = 3.0


async def _client(url: str, answer_after_s: float | None, watch_s: float = WATCH_S) -> tuple[int, bool]:
    """Subscribe and read for ``watch_s``, answering pings only after ``answer_after_s`` (None:
    never); (pings seen, whether the server cut the connection)."""
    loop = asyncio.get_running_loop()
    pings = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(url, autoping=False) as ws:
        await ws.send_str(json.dumps(SUB))
        start = loop.time()
        while (left := start + watch_s - loop.time()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.PING:
                pings += 1
                if answer_after_s is not None and loop.time() - start >= answer_after_s:
                    await ws.pong(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return pings, True
    return pings, False


def test_ping_timeout_cuts_only_a_client_that_stays_silent(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")
    srv = ReplayServer("kraken", [path], ping_interval_s=0.25, pong_timeout_s=1.5)

    async def three() -> list[tuple[int, bool]]:
        # the silent client reads until it is cut (a loaded machine may ping it late: a clean
        # clone's run saw no cut within a fixed 3 s), the others for WATCH_S
        return list(await asyncio.gather(_client(srv.ws_url, None, 30.0), _client(srv.ws_url, 0.0),
                                         _client(srv.ws_url, 0.5)))

    with srv.run_in_thread():
        silent, prompt, late = asyncio.run(three())
        cuts = list(srv.pong_timeouts)
    # never answers: cut (the only cut) 1.5 s after a ping it left unanswered, by the server's own
    # record; the pings it saw are not counted (the abort discards what it had not read yet)
    assert silent[1]
    assert len(cuts) == 1 and cuts[0].endswith("no pong within 1.5 s of a ping")
    # answers every ping, or stays silent 0.5 s (twice the period; aiohttp's own heartbeat cuts at
    # half of it), then answers: both stay for the whole 3 s, pinged all along (12 pings due)
    assert not prompt[1] and prompt[0] >= 6
    assert not late[1] and late[0] >= 6


def test_venue_ping_periods(real_data: Path, tmp_path: Path) -> None:
    spot = ReplayServer("binance", [need(real_data / "cryptofeed" / "BINANCE.ws.1.0")])
    assert spot.adapter.ws_keepalive("/stream") == (20.0, 60.0)
    src = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    head = tmp_path / "head.gz"
    with gzip.open(src, "rb") as fh, gzip.open(head, "wb") as out:
        out.writelines(line for _, line in zip(range(200), fh, strict=False))
    assert ReplayServer("binance", [head]).adapter.ws_keepalive("/stream") == (180.0, 600.0)
    # the other venues send no websocket pings (their clients ping, the server answers)
    kraken = ReplayServer("kraken", [need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")])
    assert kraken.adapter.ws_keepalive("/") == (None, None)
