"""The flow's alerts step: the signals the stage emitted reach the file channel as alerts, one per
rule and instrument per throttle window, with every held-back signal counted."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from bytewax.testing import TestingSink, run_main

from flows.alerts import AlertSink
from flows.market import MarketSinks, build_market_flow, signals_stage
from flows.sources import CaptureSource
from tapeflow.errors import ConfigError
from tapeflow.schemas.alerts import ALERT_DELIVERY
from tapeflow.signals.config import DEFAULT_PATH
from tapeflow.storage import lake

S = 1_000_000_000
WINDOW_NS = 20 * S


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from tapeflow.simulator import simulate

    root = tmp_path_factory.mktemp("alertsim")
    # the signals stage's own test day (tests/flows/test_signals_stage.py), shortened
    summary = simulate(7311, 1, 2 * 60 * S, root, "equity", progress=False, episodes_per_hour=12)
    return sorted(summary.files)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(f"""\
[channel.log]
type = "file"
path = "{tmp_path / 'alerts.jsonl'}"
[rule.every]
source = "signal"
channels = ["log"]
window_ns = {WINDOW_NS}
[rule.feed]
source = "status"
channels = ["log"]
window_ns = 0
""")
    return path


def test_alerts_arrive_for_the_stages_signals_throttled_per_instrument(capture: list[Path],
                                                                      tmp_path: Path) -> None:
    seen: list = []
    sinks = MarketSinks(signals=TestingSink(seen),
                        alerts=AlertSink(_config(tmp_path), tmp_path / "outbox.jsonl", tmp_path / "lake"))
    flow = build_market_flow(CaptureSource("sim", capture, batch_events=3000), sinks,
                             new_signals=signals_stage(DEFAULT_PATH), raw=False, intervals=())
    run_main(flow)
    signals = pa.concat_tables([t for _, t in seen]).to_pylist() if seen else []
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    print(f"{len(signals)} signals -> {len(lines)} alerts")
    assert len(signals) >= 2, "the simulated minutes planted no signal the stage finds"

    # what one message per (rule, instrument) per 20 s window of venue time means, from the rows
    expected, opened = [], {}
    for row in signals:
        key = (row["venue"], row["symbol"])
        if key not in opened or row["ts_event_ns"] >= opened[key] + WINDOW_NS:
            opened[key] = row["ts_event_ns"]
            expected.append((row["symbol"], row["kind"], row["ts_event_ns"], row["detector"]))
    sent = [line for line in lines if line["kind"] != "suppressed"]
    assert [(a["symbol"], a["kind"], a["ts_event_ns"], a["title"].rsplit(", ", 1)[1][:-1])
            for a in sent] == expected
    assert all(a["rule"] == "every" and a["source"] == "signal" for a in sent)
    # nothing lost: every signal is an alert or counted in one (the next alert or a closing count)
    assert len(sent) + sum(a["suppressed"] for a in lines) == len(signals)
    ledger = lake.read(ALERT_DELIVERY, tmp_path / "lake")
    assert ledger.column("outcome").to_pylist() == ["delivered"] * len(lines)
    assert sorted(ledger.column("alert_id").to_pylist()) == sorted(a["alert_id"] for a in lines)


def test_a_bad_alerts_file_fails_the_build(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[rule.x]\nsource = "weather"\nchannels = []\n')
    with pytest.raises(ConfigError, match="rule"):
        AlertSink(bad, tmp_path / "outbox.jsonl")
