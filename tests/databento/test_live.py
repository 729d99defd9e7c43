"""The live gateway client against a local gateway speaking the real protocol and streaming real MBO.

Oracles: the CRAM and control-line test vectors (from the official clients' own tests); the
records the client decodes live equal a batch decode of the served file (CME ES MBO, 2023-12-25)
and of the client's own journal; ``tapeflow live`` over the gateway writes the batch rebuild's
book snapshots and the file's order events to the lake; an outage (the gateway drops the session
and the next one starts later) yields one closed ``gap`` window per symbol, exactly the capture
times of the records never sent; a wrong key is refused without the key in any output.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest

from tapeflow.book.rebuild import snapshots_for_format
from tapeflow.cli import main
from tapeflow.live.frames import LiveBatch
from tapeflow.schemas.records import BOOK_SNAPSHOT, ORDER_EVENT, STATUS
from tapeflow.secrets import Secret
from tapeflow.storage import lake
from tapeflow.venues.base import merge
from tapeflow.venues.databento.client import DatabentoLive
from tapeflow.venues.databento.gateway import cram_response, parse_line
from tapeflow.venues.databento.mock_live import MockGateway
from tapeflow.venues.databento.parse import decode_all
from tapeflow.wire.capture import Decoded
from tests.databento.support import KEY, MBO_1225, databento_file, files_holding, vectors
from tests.flows.flowdata import sorted_rows


def run(client: DatabentoLive) -> list[LiveBatch]:
    async def collect() -> list[LiveBatch]:
        return [b async for b in client.batches()]

    return asyncio.run(collect())


def live_tables(batches: list[LiveBatch]) -> dict:
    return merge([Decoded(b.records) for b in batches])


def test_cram_and_control_lines_match_the_vectors(real_data: Path) -> None:
    gateway = vectors(real_data)["live_gateway"]
    for v in vectors(real_data)["cram"]["vectors"]:
        assert cram_response(v["challenge"], v["key"]) == v["expected"]
    for v in gateway["parse_vectors"]:
        if v["expect"] == "ValueError" and not v["line"].endswith("\n"):
            with pytest.raises(ValueError):
                parse_line(v["line"])
        elif isinstance(v["expect"], dict):
            got = parse_line(v["line"])
            assert {k: x for k, x in v["expect"].items() if k in got} == got


def test_live_records_equal_the_file_and_the_journal(real_data: Path, tmp_path: Path) -> None:
    path = databento_file(real_data, MBO_1225)
    with MockGateway(path, KEY, chunk_bytes=3001) as gw:  # records split across writes
        client = DatabentoLive(["ESH4"], endpoint=f"tcp://{gw.host}:{gw.port}", journal=tmp_path / "journal",
                               api_key=Secret(KEY, "env:DATABENTO_API_KEY"), max_connects=1)
        batches = run(client)
    (auth, subscribe, start) = gw.received[0]
    # the handshake the vectors give: auth=<64 hex>-<last 5 of key>|dataset=..|encoding=dbn|ts_out=0|...,
    # sent by the official client (databento.Live), which names itself
    assert re.fullmatch(r"auth=[0-9a-f]{64}-" + KEY[-5:] + r"\|dataset=GLBX\.MDP3\|encoding=dbn\|ts_out=0\|"
                        r"compression=none\|heartbeat_interval_s=30\|"
                        r"client=Databento/0\.88\.0 Python/\S+ \S+\n", auth)
    assert subscribe == "schema=mbo|stype_in=raw_symbol|symbols=ESH4|snapshot=0|id=0|is_last=1\n"
    assert start == "start_session=0\n"
    want = decode_all([path])["order_event"]
    assert want.num_rows == 68_792
    assert live_tables(batches)["order_event"].equals(want)
    (journal,) = client.sessions
    assert journal.parent == tmp_path / "journal" / "dbn" / "GLBX.MDP3"
    assert decode_all([journal])["order_event"].equals(want)
    states = [r["state"] for b in batches for r in b.status.to_pylist()]
    assert states == ["connected", "disconnected"]


def test_an_outage_leaves_one_closed_gap_window_of_exactly_the_missing_records(real_data: Path,
                                                                               tmp_path: Path) -> None:
    path = databento_file(real_data, MBO_1225)
    want = decode_all([path])["order_event"]
    recv = want.column("ts_recv_ns").to_numpy()
    # cut between events (ts_recv changes), as a session ends between two TCP reads of whole events
    cuts = np.flatnonzero(np.diff(recv) > 0) + 1
    drop, resume = int(cuts[cuts > 20_000][0]), int(cuts[cuts > 35_000][0])
    with MockGateway(path, KEY, sessions=[(0, drop), (resume, want.num_rows)]) as gw:
        client = DatabentoLive(["ESH4"], endpoint=f"tcp://{gw.host}:{gw.port}", journal=tmp_path / "journal",
                               api_key=Secret(KEY, "env:DATABENTO_API_KEY"), max_connects=2, backoff_s=0.05)
        batches = run(client)
    status = [r for b in batches for r in b.status.to_pylist()]
    assert [r["state"] for r in status] == ["connected", "disconnected", "connected", "gap", "disconnected"]
    gap = status[3]
    assert (gap["ts_recv_ns"], gap["until_ns"]) == (int(recv[drop - 1]) + 1, int(recv[resume]))
    assert gap["venue"] == "GLBX.MDP3" and gap["symbol"] == "ESH4"
    missing = (recv >= gap["ts_recv_ns"]) & (recv < gap["until_ns"])
    assert int(missing.sum()) == resume - drop  # the window holds exactly the records never sent
    assert live_tables(batches)["order_event"].equals(want.filter(~missing))
    assert len(client.sessions) == 2


def test_a_wrong_key_is_refused_and_never_shown(real_data: Path, tmp_path: Path) -> None:
    path = databento_file(real_data, MBO_1225)
    wrong = KEY[:-1] + "Z"
    with MockGateway(path, KEY) as gw:
        client = DatabentoLive(["ESH4"], endpoint=f"tcp://{gw.host}:{gw.port}", journal=tmp_path / "journal",
                               api_key=Secret(wrong, "env:DATABENTO_API_KEY"), max_connects=1)
        batches = run(client)
    rows = [r for b in batches for r in b.status.to_pylist()]
    assert [r["state"] for r in rows] == ["disconnected"]
    assert "authentication refused: Authentication failed." in rows[0]["detail"]
    assert not any(b.records for b in batches)
    assert wrong not in repr(client) and all(wrong not in r["detail"] for r in rows)
    assert all(wrong not in line for lines in gw.received for line in lines)  # only the CRAM hash is sent


def test_tapeflow_live_over_the_gateway_writes_the_batch_rebuild(
        real_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``tapeflow live --venue dbn`` (the Bytewax flow, in this process) over the local gateway: the lake
    gets the file's order events and the batch rebuild's book snapshots (parity live == batch)."""
    path = databento_file(real_data, MBO_1225)
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    # The served file opens with the day's start-of-day snapshot (8,725 F_SNAPSHOT records whose
    # ts_event is each resting order's entry, up to 11 h before ts_recv); a live session subscribed
    # with snapshot=0 gets none, and the feed-health breaker would judge that age as latency and flag
    # the rows F_MAYBE_BAD_BOOK (docs/databento.md, "What is left"). The breaker is set out of reach.
    monkeypatch.setenv("TAPEFLOW_LIVE_DEGRADED_MS", str(10**9))
    monkeypatch.chdir(tmp_path)
    with MockGateway(path, KEY) as gw:
        code = main(["live", "--venue", "dbn", "--symbols", "ESH4", "--endpoint", f"tcp://{gw.host}:{gw.port}",
                     "--option", "dataset=GLBX.MDP3", "--option", "max_connects=1", "--idle-exit", "3s",
                     "--lake", str(tmp_path / "lake"), "--no-clickhouse",
                     "--journal", str(tmp_path / "journal"),
                     "--bars", "1m", "--clock", "none"])
    assert code == 0
    out = capsys.readouterr().out
    assert KEY not in out
    events = lake.read(ORDER_EVENT, tmp_path / "lake")
    want = decode_all([path])["order_event"]
    keys = ("venue", "symbol", "ts_recv_ns", "sequence", "order_id", "action")
    assert sorted_rows(events, keys).equals(sorted_rows(want, keys))
    snaps, _ = snapshots_for_format("dbn", [path], levels=10, interval_ns=1_000_000_000)
    got = lake.read(BOOK_SNAPSHOT, tmp_path / "lake")
    snap_keys = ("venue", "symbol", "ts_event_ns")
    assert got.num_rows == snaps.num_rows > 0
    assert sorted_rows(got, snap_keys).equals(sorted_rows(snaps, snap_keys))
    states = lake.read(STATUS, tmp_path / "lake").column("state").to_pylist()
    assert "connected" in states and "disconnected" in states
    # the canary: no file the run wrote (lake, journal, recovery, logs) holds the key
    assert files_holding(tmp_path, KEY) == []


def test_a_stream_that_is_not_dbn_ends_the_session_with_the_reason(real_data: Path, tmp_path: Path) -> None:
    path = databento_file(real_data, MBO_1225)
    with MockGateway(path, KEY, sessions=[(0, 10)]) as gw:
        gw.meta = b'{"detail": "not DBN"}\n'  # what a misconfigured proxy might answer after the handshake
        client = DatabentoLive(["ESH4"], endpoint=f"tcp://{gw.host}:{gw.port}", journal=tmp_path / "journal",
                               api_key=Secret(KEY, "env:DATABENTO_API_KEY"), max_connects=1)
        batches = run(client)
    rows = [r for b in batches for r in b.status.to_pylist()]
    assert [r["state"] for r in rows] == ["connected", "disconnected"]
    assert "the gateway's stream could not be decoded" in rows[1]["detail"]
    assert "before the official client handed over any DBN metadata" in rows[1]["detail"]
    # databento.Live hands over only what it decoded: the journal of that session is empty
    assert client.sessions[0].read_bytes() == b""


def test_no_key_is_a_config_error_naming_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from tapeflow.errors import ConfigError

    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)
    monkeypatch.delenv("DATABENTO_API_KEY_FILE", raising=False)
    with pytest.raises(ConfigError, match="DATABENTO_API_KEY or DATABENTO_API_KEY_FILE"):
        DatabentoLive(["ESH4"], endpoint="tcp://127.0.0.1:9")
