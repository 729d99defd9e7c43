"""Binance spot REST depth on the replay server: the captured snapshot before the tape reaches it, the
rebuilt book after (spot sync rule), unknown symbols, and HTTP 429 + Retry-After rate limiting."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websockets

from tapeflow.replay import ReplayServer
from tests.conftest import need
from tests.replay.helpers import cryptofeed_received, drain


def _get(url: str) -> Any:
    return json.loads(urllib.request.urlopen(url).read())


def _book(levels: list[list[str]]) -> dict[Decimal, Decimal]:
    return {Decimal(p): Decimal(q) for p, q in levels if Decimal(q) != 0}


def _apply(diff: dict[str, Any], bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> None:
    for side, book in (("b", bids), ("a", asks)):
        for p, q in diff[side]:
            if Decimal(q) == 0:
                book.pop(Decimal(p), None)
            else:
                book[Decimal(p)] = Decimal(q)


@pytest.fixture(scope="module")
def spot(real_data: Path) -> tuple[Path, Path]:
    folder = real_data / "cryptofeed"
    return need(folder / "BINANCE.ws.1.0"), need(folder / "BINANCE.http.0.0")


def test_spot_snapshot_follows_the_stream(spot: tuple[Path, Path]) -> None:
    ws_path, http_path = spot
    http_line = next(ln for ln in http_path.read_bytes().splitlines() if b"symbol=NKNUSDT" in ln)
    captured_snapshot = json.loads(http_line.split(b": ", 1)[1])
    diffs = [json.loads(f)["data"] for f in cryptofeed_received(ws_path)
             if f.startswith(b'{"stream":"nknusdt@depth@100ms"')]
    # the whole capture, rebuilt here with the spot rule from the captured snapshot
    bids, asks = _book(captured_snapshot["bids"]), _book(captured_snapshot["asks"])
    for d in diffs:
        if d["u"] > captured_snapshot["lastUpdateId"]:
            _apply(d, bids, asks)
    read_first = 20

    async def client(srv: ReplayServer) -> tuple[Any, list[str], Any]:
        url = srv.rest_url + "/api/v3/depth?symbol=NKNUSDT&limit=5000"
        before = await asyncio.to_thread(_get, url)  # no subscriber yet: the tape has not moved
        async with websockets.connect(srv.ws_url + "/stream?streams=nknusdt@depth@100ms") as ws:
            first = await drain(ws, expect=read_first)
            assert len(first) == read_first  # frame 20 is held back by the stall
            snap = await asyncio.to_thread(_get, url)
            return before, first + await drain(ws, expect=len(diffs) - read_first), snap

    with ReplayServer("binance", [ws_path, http_path], faults=["stall@20:3s"], queue_frames=2
                      ).run_in_thread() as srv:
        before, got, snap = asyncio.run(client(srv))
    assert before == captured_snapshot  # served as captured while the tape is behind it
    served = [json.loads(g)["data"] for g in got]
    assert served == diffs
    last_id = snap["lastUpdateId"]
    assert set(snap) == {"lastUpdateId", "bids", "asks"}
    live_bids, live_asks = _book(snap["bids"]), _book(snap["asks"])
    applied, prev_u = 0, None
    for d in served:
        if d["u"] <= last_id:
            continue
        assert d["U"] == last_id + 1 if prev_u is None else d["U"] == prev_u + 1
        _apply(d, live_bids, live_asks)
        prev_u, applied = d["u"], applied + 1
    assert 0 < applied < len(diffs) - read_first  # taken mid-stream, past what the client had read
    assert live_bids == bids and live_asks == asks


def test_limit_unknown_symbol_and_rate_limit(spot: tuple[Path, Path]) -> None:
    with ReplayServer("binance", list(spot), rest_limit=(3, 60.0)).run_in_thread() as srv:
        top = _get(srv.rest_url + "/api/v3/depth?symbol=nknusdt&limit=5")
        assert len(top["bids"]) == 5 and len(top["asks"]) == 5
        assert Decimal(top["bids"][0][0]) > Decimal(top["bids"][1][0])
        assert Decimal(top["asks"][0][0]) < Decimal(top["asks"][1][0])
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(srv.rest_url + "/api/v3/depth?symbol=DOGEUSDT")
        assert err.value.code == 400 and json.loads(err.value.read())["code"] == -1121
        _get(srv.rest_url + "/fapi/v1/depth?symbol=BLZETH")  # the third request in the window
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(srv.rest_url + "/api/v3/depth?symbol=NKNUSDT")
        assert err.value.code == 429
        assert 1 <= int(err.value.headers["Retry-After"]) <= 60
        assert json.loads(err.value.read())["code"] == -1003
        # the control endpoints are never rate limited
        assert _get(srv.rest_url + "/_replay/status")["format"] == "binance"
