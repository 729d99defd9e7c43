"""The connector's awake stamps (``ConnectorSettings.awake_interval_s``, ``LiveBatch.awake_ns``) on a
real connection: a replay server whose tape stalls, and the connector's event loop blocked for a while
(what a starved process does to it)."""

from __future__ import annotations

import threading
import time

from tapeflow.live import ConnectorSettings, iterate_in_thread
from tapeflow.replay import ReplayServer
from tapeflow.venues.sim.client import SimClient
from tests.flows.flowdata import sim_market

SECOND = 1_000_000_000


def test_a_quiet_connection_says_it_was_read_and_a_blocked_loop_says_nothing() -> None:
    files = sim_market(4 * SECOND)
    settings = ConnectorSettings(seed=1, stale_after_s=30, awake_interval_s=0.02)
    blocked: list[int] = []

    def block() -> None:  # runs on the connector's loop: nothing of it runs meanwhile
        blocked.append(time.time_ns())
        time.sleep(0.4)
        blocked.append(time.time_ns())

    with ReplayServer("sim", list(files), speed=8, faults=["stall@200:1500ms"]).run_in_thread() as server:
        feed = iterate_in_thread(SimClient("*", endpoint=server.ws_url, settings=settings))
        batches = []
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                got = feed.poll(0.05)
                if got is None:
                    continue
                batches.append(got)
                if got.empty and not blocked and server.injected:  # in the stall: block the loop once
                    feed._loop.call_soon_threadsafe(block)
                if len(blocked) == 2 and got.empty and got.awake_ns > blocked[1] + SECOND // 5:
                    break
        finally:
            threading.Thread(target=feed.close, daemon=True).start()
    assert len(blocked) == 2, "the stall never came"
    stamps = [b.awake_ns for b in batches]
    # every batch says when its connection was read, never before its own frames, never backwards
    assert all(s >= 0 for s in stamps) and stamps == sorted(stamps)
    assert all(b.awake_ns >= max(f.ts_recv_ns for f in b.frames) for b in batches if b.frames)
    # a quiet connection hands on empty batches (the stall), each a later stamp
    quiet = [b for b in batches if b.empty]
    assert len(quiet) >= 10 and len({b.awake_ns for b in quiet}) == len(quiet)
    # nothing stamped while the loop could not run
    assert not [s for s in stamps if blocked[0] < s < blocked[1]]
    # and it stamps again once it runs
    assert any(s > blocked[1] for s in stamps)
