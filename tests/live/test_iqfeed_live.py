"""IQFeedClient end to end through the IQConnect replay server (loopback TCP) on a session made of
the real NEPT lookup ticks: live == a batch decode of its journal, and == the ticks themselves."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.cli import main
from tapeflow.journal import Journal
from tapeflow.live.connector import ConnectorSettings
from tapeflow.replay.lines import LineReplayServer, serves_lines
from tapeflow.schemas.records import F_MAYBE_BAD_BOOK, TRADE
from tapeflow.storage import lake
from tapeflow.venues.base import merge
from tapeflow.venues.iqfeed.client import IQFeedClient, lookup
from tapeflow.venues.iqfeed.parse import decode, decode_all
from tapeflow.venues.iqfeed.session import write_l1_session
from tests.conftest import REPO, need

TRADES = 1500
KEYS = ["ts_event_ns", "sequence", "trade_id", "price_nanos", "size_nanos", "aggressor_side"]


@pytest.fixture(scope="module")
def ticks(real_data: Path) -> Path:
    return need(real_data / "iqfeed" / "NEPT_ticks_newest.zip")


@pytest.fixture(scope="module")
def session(ticks: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("iqfeed") / "NEPT_l1_session.capture"
    assert write_l1_session([ticks], path, limit=TRADES) == TRADES
    return path


async def _live(paths: list[Path], journal: Path, *, symbols: list[str], expect: int,
                disconnect_after: int | None = None) -> tuple[list, LineReplayServer, IQFeedClient]:
    async with LineReplayServer("iqfeed", paths, disconnect_after=disconnect_after, settle_s=0.05) as srv:
        client = IQFeedClient(symbols, endpoint=srv.addresses["level1"], journal=journal,
                              settings=ConnectorSettings(seed=1, stale_after_s=5.0, backoff_initial_s=0.05,
                                                         max_connects=5))
        batches, trades = [], 0

        async def consume() -> None:
            nonlocal trades
            async for batch in client.batches():
                batches.append(batch)
                trades += batch.records["trade"].num_rows if "trade" in batch.records else 0
                if trades >= expect and srv.finished and not client._closing:
                    client.close()

        await asyncio.wait_for(consume(), 60)
        return batches, srv, client


def _records(batches: list) -> dict[str, pa.Table]:
    out: dict[str, list[pa.Table]] = {}
    for b in batches:
        for name, table in b.records.items():
            out.setdefault(name, []).append(table)
    return {name: pa.concat_tables(parts) for name, parts in out.items()}


def _expected_trades(ticks: Path) -> list[dict]:
    trades = decode_all([ticks])["trade"].sort_by([("ts_event_ns", "ascending"), ("sequence", "ascending")])
    return trades.slice(0, TRADES).select(KEYS).to_pylist()


def test_iqfeed_is_served_over_lines() -> None:
    assert serves_lines("iqfeed") and not serves_lines("kraken")


def test_live_equals_the_journal_and_the_ticks(session: Path, ticks: Path, tmp_path: Path) -> None:
    batches, srv, client = asyncio.run(_live([session, ticks], tmp_path / "journal", symbols=["NEPT"],
                                             expect=TRADES))
    live = _records(batches)
    assert live["trade"].select(KEYS).to_pylist() == _expected_trades(ticks)
    journal = Journal(tmp_path / "journal").files("iqfeed")
    assert journal
    batch = merge(list(decode(journal)))
    assert batch["trade"].num_rows == TRADES
    for name in ("trade", "quote"):
        assert batch[name].equals(live[name]), name  # live == batch, row for row
    assert client.connects == 1 and srv.frames_served == len(srv.tape)
    assert "rejected" not in live


def test_reconnect_watches_again_and_loses_nothing(session: Path, ticks: Path, tmp_path: Path) -> None:
    batches, srv, client = asyncio.run(_live([session], tmp_path / "journal", symbols=["NEPT"], expect=TRADES,
                                             disconnect_after=600))
    assert srv.disconnects == 1 and client.connects == 2
    states = [row["state"] for b in batches for row in b.status.to_pylist()]
    assert "disconnected" in states and states.count("connected") >= 2
    live = _records(batches)
    assert live["trade"].select(KEYS).to_pylist() == _expected_trades(ticks)


def test_unknown_symbol_is_a_venue_error_and_heartbeats_keep_the_feed_fresh(session: Path) -> None:
    async def run() -> tuple[list, IQFeedClient]:
        async with LineReplayServer("iqfeed", [session], settle_s=0.05) as srv:
            client = IQFeedClient(["NEPT", "ZZZZ"], endpoint=srv.addresses["level1"],
                                  settings=ConnectorSettings(seed=1, stale_after_s=5.0))
            batches: list = []

            async def consume() -> None:
                async for batch in client.batches():
                    batches.append(batch)
                    beats = sum(1 for b in batches for f in b.frames if f.data.startswith(b"T,"))
                    if srv.finished and beats >= 2:
                        client.close()

            await asyncio.wait_for(consume(), 30)
            return batches, client

    batches, client = asyncio.run(run())
    live = _records(batches)
    reject = live["rejected"].to_pylist()
    assert [(r["reason"], r["symbol"]) for r in reject] == [("venue_error", "ZZZZ")]
    assert live["trade"].num_rows == TRADES and client.connects == 1  # the T heartbeats: no stale reconnect


def test_lookup_port_answers_with_request_ids(ticks: Path, tmp_path: Path) -> None:
    async def run() -> list[bytes]:
        async with LineReplayServer("iqfeed", [ticks]) as srv:
            return await lookup(srv.addresses["lookup"], "HTX,NEPT,100,1,req9")

    lines = asyncio.run(run())
    assert len(lines) == 101 and lines[-1] == b"req9,LH,!ENDMSG!,"
    assert all(line.startswith(b"req9,LH,2021-03-0") for line in lines[:-1])
    path = tmp_path / "NEPT_ticks_lookup.txt"
    path.write_bytes(b"".join(line + b"\r\n" for line in lines))
    got = decode_all([path])
    assert "rejected" not in got
    first = decode_all([ticks])["trade"].slice(0, 100)
    assert got["trade"].select(KEYS).equals(first.select(KEYS))


class _ServerThread:
    """A LineReplayServer on its own event loop in a thread (the flow runs in this one)."""

    def __init__(self, srv: LineReplayServer) -> None:
        self.srv = srv
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = threading.Event()

    def _run(self) -> None:
        self.loop.run_until_complete(self.srv.start())
        self.started.set()
        self.loop.run_forever()

    def __enter__(self) -> LineReplayServer:
        self.thread.start()
        assert self.started.wait(30)
        return self.srv

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.srv.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_tapeflow_live_over_the_replay_server_equals_the_batch_decode(
        session: Path, ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # no heartbeats: the feed goes silent after its tape and the flow stops 3 s later
    with _ServerThread(LineReplayServer("iqfeed", [session], settle_s=0.05, heartbeats=False)) as srv:
        rc = main(["live", "--venue", "iqfeed", "--symbols", "NEPT", "--endpoint", srv.addresses["level1"],
                   "--idle-exit", "3s", "--duration", "120s", "--lake", str(tmp_path / "lake"),
                   "--no-clickhouse", "--journal", str(tmp_path / "journal"), "--clock", "relative",
                   "--bars", "1s"])
        assert rc == 0 and srv.finished
    order = [("ts_event_ns", "ascending"), ("sequence", "ascending")]
    live = lake.read(TRADE, tmp_path / "lake").sort_by(order)
    batch = decode_all(Journal(tmp_path / "journal").files("iqfeed"))["trade"].sort_by(order)
    assert live.num_rows == batch.num_rows == TRADES
    # the lake's rows are the journal's decode, but for the live health flag: a session of hours of
    # ticks served in a second makes the latency breaker call the feed degraded (live-only bit)
    for name in TRADE.column_names:
        if name != "flags":
            assert live.column(name).equals(batch.column(name)), name
    flags = pc.bit_wise_and(live.column("flags"), pa.scalar(~F_MAYBE_BAD_BOOK & 0xFF, pa.uint8()))
    assert flags.to_pylist() == batch.column("flags").to_pylist()
    assert batch.select(KEYS).to_pylist() == _expected_trades(ticks)


def test_level2_market_by_order_session(real_data: Path, tmp_path: Path) -> None:
    """The real Level 2 lines (market by order and by price, MD01 quotes) as a recorded session:
    served on the Level 2 port to a ``WOR`` watch, decoded live as the batch decode of the lines."""
    lines = need(real_data / "iqfeed" / "iqfeed_protocol_lines_from_unit_tests.txt").read_bytes().splitlines()
    level2 = [line for line in lines if line[:1] in b"23456789Z" and line[1:2] == b","]
    capture = tmp_path / "l2.capture"
    start_ns = 1_700_000_000_000_000_000
    capture.write_bytes(b"".join(b"%d %s\n" % (start_ns + i, line) for i, line in enumerate(level2)))
    expected = decode_all([capture])

    async def run() -> list:
        async with LineReplayServer("iqfeed", [capture], settle_s=0.05) as srv:
            client = IQFeedClient(["@ESM19", "@ES#"], level2_endpoint=srv.addresses["level2"], level1=False,
                                  journal=tmp_path / "journal", settings=ConnectorSettings(seed=1))
            batches: list = []

            async def consume() -> None:
                async for batch in client.batches():
                    batches.append(batch)
                    served = sum(1 for b in batches for f in b.frames if not f.data.startswith(b"S,"))
                    if srv.finished and served >= len(level2):
                        client.close()

            await asyncio.wait_for(consume(), 30)
            return batches

    live = _records(asyncio.run(run()))
    for name in ("order_event", "book_delta", "quote"):
        cols = [c for c in expected[name].schema.names if c != "ts_recv_ns"]
        assert live[name].select(cols).equals(expected[name].select(cols)), name
    assert len(level2) == 12 and live["order_event"].num_rows == 5 and live["book_delta"].num_rows == 5
    journal = merge(list(decode(Journal(tmp_path / "journal").files("iqfeed"))))
    for name in ("order_event", "book_delta", "quote"):
        assert journal[name].equals(live[name]), name


def test_replay_server_command_serves_iqconnect_until_interrupted(ticks: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tapeflow.cli", "replay-server", "--format", "iqfeed",
                             str(ticks), "--as-fast-as-possible"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "iqfeed: 0 lines from 1 file(s)" in proc.stdout.readline()  # lookups only: no tape
        roles = dict(proc.stdout.readline().split()[1:3] for _ in range(3))
        assert sorted(roles) == ["level1", "level2", "lookup"]
        lines = asyncio.run(lookup(roles["lookup"], "HTX,NEPT,5,1,r1"))
        assert len(lines) == 6 and lines[-1] == b"r1,LH,!ENDMSG!,"
        # a client still connected at Ctrl-C: its handler is cancelled at shutdown, which asyncio
        # reported with a traceback until the handler ended quietly
        host, _, port = roles["level1"].removeprefix("tcp://").rpartition(":")
        held = socket.create_connection((host, int(port)))
        held.settimeout(10)
        held.recv(1)  # the server's greeting: its handler runs
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert out.strip().splitlines()[-1].startswith("replay-server: stopped")
