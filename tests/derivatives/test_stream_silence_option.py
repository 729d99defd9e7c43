"""``tapeflow live --stream-silence`` / ``TAPEFLOW_LIVE_STREAM_SILENCE``: the derivatives channels'
silence that hands an instrument's derived rows to the polls (docs/derivatives.md, "Polled and
streamed rows of one instrument"), read once into ``LiveSettings`` and on to the flow's
``StreamOwner``."""

from __future__ import annotations

from typing import Any

import pytest
from bytewax.testing import TestingSink

import flows.derivatives
from flows.derivatives import DerivativesFeedSource, PollSource
from flows.market import MarketSinks, build_market_flow
from tapeflow.derivatives.poll_config import binance_usdm
from tapeflow.errors import ConfigError
from tapeflow.settings import LiveSettings, Settings

S = 1_000_000_000
BOTH = {"TAPEFLOW_LIVE_VENUE": "binance", "TAPEFLOW_LIVE_SYMBOLS": "BTCUSDT",
        "TAPEFLOW_LIVE_DERIVATIVES": "with", "TAPEFLOW_LIVE_POLL": "binance_usdm:BTCUSDT"}


def _env(*extra: str) -> dict[str, str]:
    from tapeflow.cli import _parser
    from tapeflow.live.cli import live_env

    args = _parser().parse_args(["live", "--venue", "binance", "--symbols", "BTCUSDT", "--derivatives",
                                 "--poll", "binance_usdm:BTCUSDT", "--no-clickhouse", *extra])
    return live_env(args, Settings())


def test_the_stream_silence_is_a_setting_and_an_option() -> None:
    assert LiveSettings.from_env(BOTH).stream_silence_ns == 10 * S  # the default: the derived staleness
    silence = LiveSettings.from_env({**BOTH, "TAPEFLOW_LIVE_STREAM_SILENCE": "2500ms"}).stream_silence_ns
    assert silence == 2_500_000_000
    assert LiveSettings.from_env(_env("--stream-silence", "3s")).stream_silence_ns == 3 * S
    assert "TAPEFLOW_LIVE_STREAM_SILENCE" not in _env()
    for bad in ("0s", "-3s", "3", "soon", "none"):
        with pytest.raises(ConfigError, match="TAPEFLOW_LIVE_STREAM_SILENCE.*positive"):
            LiveSettings.from_env({**BOTH, "TAPEFLOW_LIVE_STREAM_SILENCE": bad})
        with pytest.raises(ConfigError, match="--stream-silence.*positive"):
            _env(f"--stream-silence={bad}")


def test_the_flow_hands_the_setting_to_the_stream_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    real = flows.derivatives.feed_and_polls_stream

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("silence_ns", "default"))
        return real(*args, **kwargs)

    monkeypatch.setattr(flows.derivatives, "feed_and_polls_stream", spy)
    feed = DerivativesFeedSource("binance", ["BTCUSDT"], endpoint="ws://127.0.0.1:9")
    polls = PollSource([binance_usdm(("BTCUSDT",), "http://127.0.0.1:9")], duration_ns=S)
    sinks = MarketSinks(tables=TestingSink([]))
    build_market_flow(None, sinks, polls=polls, derivatives=feed, stream_silence_ns=3 * S)
    build_market_flow(None, sinks, polls=polls, derivatives=feed)
    assert seen == [3 * S, "default"]
