"""``tapeflow live --bus URL`` and the ``TAPEFLOW_BUS*`` settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tapeflow.bus import BusSettings
from tapeflow.bus.consume import streams_matching
from tapeflow.bus.settings import DEFAULT_TABLES
from tapeflow.cli import main
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import BAR
from tapeflow.storage import lake
from tests.flows.flowdata import sim_market

SECOND = 1_000_000_000


def test_tapeflow_live_bus_publishes_the_flow_rows(redis_url: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TAPEFLOW_BUS_PREFIX", "tf:")
    market = sim_market(10 * SECOND)
    argv = ["live", "--capture", *map(str, market), "--format", "sim", "--lake", str(tmp_path / "lake"),
            "--no-clickhouse", "--no-raw", "--bars", "1s", "--bus", redis_url]
    assert main(argv) == 0
    out = capsys.readouterr().out
    client = redis.Redis.from_url(redis_url)
    streams = streams_matching(client)
    assert "tf:bars:sim:SIM-BTCUSDT" in streams and "tf:metrics:sim:SIM-ETHUSDT" in streams
    assert not any(":trades:" in s for s in streams)  # --no-raw: the decoded rows are not emitted
    total = sum(client.xlen(s) for s in streams)
    assert f"live: bus: {total} rows published to {redis_url}" in out
    bars = sum(client.xlen(s) for s in streams if s.startswith("tf:bars:"))
    assert bars >= lake.read(BAR, tmp_path / "lake").num_rows > 0  # every revision; the lake keeps the last


def test_settings_are_read_once_and_bad_values_name_their_variable(tmp_path: Path) -> None:
    assert BusSettings.from_env(tmp_path, {}) is None
    settings = BusSettings.from_env(tmp_path, {"TAPEFLOW_BUS": "redis://127.0.0.1:6379/0",
                                               "TAPEFLOW_BUS_MAXLEN": "5000",
                                               "TAPEFLOW_BUS_TABLES": "bar,signal"})
    assert settings is not None
    assert (settings.maxlen, settings.tables) == (5000, ("bar", "signal"))
    assert settings.dead_letters == tmp_path / "_bus" / "dead_letters.jsonl"
    assert "rejected" not in DEFAULT_TABLES and "bar" in DEFAULT_TABLES
    kafka = BusSettings.from_env(tmp_path, {"TAPEFLOW_KAFKA_BROKERS": "127.0.0.1:9092, b:9093"})
    assert kafka is not None and kafka.url is None and kafka.kafka_brokers == ("127.0.0.1:9092", "b:9093")
    for env, message in [({"TAPEFLOW_BUS": "http://x"}, "TAPEFLOW_BUS must be a redis://"),
                         ({"TAPEFLOW_BUS_MAXLEN": "-1"}, "TAPEFLOW_BUS_MAXLEN must be"),
                         ({"TAPEFLOW_BUS_RETRY_S": "soon"}, "TAPEFLOW_BUS_RETRY_S must be"),
                         ({"TAPEFLOW_BUS_TABLES": "bars"}, "TAPEFLOW_BUS_TABLES names no record type"),
                         ({"TAPEFLOW_KAFKA_BROKERS": "kafka"}, "TAPEFLOW_KAFKA_BROKERS takes host:port")]:
        with pytest.raises(ConfigError, match=message):
            BusSettings.from_env(tmp_path, {"TAPEFLOW_BUS": "redis://127.0.0.1:1"} | env)


def test_a_bad_bus_setting_is_a_one_line_error_before_the_flow_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TAPEFLOW_BUS_MAXLEN", "lots")
    market = sim_market(10 * SECOND)
    argv = ["live", "--capture", *map(str, market), "--format", "sim", "--lake", str(tmp_path / "lake"),
            "--no-clickhouse", "--bus", "redis://127.0.0.1:1/0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "TAPEFLOW_BUS_MAXLEN must be a whole number" in err and "Traceback" not in err
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize(("bus", "kafka"), [(False, False), (True, False), (True, True), (False, True)])
def test_flow_from_env_wires_the_bus_sinks_only_when_asked(bus: bool, kafka: bool, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.market as market
    from flows.bus import BusSink, KafkaBusSink
    from tapeflow.live.cli import live_env
    from tapeflow.settings import Settings
    from tests.flows.test_live_cli import _args

    capture = tmp_path / "a.gz"
    capture.write_bytes(b"")
    flags = ((("--bus", "redis://127.0.0.1:6390/0") if bus else ())
             + (("--kafka", "127.0.0.1:9092") if kafka else ()))
    for name in ("TAPEFLOW_BUS", "TAPEFLOW_KAFKA_BROKERS"):
        monkeypatch.delenv(name, raising=False)
    env = live_env(_args("--capture", str(capture), "--format", "sim", "--no-clickhouse",
                         "--lake", str(tmp_path), *flags), Settings())
    seen: list = []
    monkeypatch.setattr(market, "build_market_flow", lambda source, sinks, **kw: seen.append(sinks))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    market.flow_from_env()
    (sinks,) = seen
    assert any(isinstance(s, BusSink) for s in sinks.extra) is bus
    assert any(isinstance(s, KafkaBusSink) for s in sinks.extra) is kafka
    for sink in sinks.extra:
        if isinstance(sink, BusSink | KafkaBusSink):
            assert sink.dead_letters == tmp_path / "_bus" / "dead_letters.jsonl"
