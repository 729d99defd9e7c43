"""The simulator through the real live path: replay server (``sim`` protocol) -> ``SimClient`` ->
journal -> market flow. Without faults the live rows are the simulator files' rows; with a frame
dropped on the wire the client reports the gap, resubscribes for a fresh snapshot, and everything
the flow emitted equals the batch rebuild of the journal it wrote."""

from __future__ import annotations

import collections
from pathlib import Path

import pyarrow as pa
import pytest
from bytewax.testing import TestingSink, run_main

from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from flows.sources import LiveSource
from tapeflow.book.l3 import l3_book_snapshots
from tapeflow.derived.bars import time_bars
from tapeflow.errors import ConfigError
from tapeflow.live import ConnectorSettings
from tapeflow.replay import ReplayServer
from tapeflow.schemas.records import F_GAP
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.sim.client import SimClient
from tapeflow.venues.sim.sync import SimSync, decode_journal
from tests.flows.flowdata import sim_market, sorted_rows

SECOND = 1_000_000_000
SIM_NS = 20 * SECOND
INTERVALS = ("1s", "1m")
BAR_KEYS = ("symbol", "interval", "ts_event_ns", "revision")


def _run(files: tuple[Path, ...], journal: Path, faults: list[str]
         ) -> tuple[dict[str, pa.Table], pa.Table, int, int]:
    symbols = sorted({p.parent.name for p in files})
    tables: list = []
    status: list = []
    # paced (20 simulated seconds in ~4 s) so the client's resubscription lands while the tape runs
    with ReplayServer("sim", list(files), speed=5, faults=faults).run_in_thread() as srv:
        source = LiveSource("sim", symbols, endpoint=srv.ws_url, journal=journal, idle_stop_ns=2 * SECOND,
                            client_options={"settings": ConnectorSettings(seed=1, stale_after_s=30)})
        sinks = MarketSinks(tables=TestingSink(tables), status=TestingSink(status))
        run_main(build_market_flow(source, sinks, intervals=INTERVALS))
        served, unrouted = srv.frames_served, srv.frames_unrouted
    return gather(tables), gather(status)["status"], served, unrouted


def test_sim_live_rows_are_the_simulator_files_rows(tmp_path: Path) -> None:
    files = sim_market(SIM_NS)
    out, status, served, unrouted = _run(files, tmp_path / "journal", [])
    assert unrouted == 0
    batch = merge(list(get_format("sim").decode(list(files))))
    # one frame per CSV line (header excluded), counted from the files themselves
    lines = sum(len(_lines(p)) - 1 for p in files)
    assert served == lines
    for name in ("order_event", "trade", "book_delta"):
        assert sorted_rows(out[name], ("symbol",)).equals(sorted_rows(batch[name], ("symbol",))), name
    want = l3_book_snapshots(batch["order_event"], levels=10, interval_ns=SECOND)
    assert sorted_rows(out["book_snapshot"], ("symbol", "ts_event_ns")).equals(
        sorted_rows(want, ("symbol", "ts_event_ns")))
    states = collections.Counter(status["state"].to_pylist())
    assert states["connected"] == 2 and states["synced"] == 2 and states["gap"] == 0


def _lines(path: Path) -> list[bytes]:
    import gzip

    return gzip.decompress(path.read_bytes()).splitlines()


def test_a_dropped_frame_resyncs_and_the_flow_equals_its_journal(tmp_path: Path) -> None:
    files = sim_market(SIM_NS)
    out, status, served, unrouted = _run(files, tmp_path / "journal", ["drop@2000"])
    (journal,) = sorted((tmp_path / "journal").rglob("*.jsonl"))
    lines = journal.read_bytes().splitlines()
    total = sum(len(_lines(p)) - 1 for p in files)
    # all but the dropped frame, less those the tape passed while the client was resubscribing
    # (a real venue loses them too; the fresh snapshot covers them)
    assert served == total - 1 - unrouted
    # the journal holds every frame served, the acknowledgements, and the snapshots the server sent
    # on the resubscription (an R frame then S frames, counted from the journal)
    acks = sum(b'"event"' in line for line in lines)
    resent = sum(b'"type":"R"' in line or b'"type":"S"' in line for line in lines) - sum(
        line.split(b",")[3] in (b"R", b"S") for p in files for line in _lines(p)[1:])
    assert resent > 0 and len(lines) == served + acks + resent
    states = status["state"].to_pylist()
    assert states.count("gap") == 1 and states.count("resyncing") == 1 and states.count("synced") == 3
    decoded = merge(list(decode_journal([journal])))
    assert int((decoded["order_event"]["flags"].to_numpy() & F_GAP != 0).sum()) == 1
    for name in ("order_event", "trade", "book_delta"):
        assert sorted_rows(out[name], ("symbol",)).equals(sorted_rows(decoded[name], ("symbol",))), name
    want = l3_book_snapshots(decoded["order_event"], levels=10, interval_ns=SECOND)
    assert sorted_rows(out["book_snapshot"], ("symbol", "ts_event_ns")).equals(
        sorted_rows(want, ("symbol", "ts_event_ns")))
    final = {}
    for row in sorted_rows(out["bar"], BAR_KEYS).to_pylist():
        final[(row["symbol"], row["interval"], row["ts_event_ns"])] = {k: v for k, v in row.items()
                                                                      if k != "revision"}
    want_bars = [r for i in INTERVALS for r in time_bars(decoded["trade"], i).drop_columns(["revision"])
                 .to_pylist()]
    assert sorted(final.values(), key=lambda r: (r["symbol"], r["interval"], r["ts_event_ns"])) == sorted(
        want_bars, key=lambda r: (r["symbol"], r["interval"], r["ts_event_ns"]))


def test_bad_frames_are_dead_letters_and_bad_arguments_fail_early() -> None:
    sync = SimSync()
    sync.feed(1, b'{"symbol":"X","ts_event":1', "j:1")
    sync.feed(2, b'{"event":"error","message":"unknown symbols [\'Y\']"}', "j:2")
    sync.feed(3, b'{"symbol":"X","seq":1}', "j:3")
    rejected = sync.take()["rejected"]
    assert rejected["reason"].to_pylist() == ["bad_json", "venue_error", "missing_field"]
    assert rejected["location"].to_pylist() == ["j:1", "j:2", "j:3"]
    with pytest.raises(ConfigError, match="replay server"):
        SimClient(["SIM-BTCUSDT"])
    with pytest.raises(ConfigError, match="clock"):
        SimClient(["SIM-BTCUSDT"], endpoint="ws://127.0.0.1:1", clock="wall")
