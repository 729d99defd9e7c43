"""The market flow on a live connector: the real BinanceClient against the replay server serving the
real USD-M capture prefix with one depth diff dropped on the wire. What the flow emitted equals the
batch rebuild of the journal it wrote (snapshots, bars on all 15 intervals), and the connector's
STATUS rows (the gap, the resync) reach the status sink."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from bytewax.testing import TestingSink, run_main

from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from flows.sources import LiveSource
from tapeflow.book.rebuild import snapshots_for_format
from tapeflow.derived.bars import STANDARD_INTERVALS, time_bars
from tapeflow.live import ConnectorSettings
from tapeflow.replay import ReplayServer
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import binance_prefix, same_rows, sorted_rows
from tests.flows.test_market import BAR_KEYS, _final_bars

SECOND = 1_000_000_000


@pytest.mark.realdata
def test_live_flow_equals_batch_rebuild_of_its_journal(tmp_path: Path) -> None:
    capture = binance_prefix(4000)
    tape = [line for line in capture.read_bytes().splitlines() if b"lastUpdateId" not in line]
    dropped = next(i for i in range(len(tape) // 2, len(tape)) if b"@depth" in tape[i])
    tables: list = []
    status: list = []
    # paced (the prefix spans ~17 s of capture time): the journal's clock then spans a few grid seconds
    with ReplayServer("binance", [capture], speed=5, faults=[f"drop@{dropped}"]).run_in_thread() as srv:
        source = LiveSource("binance", ["BTCUSDT"], endpoint=srv.ws_url, rest_endpoint=srv.rest_url,
                            journal=tmp_path / "journal", idle_stop_ns=3 * SECOND,
                            client_options={"trade_stream": "trade",
                                            "settings": ConnectorSettings(seed=1, stale_after_s=30)})
        sinks = MarketSinks(tables=TestingSink(tables), status=TestingSink(status))
        run_main(build_market_flow(source, sinks))
        served = srv.frames_served
    out, side = gather(tables), gather(status)
    (journal,) = sorted((tmp_path / "journal").rglob("*.jsonl"))
    lines = journal.read_bytes().splitlines()
    # every frame the server sent reached the journal (plus the REST snapshots the client fetched:
    # the first sync and the resync after the gap)
    rest = sum(b"lastUpdateId" in line for line in lines)
    assert rest >= 2 and len(lines) == served + rest
    assert served == len(tape) - 1
    decoded = merge(list(get_format("binance").decode([journal])))
    want, _ = snapshots_for_format("binance", [journal], levels=10, interval_ns=SECOND)
    assert want.num_rows >= 3
    assert same_rows(out["book_snapshot"], want)
    want_bars = pa.concat_tables([time_bars(decoded["trade"], i) for i in STANDARD_INTERVALS])
    assert _final_bars(out["bar"]).equals(sorted_rows(want_bars, BAR_KEYS).drop_columns(["revision"]))
    trades_in_journal = sum(orjson.loads(line.split(b" ", 1)[1]).get("stream", "").endswith("@trade")
                            for line in lines)
    assert out["trade"].num_rows == trades_in_journal
    states = side["status"]["state"].to_pylist()
    assert states[:3] == ["connected", "syncing", "synced"] and states.count("gap") == 1
    after = states[states.index("gap"):]
    assert after[:2] == ["gap", "resyncing"] and "synced" in after

