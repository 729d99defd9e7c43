"""Independent readers of the capture files and a raw websockets client for the replay tests."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import websockets

from tapeflow.live import Connector, LiveBatch

IDLE_S = 1.0  # the tape is done with a connection once it stays silent this long (as fast as possible)
FRAME_TIMEOUT_S = 20.0  # an expected frame that takes longer than this is missing, not slow
EXTRA_S = 0.3  # after the expected frames, listen this long for any frame too many


def cryptofeed_received(path: Path) -> list[bytes]:
    """Payloads of the received-frame lines (``<ts>: <payload>``) of a cryptofeed log, in file order."""
    out = []
    for raw in path.read_bytes().splitlines():
        if raw and raw[:1].isdigit():
            out.append(raw.split(b": ", 1)[1])
    return out


def ns_lines(path: Path, limit: int | None = None) -> list[bytes]:
    """Payloads of ``<recv_ns> <json>`` lines (gzip or not), the first ``limit`` lines."""
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    out = []
    with opener(path, "rb") as fh:
        for i, raw in enumerate(fh):
            if limit is not None and i >= limit:
                break
            out.append(raw.rstrip(b"\n").split(b" ", 1)[1])
    return out


async def drain(ws: Any, *, idle_s: float = IDLE_S, expect: int | None = None,
                done: Callable[[], bool] | None = None, limit_s: float = 120.0) -> list[str]:
    """Text frames: ``expect`` of them (each within ``FRAME_TIMEOUT_S``) plus any that follow
    within ``EXTRA_S``; without ``expect``, every frame until ``idle_s`` of silence or a close.

    ``done`` (e.g. ``lambda: srv.drained``): silence ends the stream only once it says so — on a
    loaded machine the tape can pause longer than ``idle_s`` mid-stream (``limit_s`` in all).
    """
    got: list[str] = []
    deadline = time.monotonic() + limit_s
    try:
        while expect is None or len(got) < expect:
            try:
                got.append(await asyncio.wait_for(ws.recv(), idle_s if expect is None else FRAME_TIMEOUT_S))
            except TimeoutError:
                if expect is not None or done is None or done() or time.monotonic() > deadline:
                    raise
        while True:
            got.append(await asyncio.wait_for(ws.recv(), EXTRA_S))
    except (TimeoutError, websockets.ConnectionClosed):
        pass
    return got


def session(url: str, messages: list[dict | str], *, idle_s: float = IDLE_S, expect: int | None = None,
            done: Callable[[], bool] | None = None) -> list[str]:
    """Connect, send ``messages`` (dicts as JSON), return what came back (handshake included);
    ``done`` as :func:`drain`'s (silence ends the stream only once it says so)."""
    async def go() -> list[str]:
        async with websockets.connect(url, max_size=None) as ws:
            for m in messages:
                await ws.send(m if isinstance(m, str) else json.dumps(m))
            return await drain(ws, idle_s=idle_s, expect=expect, done=done)
    return asyncio.run(go())


def run(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine factory to completion."""
    return asyncio.run(make())


def run_live(client: Connector, done: Callable[[list[bytes]], bool], limit_s: float = 40.0
             ) -> list[LiveBatch]:
    """Run a live venue client until ``done(websocket payloads received so far)`` (or ``limit_s``),
    then close it; every batch it yielded."""
    async def go() -> list[LiveBatch]:
        batches: list[LiveBatch] = []
        received: list[bytes] = []

        async def consume() -> None:
            async for batch in client.batches():
                batches.append(batch)
                received.extend(f.data for f in batch.frames if f.channel == "ws")

        task = asyncio.get_running_loop().create_task(consume())
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and not task.done() and not done(received):
            await asyncio.sleep(0.05)
        client.close()
        await asyncio.wait_for(task, 10)
        return batches
    return asyncio.run(go())
