"""``tapeflow live``: two local processes (``-i/-a``) write the snapshots and bars of one worker to the
lake and end with the summed summary; bad requests are one-line errors before anything starts."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from flows.market import source_from
from tapeflow.book.rebuild import snapshots_for_format
from tapeflow.cli import main
from tapeflow.derived.bars import time_bars
from tapeflow.errors import ConfigError
from tapeflow.live.cli import add_summaries, flow_commands, live_env
from tapeflow.live.pipeline import new_health
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT
from tapeflow.settings import LiveSettings, Settings
from tapeflow.storage import lake
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import sim_market, sorted_rows

REPO = Path(__file__).resolve().parents[2]
SECOND = 1_000_000_000


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    from tapeflow.live.cli import add_parser

    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["live", *argv])


def test_two_processes_write_the_rows_of_one_worker(tmp_path: Path) -> None:
    market = sim_market(30 * SECOND)
    paths = [str(p) for p in market]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "tapeflow.cli", "live", "--capture", *paths, "--format", "sim",
         "--processes", "2", "--lake", str(tmp_path / "lake"), "--no-clickhouse", "--bars", "1s,1m,1h"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    want, _ = snapshots_for_format("sim", list(market), levels=10, interval_ns=SECOND)
    got = lake.read(BOOK_SNAPSHOT, tmp_path / "lake")
    keys = ("venue", "symbol", "ts_event_ns")
    assert sorted_rows(got, keys).equals(sorted_rows(want, keys))
    trades = merge(list(get_format("sim").decode(list(market))))["trade"]
    bar_keys = ("venue", "symbol", "interval", "ts_event_ns")
    bars = pa.concat_tables([time_bars(trades, i) for i in ("1s", "1m", "1h")])
    assert sorted_rows(lake.read(BAR, tmp_path / "lake"), bar_keys).equals(sorted_rows(bars, bar_keys))
    # the summary adds up both processes' workers
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("live: done in ")
    assert f"book_snapshot={want.num_rows:,}" in last and f"bar={bars.num_rows:,}" in last
    assert "2 process(es) x 1 worker(s)" in run.stdout


def test_one_process_runs_here_and_resumes_from_its_recovery_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """One local process runs the flow in this process (no child: Popen refuses here) with the
    child's arguments: the lake gets the batch rebuild's snapshots, the summary adds them up, the
    recovery store is created, and a rerun resumes from it (the capture is done: no new rows);
    the environment the flow read is restored."""
    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("tapeflow live spawned a process for a one-process run")

    monkeypatch.setattr(subprocess, "Popen", no_child)
    market = sim_market(10 * SECOND)
    argv = ["live", "--capture", *map(str, market), "--format", "sim", "--lake", str(tmp_path / "lake"),
            "--no-clickhouse", "--recovery", str(tmp_path / "recovery"), "--snapshot-every", "1s"]
    before = dict(os.environ)
    assert main(argv) == 0
    want, _ = snapshots_for_format("sim", list(market), levels=10, interval_ns=SECOND)
    got = lake.read(BOOK_SNAPSHOT, tmp_path / "lake")
    keys = ("venue", "symbol", "ts_event_ns")
    assert sorted_rows(got, keys).equals(sorted_rows(want, keys))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("live: done in ") and f"book_snapshot={want.num_rows:,}" in last
    assert "live-summary" not in last and list((tmp_path / "recovery").glob("part-*.sqlite3"))
    assert dict(os.environ) == before
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(": 0 rows (no rows)")
    assert lake.read(BOOK_SNAPSHOT, tmp_path / "lake").num_rows == want.num_rows


def test_commands_and_environment() -> None:
    args = _args("--capture", "a.gz", "--format", "sim", "-w", "3", "--recovery", "rec",
                 "--snapshot-every", "5s", "--no-clickhouse", "--bars", "1m")
    (cmd,) = flow_commands(args)
    assert cmd[1:] == ["-m", "bytewax.run", "flows.market:flow_from_env()", "-w", "3", "-r", "rec", "-s", "5",
                       "-b", "0"]
    env = live_env(args, Settings(lake_dir=Path("L")))
    assert env["TAPEFLOW_LIVE_OUTPUTS"] == "lake" and env["TAPEFLOW_LAKE"] == "L"
    assert env["TAPEFLOW_LIVE_CAPTURE"] == str(Path("a.gz").resolve())
    config = LiveSettings.from_env(env)
    assert (config.format_name, config.intervals, config.outputs) == ("sim", ("1m",), ("lake",))
    cluster = flow_commands(_args("--venue", "kraken", "--symbols", "XBT/USD", "--processes", "2"))
    assert [c[-4:-1] for c in cluster] == [["-i", "0", "-a"], ["-i", "1", "-a"]]
    addresses = cluster[0][-1].split(";")
    assert cluster[1][-1] == cluster[0][-1] and len(set(addresses)) == 2
    assert all(a.startswith("localhost:") and int(a.split(":")[1]) > 0 for a in addresses)
    options = live_env(_args("--venue", "binance", "--symbols", "BTCUSDT", "--option", "market=spot",
                             "--option", "snapshot_limit=100"), Settings())
    live = LiveSettings.from_env(options)
    assert dict(live.client_options) == {"market": "spot", "snapshot_limit": 100}
    assert source_from(live).client_options == {"market": "spot", "snapshot_limit": 100}
    # heartbeats on the snapshot grid, the health clock from --clock (auto: wall for a feed)
    assert source_from(live).heartbeat_ns == config.snapshot_interval_ns == 1_000_000_000
    assert (live.health_clock(), config.health_clock()) == ("wall", "none")
    sim = LiveSettings.from_env(live_env(_args("--venue", "sim", "--symbols", "SIM-BTCUSDT", "--endpoint",
                                             "ws://127.0.0.1:1", "--clock", "relative"), Settings()))
    assert sim.health_clock() == "relative"
    assert type(new_health(sim.health_clock(), sim.degraded_ns)).__name__ == "RelativeHealth"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        live_env(_args("--venue", "binance", "--symbols", "BTCUSDT", "--option", "spot"), Settings())
    with pytest.raises(ConfigError, match="-i and -a"):
        flow_commands(_args("--venue", "kraken", "--symbols", "XBT/USD", "-i", "1"))
    lines = ['live-summary {"worker": 0, "rows": {"bar": 2}}', "noise",
             'live-summary {"worker": 1, "rows": {"bar": 3, "trade": 1}}']
    assert add_summaries(lines) == {"bar": 5, "trade": 1}


@pytest.mark.parametrize(("argv", "message"), [
    (["live"], "needs --venue and --symbols"),
    (["live", "--venue", "lobster", "--symbols", "AMZN"], "no live connector for venue 'lobster'"),
    (["live", "--capture", "nowhere.gz", "--format", "sim"], "capture files not found: nowhere.gz"),
    (["live", "--capture", "x", "--format", "nope"], "unknown format 'nope'"),
    (["live", "--venue", "kraken", "--symbols", "XBT/USD", "--duration", "soon"], "duration 'soon'"),
])
def test_bad_requests_are_one_line_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("flag", "on"), [((), False), (("--signals",), True)])
def test_the_signals_stage_runs_only_when_asked(flag: tuple[str, ...], on: bool, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Off by default (its cost per batch: docs/live.md); `--signals` hands the flow its factory."""
    import flows.market as market

    capture = tmp_path / "a.gz"
    capture.write_bytes(b"")
    env = live_env(_args("--capture", str(capture), "--format", "sim", "--no-clickhouse", "--lake",
                         str(tmp_path), *flag), Settings())
    assert LiveSettings.from_env(env).signals is on
    seen: dict[str, object] = {}
    monkeypatch.setattr(market, "build_market_flow", lambda *a, **kw: seen.update(kw))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    market.flow_from_env()
    assert (seen["new_signals"] is not None) is on


@pytest.mark.parametrize("given", [False, True])
def test_alerts_are_wired_only_with_an_alerts_file(given: bool, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`--alerts FILE` (TAPEFLOW_ALERTS_CONFIG) adds the alerts sink to the flow; without it, none."""
    import flows.market as market
    from flows.alerts import AlertSink

    capture = tmp_path / "a.gz"
    capture.write_bytes(b"")
    rules = tmp_path / "alerts.toml"
    rules.write_text(f'[channel.log]\ntype = "file"\npath = "{tmp_path / "a.jsonl"}"\n'
                     '[rule.all]\nchannels = ["log"]\n')
    monkeypatch.delenv("TAPEFLOW_ALERTS_CONFIG", raising=False)
    flag = ("--signals", "--alerts", str(rules)) if given else ("--signals",)
    env = live_env(_args("--capture", str(capture), "--format", "sim", "--no-clickhouse", "--lake",
                         str(tmp_path), *flag), Settings())
    assert ("TAPEFLOW_ALERTS_CONFIG" in env) is given
    seen: list[object] = []
    monkeypatch.setattr(market, "build_market_flow", lambda source, sinks, **kw: seen.append(sinks))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    market.flow_from_env()
    (sinks,) = seen
    assert isinstance(sinks.alerts, AlertSink) is given
    if given:
        assert sinks.alerts.config == rules and sinks.alerts.lake == tmp_path
        assert sinks.alerts.journal == tmp_path / "_alerts" / "live.jsonl"
