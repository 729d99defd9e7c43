"""The failover config file (the shipped example, errors that name file, line and key) and
``tapeflow live --failover CONFIG`` end to end: two replay servers of one simulated market, the
primary's connection cut, the switches and the primary's hole in the lake."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tapeflow.cli import main
from tapeflow.errors import ConfigError
from tapeflow.live.failover_config import load_failover
from tapeflow.replay import ReplayServer
from tapeflow.schemas.records import SOURCE_SWITCH, STATUS
from tapeflow.storage import lake
from tests.conftest import REPO
from tests.flows.flowdata import sim_market

SECOND = 1_000_000_000


def test_the_shipped_example_loads() -> None:
    config = load_failover(REPO / "docs" / "failover.example.toml")
    assert [s.name for s in config.sources] == ["binance", "bybit"]
    assert config.instruments[0].legs == (("binance", "BTCUSDT"), ("bybit", "BTCUSDT"))
    assert config.stale_after_ns == 2 * SECOND and config.hold_ns == 10 * SECOND and config.warm_books
    assert config.symbols_of("bybit") == ["BTCUSDT", "ETHUSDT"]
    assert config.source("binance").client_options()["settings"].stale_after_s == 10


GOOD = """[failover]
hold = "3s"

[sources.a]
venue = "sim"

[sources.b]
venue = "sim"

[instruments.X]
sources = ["a:SIM-BTCUSDT", "b:SIM-BTCUSDT"]
"""


@pytest.mark.parametrize(("old", "new", "message"), [
    ('hold = "3s"', 'hold = "soon"', r":2: failover\.hold: bad duration|:2: failover\.hold: .*soon"),
    ('hold = "3s"', 'hold_time = "3s"', r":2: failover\.hold_time: unknown key"),
    ('"b:SIM-BTCUSDT"]', '"c:SIM-BTCUSDT"]',
     r":11: instruments\.X\.sources: 'c:SIM-BTCUSDT': no \[sources\.c\]"),
    ('sources = ["a:SIM-BTCUSDT", "b:SIM-BTCUSDT"]', 'sources = ["a:SIM-BTCUSDT"]', "at least two"),
    ('venue = "sim"\n\n[sources.b]', 'venue = "sim"\nconnector = { stale_after = 1 }\n\n[sources.b]',
     r"sources\.a\.connector\.stale_after: unknown setting"),
    ('"b:SIM-BTCUSDT"]', '"a:SIM-ETHUSDT"]', "lists a source twice"),
])
def test_a_bad_config_names_its_file_line_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "failover.toml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(ConfigError, match=message):
        load_failover(path)


def test_tapeflow_live_failover_writes_the_switches_and_the_primary_hole(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = sim_market(20 * SECOND)
    frames = sum(len(gzip.decompress(p.read_bytes()).splitlines()) - 1 for p in files)
    config = tmp_path / "failover.toml"
    cut = [f"disconnect@{frames // 5}"]
    with ReplayServer("sim", list(files), speed=2, faults=cut).run_in_thread() as a, \
            ReplayServer("sim", list(files), speed=2).run_in_thread() as b:
        config.write_text(f"""[failover]
stale_after = "2s"
hold = "1s"
start_grace = "5s"

[sources.main]
venue = "sim"
endpoint = "{a.ws_url}"
connector = {{ backoff_initial_s = 0.2 }}

[sources.backup]
venue = "sim"
endpoint = "{b.ws_url}"

[instruments.BTC]
sources = ["main:SIM-BTCUSDT", "backup:SIM-BTCUSDT"]
""")
        rc = main(["live", "--failover", str(config), "--lake", str(tmp_path / "lake"), "--no-clickhouse",
                   "--journal", str(tmp_path / "journal"), "--idle-exit", "2s", "--clock", "relative",
                   "--bars", "1s"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"failover {config}" in out
    switches = lake.read(SOURCE_SWITCH, tmp_path / "lake").to_pylist()
    assert [(s["from_source"], s["to_source"]) for s in switches] == [("main", "backup"), ("backup", "main")]
    assert switches[0]["reason"] in ("disconnected", "stale") and switches[1]["reason"] == "recovered"
    status = lake.read(STATUS, tmp_path / "lake").to_pylist()
    gaps = [r for r in status if r["state"] == "gap" and r["detail"].startswith("failover:")]
    # the switch rows (stage clock) never moved the feed's heartbeat watermark (recorded capture times)
    assert not [r["detail"] for r in status if r["state"] == "time_jump"]
    assert [(g["symbol"], g["ts_recv_ns"], g["until_ns"]) for g in gaps] == [
        ("SIM-BTCUSDT", switches[1]["primary_hole_from_ns"], switches[1]["primary_hole_to_ns"])]
    # two sources of one venue journal under a folder each (never one file for two writers)
    assert sorted(p.name for p in (tmp_path / "journal").iterdir()) == ["backup", "main"]


def test_failover_and_a_venue_at_once_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "failover.toml"
    config.write_text(GOOD)
    rc = main(["live", "--failover", str(config), "--venue", "sim", "--symbols", "X", "--no-clickhouse",
               "--lake", str(tmp_path / "lake")])
    assert rc == 2 and "TAPEFLOW_LIVE_FAILOVER names the sources" in capsys.readouterr().err


def test_the_flow_settings_check_the_config_and_name_the_variable(tmp_path: Path) -> None:
    from tapeflow.settings import LiveSettings

    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    assert LiveSettings.from_env({"TAPEFLOW_LIVE_FAILOVER": str(good)}).failover == good
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('hold = "3s"', "hold = 3"))
    with pytest.raises(ConfigError, match=r"TAPEFLOW_LIVE_FAILOVER: .*bad\.toml:2: failover\.hold"):
        LiveSettings.from_env({"TAPEFLOW_LIVE_FAILOVER": str(bad)})
    with pytest.raises(ConfigError, match="cannot read the failover config"):
        LiveSettings.from_env({"TAPEFLOW_LIVE_FAILOVER": str(tmp_path / "missing.toml")})
