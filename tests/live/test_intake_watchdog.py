"""The stale watchdog calls a feed stale only when the reader had its turn and still got nothing:
a loop blocked past the deadline (a long batch, a starved CPU) while a frame was waiting is not a
silent venue (a clean-clone CI run reconnected a Kraken client 28 times in a row that way)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import WSMsgType

from tapeflow.live.connector import ConnectorSettings
from tapeflow.live.intake import FrameIntake, SessionEnd
from tapeflow.live.sync import STALE

STALE_S = 0.3


class _Msg:
    def __init__(self, kind: WSMsgType, data: bytes = b"") -> None:
        self.type, self.data, self.extra = kind, data, None


class _Socket:
    """A websocket whose first frame arrives when the test says so; then it closes."""

    def __init__(self) -> None:
        self.first: asyncio.Future[_Msg] = asyncio.get_running_loop().create_future()
        self.calls = 0
        self.close_code = 1000

    async def receive(self) -> _Msg:
        self.calls += 1
        if self.calls == 1:
            return await self.first
        await asyncio.sleep(10)  # silent afterwards: the watchdog's business
        return _Msg(WSMsgType.CLOSED)

    def exception(self) -> None:
        return None


class _Intake(FrameIntake):
    def __init__(self, stale_s: float) -> None:
        self.settings = ConnectorSettings(stale_after_s=stale_s)
        self.venue = "test"
        self.frames_received = 0
        self._pending = []
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._last_frame_s = 0.0


def _ends(intake: _Intake) -> list[SessionEnd]:
    return [f for f in intake._pending if type(f) is SessionEnd]


def test_a_frame_waiting_when_the_blocked_loop_resumes_is_not_staleness() -> None:
    async def go() -> _Intake:
        loop = asyncio.get_running_loop()
        intake, ws = _Intake(STALE_S), _Socket()
        reader = loop.create_task(intake._reader(ws))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the reader starts, arms the watchdog and waits for its first frame
        # the frame lands just after the watchdog's deadline; the loop is blocked past both, so the
        # watchdog's timer and the frame's delivery run in the same turn, the watchdog's first
        loop.call_at(loop.time() + STALE_S + 0.05, ws.first.set_result, _Msg(WSMsgType.TEXT, b"{}"))
        loop.call_soon(time.sleep, STALE_S + 0.3)
        await asyncio.sleep(STALE_S + 0.5)
        reader.cancel()
        return intake

    intake = asyncio.run(go())
    assert intake.frames_received == 1
    assert _ends(intake) == [], [e.detail for e in _ends(intake)]


def test_a_silent_feed_is_still_stale_after_the_deadline() -> None:
    async def go() -> tuple[_Intake, float]:
        intake, ws = _Intake(STALE_S), _Socket()
        start = time.monotonic()
        reader = asyncio.get_running_loop().create_task(intake._reader(ws))  # type: ignore[arg-type]
        while not _ends(intake):
            await asyncio.sleep(0.01)
        took_s = time.monotonic() - start
        reader.cancel()
        return intake, took_s

    intake, took_s = asyncio.run(go())
    assert [e.state for e in _ends(intake)] == [STALE]
    assert intake.frames_received == 0
    assert took_s >= STALE_S
