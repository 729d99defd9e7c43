"""The market flow with the bus sink: a consumer group reads exactly the rows the lake holds."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from pathlib import Path

import orjson
import pytest
from bytewax.testing import run_main

from flows.bus import BusSink
from flows.market import MarketSinks, build_market_flow, signals_stage
from flows.sinks import LakeSink
from flows.sources import CaptureSource
from tapeflow.bus import decode_rows, read_dead_letters
from tapeflow.bus.server import free_port
from tapeflow.bus.settings import DEFAULT_TABLES
from tapeflow.schemas.records import BAR
from tapeflow.signals.config import DEFAULT_PATH
from tapeflow.storage.batches import REPLACE_KEYS, last_per_key
from tests.bus.compare import multiset, read_bus, read_lake
from tests.flows.flowdata import sim_market

SIM_NS = 10 * 1_000_000_000  # ~18k rows in 14 streams, signals included


def _run(files: tuple[Path, ...], lake_root: Path, sink: BusSink, *, signals: bool = True) -> None:
    source = CaptureSource("sim", list(files), batch_events=2000, batch_ns=None, heartbeat_ns=1_000_000_000)
    sinks = MarketSinks(tables=LakeSink(lake_root), extra=(sink,))
    run_main(build_market_flow(source, sinks, intervals=("1s", "1m"),
                               new_signals=signals_stage(DEFAULT_PATH) if signals else None))


def test_a_consumer_group_reads_exactly_the_rows_of_the_lake(redis_url: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    files = sim_market(SIM_NS)
    _run(files, tmp_path / "lake", BusSink(redis_url, tmp_path / "dead.jsonl", tables=DEFAULT_TABLES))
    bus, entries = read_bus(redis_url, "readers")
    lake = read_lake(tmp_path / "lake", DEFAULT_TABLES)
    kinds = {s.split(":")[0] for s in lake}
    # the flow's outputs are all there: decoded rows, books, bars, metrics, signals
    assert {"order_events", "trades", "book_snapshots", "bars", "metrics", "signals"} <= kinds, kinds
    assert sorted(bus) == sorted(lake)
    for stream in lake:
        assert bus[stream] == lake[stream], stream
    assert not read_dead_letters(tmp_path / "dead.jsonl")
    print({s: entries[s] for s in sorted(entries)})

    # a second run over the same capture (no recovery: a full replay) publishes nothing again
    _run(files, tmp_path / "lake2", BusSink(redis_url, tmp_path / "dead.jsonl", tables=DEFAULT_TABLES))
    assert "0 rows published" in capsys.readouterr().out
    again, _ = read_bus(redis_url, "late-readers")
    assert again == bus


def test_a_flow_whose_redis_is_down_ends_cleanly_with_every_row_dead_lettered(tmp_path: Path) -> None:
    files = sim_market(SIM_NS)
    err = io.StringIO()
    sink = BusSink(f"redis://127.0.0.1:{free_port()}/0", tmp_path / "dead.jsonl", tables=("bar",),
                   close_wait_s=0.5)
    with redirect_stderr(err):
        _run(files, tmp_path / "lake", sink, signals=False)
    dead = read_dead_letters(tmp_path / "dead.jsonl")
    assert {line["reason"] for line in dead} == {"unavailable"}
    # every bar revision the flow emitted is in the file: their last revisions are the lake's bars
    streams = sorted({str(line["stream"]) for line in dead})
    got = {}
    for stream in streams:
        rows = [orjson.dumps(line["row"]) for line in dead if line["stream"] == stream]
        got[stream] = multiset(last_per_key(decode_rows(BAR, rows), REPLACE_KEYS["bar"]), "bar")
    assert got == read_lake(tmp_path / "lake", ("bar",))
    assert "unavailable (ConnectionError" in err.getvalue()
