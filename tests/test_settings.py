"""Settings read once at entry points: ``Settings`` and the live flow's ``LiveSettings``
(``TAPEFLOW_LIVE_*``); a bad value is a ``ConfigError`` naming its variable."""

from __future__ import annotations

import pytest

from tapeflow.derived.bars import STANDARD_INTERVALS
from tapeflow.errors import ConfigError
from tapeflow.live.health import FeedHealth
from tapeflow.live.pipeline import new_health
from tapeflow.live.relative import RelativeHealth
from tapeflow.settings import LiveSettings

SECOND = 1_000_000_000
CAPTURE = {"TAPEFLOW_LIVE_CAPTURE": "x"}


def test_flow_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="TAPEFLOW_LIVE_CAPTURE"):
        LiveSettings.from_env({})
    with pytest.raises(ConfigError, match="TAPEFLOW_LIVE_OUTPUTS"):
        LiveSettings.from_env({"TAPEFLOW_LIVE_CAPTURE": "x", "TAPEFLOW_LIVE_OUTPUTS": "s3"})
    with pytest.raises(ConfigError, match="TAPEFLOW_LIVE_CLIENT_OPTIONS"):
        LiveSettings.from_env({"TAPEFLOW_LIVE_CAPTURE": "x", "TAPEFLOW_LIVE_CLIENT_OPTIONS": "[1]"})
    with pytest.raises(ConfigError, match="TAPEFLOW_LIVE_LEVELS"):
        LiveSettings.from_env({"TAPEFLOW_LIVE_CAPTURE": "x", "TAPEFLOW_LIVE_LEVELS": "ten"})
    config = LiveSettings.from_env({"TAPEFLOW_LIVE_VENUE": "kraken",
                                  "TAPEFLOW_LIVE_SYMBOLS": "XBT/USD, ETH/USD",
                                  "TAPEFLOW_LIVE_DURATION": "30s", "TAPEFLOW_LIVE_JOURNAL": "none"})
    assert config.symbols == ("XBT/USD", "ETH/USD") and config.duration_ns == 30 * SECOND
    assert config.journal is None and config.intervals == STANDARD_INTERVALS


def test_clock_setting() -> None:
    base = {"TAPEFLOW_LIVE_CAPTURE": "a.gz", "TAPEFLOW_LIVE_FORMAT": "binance"}
    assert LiveSettings.from_env(base).health_clock() == "none"
    live = {"TAPEFLOW_LIVE_VENUE": "sim", "TAPEFLOW_LIVE_SYMBOLS": "A"}
    assert LiveSettings.from_env(live).health_clock() == "wall"
    wall = LiveSettings.from_env(live)
    assert isinstance(new_health(wall.health_clock(), wall.degraded_ns), FeedHealth)
    relative = LiveSettings.from_env({**live, "TAPEFLOW_LIVE_CLOCK": "relative"})
    assert isinstance(new_health(relative.health_clock(), relative.degraded_ns), RelativeHealth)
    with pytest.raises(ConfigError, match="TAPEFLOW_LIVE_CLOCK"):
        LiveSettings.from_env({**live, "TAPEFLOW_LIVE_CLOCK": "venue"})


def test_metrics_port_is_validated() -> None:
    config = LiveSettings.from_env({"TAPEFLOW_LIVE_CAPTURE": "x", "TAPEFLOW_LIVE_METRICS_PORT": "9464"})
    assert config.metrics_port == 9464
    assert LiveSettings.from_env({"TAPEFLOW_LIVE_CAPTURE": "x"}).metrics_port is None
    with pytest.raises(ConfigError, match="TAPEFLOW_LIVE_METRICS_PORT"):
        LiveSettings.from_env({"TAPEFLOW_LIVE_CAPTURE": "x", "TAPEFLOW_LIVE_METRICS_PORT": "port"})


@pytest.mark.parametrize(("name", "value", "message"), [
    ("TAPEFLOW_LIVE_LEVELS", "0", "TAPEFLOW_LIVE_LEVELS must be >= 1, got 0"),
    ("TAPEFLOW_LIVE_BATCH_EVENTS", "-5", "TAPEFLOW_LIVE_BATCH_EVENTS must be >= 1"),
    ("TAPEFLOW_LIVE_BATCH_EVENTS", "many", "TAPEFLOW_LIVE_BATCH_EVENTS must be an integer, got 'many'"),
    ("TAPEFLOW_LIVE_INTERVAL", "soon", "TAPEFLOW_LIVE_INTERVAL: duration 'soon'"),
    ("TAPEFLOW_LIVE_BATCH_TIME", "0s", "TAPEFLOW_LIVE_BATCH_TIME: duration '0s'"),
    ("TAPEFLOW_LIVE_DURATION", "forever", "TAPEFLOW_LIVE_DURATION: duration 'forever'"),
    ("TAPEFLOW_LIVE_IDLE_EXIT", "5", "TAPEFLOW_LIVE_IDLE_EXIT: duration '5'"),
    ("TAPEFLOW_LIVE_BARS", "1s,7x", "TAPEFLOW_LIVE_BARS: bar interval '7x'"),
    ("TAPEFLOW_LIVE_DEGRADED_MS", "0", "TAPEFLOW_LIVE_DEGRADED_MS must be >= 1"),
    ("TAPEFLOW_LIVE_PROGRESS_S", "often", "TAPEFLOW_LIVE_PROGRESS_S must be an integer"),
    ("TAPEFLOW_LIVE_RAW", "maybe", "TAPEFLOW_LIVE_RAW takes 1/0, true/false or yes/no, got 'maybe'"),
    ("TAPEFLOW_LIVE_BBO_AS_QUOTE", "2", "TAPEFLOW_LIVE_BBO_AS_QUOTE takes 1/0"),
    ("TAPEFLOW_LIVE_METRICS_PORT", "70000", "TAPEFLOW_LIVE_METRICS_PORT must be a TCP port"),
])
def test_bad_live_values_name_their_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        LiveSettings.from_env({**CAPTURE, name: value})
    assert message in str(err.value)


def test_live_defaults_and_values() -> None:
    default = LiveSettings.from_env(CAPTURE)
    assert (default.batch_events, default.batch_ns, default.levels, default.snapshot_interval_ns) == (
        100_000, None, 10, SECOND)  # DEFAULT_BATCH_EVENTS since round s27
    assert (default.raw, default.bbo_as_quote, default.outputs, default.progress_s) == (
        True, False, ("lake", "clickhouse"), 2.0)
    assert default.intervals == STANDARD_INTERVALS and default.degraded_ns == SECOND
    set_ = LiveSettings.from_env({**CAPTURE, "TAPEFLOW_LIVE_BATCH_TIME": "250ms", "TAPEFLOW_LIVE_RAW": "no",
                                  "TAPEFLOW_LIVE_BBO_AS_QUOTE": "true", "TAPEFLOW_LIVE_OUTPUTS": "none",
                                  "TAPEFLOW_LIVE_BARS": "1s, 1m", "TAPEFLOW_LIVE_DEGRADED_MS": "20"})
    assert (set_.batch_ns, set_.raw, set_.bbo_as_quote, set_.outputs) == (250_000_000, False, True, ())
    assert set_.intervals == ("1s", "1m") and set_.degraded_ns == 20_000_000
    assert LiveSettings.from_env({**CAPTURE, "TAPEFLOW_LIVE_BATCH_TIME": "none"}).batch_ns is None


def test_live_prediction_is_off_unless_asked() -> None:
    assert LiveSettings.from_env(CAPTURE).predict is False
    assert LiveSettings.from_env({**CAPTURE, "TAPEFLOW_LIVE_PREDICT": "1"}).predict is True
    with pytest.raises(ConfigError, match="TAPEFLOW_LIVE_PREDICT takes 1/0"):
        LiveSettings.from_env({**CAPTURE, "TAPEFLOW_LIVE_PREDICT": "sometimes"})


def test_ml_flat_share() -> None:
    from tapeflow.settings import Settings

    assert Settings.from_env({}).ml_flat_share is None
    assert Settings.from_env({"TAPEFLOW_ML_FLAT_SHARE": "0.333"}).ml_flat_share == 0.333
    for bad in ("1", "0", "a third", "nan"):
        with pytest.raises(ConfigError, match="TAPEFLOW_ML_FLAT_SHARE"):
            Settings.from_env({"TAPEFLOW_ML_FLAT_SHARE": bad})


def test_ml_retrain_kinds() -> None:
    """The kinds the retrain schedule and the drift sensor train: today's three unless set."""
    from tapeflow.settings import Settings

    assert Settings.from_env({}).ml_retrain_kinds == ("logreg", "mlp", "tcn")
    got = Settings.from_env({"TAPEFLOW_ML_RETRAIN_KINDS": " logreg, mlp,tcn ,deeplob"}).ml_retrain_kinds
    assert got == ("logreg", "mlp", "tcn", "deeplob")
    for bad in ("xgboost", "logreg,logreg", ","):
        with pytest.raises(ConfigError, match="TAPEFLOW_ML_RETRAIN_KINDS"):
            Settings.from_env({"TAPEFLOW_ML_RETRAIN_KINDS": bad})
