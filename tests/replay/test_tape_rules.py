"""When the tape moves and what a fault index means, with raw and real clients (the bugs the
connector rooms found: a stall or disconnect let the tape run to its end into a dead connection;
a subscription sent a little later missed the start of the tape; a negotiated permessage-deflate)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest
import websockets

from tapeflow.live.connector import ConnectorSettings
from tapeflow.replay import ReplayServer
from tapeflow.venues.kraken.client import KrakenClient
from tests.conftest import need
from tests.replay.helpers import FRAME_TIMEOUT_S, cryptofeed_received, drain, run_live
from tests.replay.test_snapshots import _kraken_crc

PAIRS = ["WAVES/EUR", "XMR/USD", "KSM/XBT", "GRT/ETH", "SC/EUR", "ETH/CHF", "OCEAN/XBT", "OMG/USD", "XBT/CHF",
         "ADA/XBT"]
HEARTBEAT = b'{"event":"heartbeat"}'


@pytest.fixture(scope="module")
def kraken(real_data: Path) -> tuple[list[Path], list[bytes], list[str]]:
    """Both Kraken captures (trades, book-1000) and, read here from the files, the frames the server
    queues for a client of every pair's book and trades: the data arrays and heartbeats of both
    files merged by capture time (the earlier file first on a tie), with their ``file:line``."""
    paths = [need(real_data / "cryptofeed" / name) for name in ("KRAKEN.ws.48.0", "KRAKEN.ws.50.0")]
    rows = []
    for rank, path in enumerate(paths):
        for number, raw in enumerate(path.read_bytes().splitlines(), 1):
            if raw[:1].isdigit():
                ts, payload = raw.split(b": ", 1)
                if payload.startswith(b"[") or payload == HEARTBEAT:
                    rows.append((Decimal(ts.decode()), rank, number, payload, f"{path.name}:{number}"))
    rows.sort(key=lambda r: r[:3])
    assert len(rows) == 4348
    return paths, [r[3] for r in rows], [r[4] for r in rows]


def _kraken_client(srv: ReplayServer, **settings: float) -> KrakenClient:
    return KrakenClient(PAIRS, endpoint=srv.ws_url, settings=ConnectorSettings(seed=1, **settings))


def _data(received: list[bytes]) -> list[bytes]:
    """Tape frames and synthesized snapshots a Kraken client received (no handshake replies, pongs)."""
    return [p for p in received if p.startswith(b"[") or p == HEARTBEAT]


def _split_snapshots(frames: list[bytes], tape: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(frames that are not on the tape: synthesized snapshots, the rest)."""
    on_tape = set(tape)
    return [f for f in frames if f not in on_tape], [f for f in frames if f in on_tape]


def _session_ends(batches: list) -> list[tuple[str, str]]:
    """Why each session ended (the STATUS rows' state and detail), for a failure message."""
    ends = []
    for b in batches:
        for row in b.status.to_pylist():
            if row["state"] in ("stale", "disconnected") and (row["state"], row["detail"]) not in ends[-1:]:
                ends.append((row["state"], row["detail"]))
    return ends


def test_stall_then_reconnect_gets_a_snapshot_and_the_rest_of_the_tape(kraken) -> None:
    paths, tape, locations = kraken
    # no venue heartbeats after the tape: a client starved past the server's 1 s idle period got
    # them in the batch that held the tape's last frames, two frames more than the tape (a loaded run)
    srv = ReplayServer("kraken", paths, faults=["stall@2500:20s"], heartbeat_after_end=False)
    with srv.run_in_thread():
        # the stale timer fires during the 20 s stall: the client reconnects, which ends the stall.
        # 3 s, not 1 s: the tape is served unpaced, so only a starved process sees a 1 s silence
        # outside the stall (a loaded clean-clone run reconnected 10 times at 1 s, about one
        # reconnect per 2 s of the stall: each new connection went stale before tape reached it)
        client = _kraken_client(srv, stale_after_s=3.0, backoff_initial_s=0.1)
        batches = run_live(client, lambda got: len(_data(got)) >= len(tape) - 1 + len(PAIRS))
    assert [(i.kind, i.index, i.location) for i in srv.injected] == [("stall", 2500, locations[2500])]
    assert client.connects == 2, _session_ends(batches)
    assert srv.finished and srv.frames_served == len(tape) - 1  # all but the frame the stall held
    got = _data([f.data for b in batches for f in b.frames if f.channel == "ws"])
    assert got[:2500] == tape[:2500]
    snapshots, rest = _split_snapshots(got[2500:], tape)
    assert len(snapshots) == len(PAIRS) and all(b'"as":' in s for s in snapshots)
    assert got[2500:2500 + len(PAIRS)] == snapshots  # the snapshots first, then the tape from 2501
    assert rest == tape[2501:]
    # the snapshots are the books at frame 2500: every checksum of a synced book verifies
    assert client.stats.breaks == [] and client.stats.checksums_ok == client.stats.checksums > 4000
    assert client.stats.snapshots == 2 * len(PAIRS)


def test_fault_index_is_the_frame_in_tape_order_after_a_disconnect(kraken) -> None:
    paths, tape, locations = kraken
    # the drop hits a heartbeat: no book breaks, so no resubscription changes what is received
    drop = next(i for i in range(3000, len(tape)) if tape[i] == HEARTBEAT)
    runs = []
    for _ in range(2):
        srv = ReplayServer("kraken", paths, faults=["disconnect@1500", f"drop@{drop}"],
                           heartbeat_after_end=False)  # drained until silent
        with srv.run_in_thread():
            client = _kraken_client(srv, backoff_initial_s=0.1)
            batches = run_live(client, lambda got: len(_data(got)) >= len(tape) - 2 + len(PAIRS))
        runs.append(([(i.kind, i.index, i.location) for i in srv.injected], srv.frames_served,
                     _data([f.data for b in batches for f in b.frames if f.channel == "ws"])))
    assert runs[0] == runs[1]
    injected, served, got = runs[0]
    # index N is the N-th frame queued in tape order, counted whether or not it was written
    assert injected == [("disconnect", 1500, locations[1500]), ("drop", drop, locations[drop])]
    assert served == len(tape) - 2
    assert got[:1500] == tape[:1500]
    snapshots, rest = _split_snapshots(got[1500:], tape)
    assert got[1500:1500 + len(PAIRS)] == snapshots and len(snapshots) == len(PAIRS)
    assert rest == tape[1501:drop] + tape[drop + 1:]


def test_disconnect_as_fast_as_possible_leaves_the_rest_of_the_tape(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")
    expected = [f for f in cryptofeed_received(path)
                if f.endswith(b',"book-1000","XBT/CHF"]') or f == HEARTBEAT]
    sub = {"event": "subscribe", "pair": ["XBT/CHF"], "subscription": {"name": "book", "depth": 1000}}

    # the whole capture fits in one connection's queue: before, it all went to the cut connection
    srv = ReplayServer("kraken", [path], faults=["disconnect@100"], heartbeat_after_end=False)

    async def go(url: str) -> list[list[str]]:
        runs = []
        for _ in range(2):
            async with websockets.connect(url, max_size=None) as ws:
                await ws.send(json.dumps(sub))
                runs.append(await drain(ws, done=lambda: srv.drained))
        return runs

    with srv.run_in_thread():
        first, second = asyncio.run(go(srv.ws_url))
    assert [f.encode() for f in first[2:]] == expected[:100]
    assert json.loads(second[2])[1].keys() == {"as", "bs"}  # systemStatus, subscriptionStatus, snapshot
    assert [f.encode() for f in second[3:]] == expected[101:]
    assert srv.frames_served == len(expected) - 1


def test_tape_starts_when_the_handshake_is_quiet_for_settle_s(kraken) -> None:
    paths, tape, _ = kraken
    subs = [{"event": "subscribe", "pair": PAIRS[:5], "subscription": {"name": "book", "depth": 1000}},
            {"event": "subscribe", "pair": PAIRS, "subscription": {"name": "trade"}},
            {"event": "subscribe", "pair": PAIRS[5:], "subscription": {"name": "book", "depth": 1000}}]

    async def go(url: str) -> list[str]:
        async with websockets.connect(url, max_size=None) as ws:
            for sub in subs:  # 0.2 s apart: the last one lands 0.4 s after the first
                await ws.send(json.dumps(sub))
                await asyncio.sleep(0.2)
            return await drain(ws, expect=1 + 2 * len(PAIRS) + len(tape))

    srv = ReplayServer("kraken", paths, settle_s=0.3)
    with srv.run_in_thread():
        got = asyncio.run(go(srv.ws_url))
    # every frame from the start, no snapshot: the tape waited 0.3 s after the last subscribe
    assert [g.encode() for g in got if g.startswith("[") or g == HEARTBEAT.decode()] == tape
    assert srv.frames_served == len(tape)


def test_a_later_subscription_on_a_moving_tape_gets_a_snapshot(kraken) -> None:
    paths, tape, _ = kraken
    book = [f for f in tape if f.endswith(b',"book-1000","XBT/CHF"]')]
    other = [f for f in tape if f.endswith(b',"book-1000","ETH/CHF"]')]

    async def go(url: str) -> tuple[list[str], list[str]]:
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(json.dumps({"event": "subscribe", "pair": ["XBT/CHF"],
                                      "subscription": {"name": "book", "depth": 1000}}))
            # exactly 152 frames (no listening on), ~64% into the tape
            before = [await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT_S) for _ in range(2 + 150)]
            await ws.send(json.dumps({"event": "subscribe", "pair": ["ETH/CHF"],
                                      "subscription": {"name": "book", "depth": 1000}}))
            return before, await drain(ws, done=lambda: srv.drained)

    # drained until silent (no heartbeats after the tape). Paced at 3x (the 30 s capture in ~10 s):
    # as fast as possible, the small book frames the queue lets through sit in the sockets'
    # buffers, so the tape can reach its end before a loaded client sends the second subscription
    # (a clean clone saw it come after the last ETH/CHF frame)
    srv = ReplayServer("kraken", paths, queue_frames=5, heartbeat_after_end=False, speed=3.0)
    with srv.run_in_thread():
        before, after = asyncio.run(go(srv.ws_url))
    ours = [a.encode() for a in after if a.endswith('"ETH/CHF"]')]
    snapshot = json.loads(ours[0])
    assert snapshot[1].keys() == {"as", "bs"}
    k = len(other) - (len(ours) - 1)
    assert 1 < k < len(other) and ours[1:] == other[k:]  # then the pair's frames from where it stands
    # it is the book Kraken hashed last before that point
    last_c = next(json.loads(f)[-3]["c"] for f in reversed(other[:k]) if b'"c":"' in f)
    asks = {p: v for p, v, _ in snapshot[1]["as"]}
    bids = {p: v for p, v, _ in snapshot[1]["bs"]}
    assert _kraken_crc(asks, bids) == int(last_c)
    # the first subscription went on untouched
    xbt = [f.encode() for f in before + after if f.endswith('"XBT/CHF"]')]
    assert xbt == book


def test_compressed_connection_gets_every_frame(real_data: Path) -> None:
    import zipfile

    zpath = need(real_data / "bybit" / "xrpusdt-ob500.data.zip")
    with zipfile.ZipFile(zpath) as zf:
        v5 = [ln for m in zf.namelist() for ln in zf.read(m).splitlines() if ln.strip()]
    sub = {"op": "subscribe", "args": ["orderbook.500.XRPUSDT"]}

    async def go(url: str) -> tuple[list[list[str]], list[str]]:
        runs, extensions = [], []
        for _ in range(2):
            async with websockets.connect(url + "/v5/public/linear", max_size=None,
                                          compression="deflate") as ws:
                extensions.append(type(ws.protocol.extensions[0]).__name__ if ws.protocol.extensions else "")
                await ws.send(json.dumps(sub))
                runs.append(await drain(ws, idle_s=FRAME_TIMEOUT_S if not runs else 1.0))
        return runs, extensions

    for compress in (True, False):
        srv = ReplayServer("bybit", [zpath], compress=compress, faults=["disconnect@30"])
        with srv.run_in_thread():
            (first, second), extensions = asyncio.run(go(srv.ws_url))
        assert extensions == ["PerMessageDeflate" if compress else ""] * 2
        assert len(v5[0]) > 5000  # the snapshot: big enough that aiohttp compresses it off the loop
        assert [f.encode() for f in first[1:]] == v5[:30]
        assert json.loads(second[1])["type"] == "snapshot"
        assert [f.encode() for f in second[2:]] == v5[31:]
        assert srv.frames_served == len(v5) - 1


def test_an_unexpected_send_error_cuts_the_connection_and_the_tape_waits(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")
    expected = [f for f in cryptofeed_received(path)
                if f.endswith(b',"book-1000","XBT/CHF"]') or f == HEARTBEAT]
    sub = {"event": "subscribe", "pair": ["XBT/CHF"], "subscription": {"name": "book", "depth": 1000}}
    srv = ReplayServer("kraken", [path], queue_frames=10, heartbeat_after_end=False)
    make_session, rendered = srv.adapter.session, []

    def session(connection: int):  # a session that fails to render its connection's 11th frame
        s = make_session(connection)
        render = s.render

        def failing(frame):
            rendered.append(connection)
            if rendered.count(1) == 11 and connection == 1:
                raise ValueError("cannot render")
            return render(frame)
        s.render = failing
        return s

    srv.adapter.session = session

    async def go(url: str) -> list[list[str]]:
        runs = []
        for _ in range(2):
            async with websockets.connect(url, max_size=None) as ws:
                await ws.send(json.dumps(sub))
                runs.append(await drain(ws))
        return runs

    with srv.run_in_thread():
        first, second = asyncio.run(go(srv.ws_url))
        status = srv.status()
    assert [f.encode() for f in first[2:]] == expected[:10]  # then cut, as on a disconnect
    assert status["send_errors"] == ["connection 1: ValueError: cannot render"]
    # the tape did not run on into the dead connection: the next one gets a snapshot and the rest
    assert json.loads(second[2])[1].keys() == {"as", "bs"}
    later = [f.encode() for f in second[3:]]
    k = len(expected) - len(later)
    assert 10 < k < 40 and later == expected[k:]
