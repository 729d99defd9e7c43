"""The flow's alerts on the live stream: a replayed capture through the market flow with the signals
stage, the alerts step and the publisher; ``tapeflow serve``'s relay; a WebSocket client. Every
alert the flow delivered reaches the client as an ``alert`` line, equal to what the channel got."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import orjson
import pytest
from bytewax.inputs import StatefulSourcePartition
from bytewax.testing import run_main
from websockets.sync.client import connect

from flows.alerts import AlertSink
from flows.market import MarketSinks, build_market_flow, signals_stage
from flows.publish import PublishSink
from flows.sources import CaptureSource
from tapeflow.schemas.records import STATUS
from tapeflow.serve.app import build_app
from tapeflow.serve.publish import running
from tapeflow.serve.settings import ServeSettings
from tapeflow.signals.config import DEFAULT_PATH
from tests.serve.server import get, get_json, serving

S = 1_000_000_000
ADDRESS = "127.0.0.1:0"  # any free port: the test finds the publisher by the address it was given


class _Gated(StatefulSourcePartition):  # type: ignore[type-arg]
    """Holds the capture back until the WebSocket client listens (the stream has no replay): first
    one feed-status row, which opens the flow's sinks (the publisher among them), then nothing
    until the gate opens."""

    def __init__(self, inner: StatefulSourcePartition, gate: threading.Event, symbol: str) -> None:  # type: ignore[type-arg]
        self.inner, self.gate, self.symbol, self.opened = inner, gate, symbol, False

    def next_batch(self) -> list:  # type: ignore[type-arg]
        if not self.opened:
            self.opened = True
            return [{"status": STATUS.table({"ts_event_ns": [-1], "ts_recv_ns": [0], "venue": ["sim"],
                                             "symbol": [self.symbol], "state": ["connected"],
                                             "sequence": [-1], "until_ns": [-1], "detail": ["test"]})}]
        if not self.gate.is_set():
            self.gate.wait(0.05)
            return []
        return self.inner.next_batch()

    def next_awake(self):  # noqa: ANN201
        return self.inner.next_awake()

    def snapshot(self):  # noqa: ANN201
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class GatedCapture(CaptureSource):
    gate = threading.Event()

    def build_part(self, step_id, for_part, resume_state):  # noqa: ANN001, ANN201
        inner = super().build_part(step_id, for_part, resume_state)
        return _Gated(inner, self.gate, self.partitions[for_part][0].parent.name)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from tapeflow.simulator import simulate

    root = tmp_path_factory.mktemp("livealerts")
    # the alerts stage's flow test day (tests/flows/test_alerts_stage.py): it plants signals
    summary = simulate(7311, 1, 2 * 60 * S, root, "equity", progress=False, episodes_per_hour=12)
    return sorted(summary.files)


def test_alerts_raised_by_the_flow_reach_a_websocket_client(capture: list[Path], tmp_path: Path) -> None:
    config = tmp_path / "alerts.toml"
    config.write_text(f"""\
[channel.log]
type = "file"
path = "{tmp_path / 'alerts.jsonl'}"
[rule.every]
source = "signal"
channels = ["log"]
window_ns = {20 * S}
""")
    source = GatedCapture("sim", capture, batch_events=3000)
    source.gate = threading.Event()
    sinks = MarketSinks(alerts=AlertSink(config, tmp_path / "_alerts" / "live.jsonl", tmp_path / "lake",
                                         publish=ADDRESS),
                        extra=(PublishSink(ADDRESS),))
    flow = build_market_flow(source, sinks, new_signals=signals_stage(DEFAULT_PATH), raw=False, intervals=())
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_main(flow)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while (publisher := running(ADDRESS)) is None:
        assert time.monotonic() < deadline and not errors, f"the flow's publisher never started: {errors}"
        time.sleep(0.05)
    app = build_app(ServeSettings(lake=tmp_path / "lake", live=("127.0.0.1", publisher.port)))
    messages: list[dict] = []
    try:
        with serving(app) as base, connect(base.replace("http://", "ws://") + "/ws/live") as ws:
            hello = orjson.loads(ws.recv(timeout=10))
            assert hello["type"] == "hello" and hello["live"] is True
            connected = hello["state"]["connected"]
            while not connected:  # the relay reconnects every second until the publisher answers
                m = orjson.loads(ws.recv(timeout=30))
                connected = m == {"type": "relay", "connected": True}
            source.gate.set()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # until the flow ends and its publisher closes
                try:
                    m = orjson.loads(ws.recv(timeout=1))
                except TimeoutError:
                    if not runner.is_alive():
                        break  # ended; its publisher's last lines were relayed before the timeout
                    continue
                if m == {"type": "relay", "connected": False}:
                    break
                messages.append(m)
            runner.join(60)
            assert not errors, errors
            live = [row for m in messages if m.get("table") == "alert" for row in m["rows"]]
            # the relay keeps them for a page that opens later, and knows them for acknowledgements
            _, state = get_json(base + "/api/v1/live")
            assert [a["alert_id"] for a in state["alerts"]] == [a["alert_id"] for a in live]
            if live:
                status, _, _ = get(base + f"/api/v1/alerts/{live[0]['alert_id']}/ack", method="POST",
                                   data=b'{"by": "alice"}', headers={"Content-Type": "application/json"})
                assert status == 201
    finally:
        source.gate.set()
        runner.join(60)
    sent = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    print(f"{len(sent)} alerts delivered, {len(live)} on the stream, {len(messages)} lines relayed")
    assert [a for a in sent if a["kind"] != "suppressed"], "the simulated minutes raised no alert"
    # what the channel got is what the page is told, payload for payload, in order (the closing
    # counts sent as the flow ends may miss the stream: its publisher may close first)
    strip = [{k: v for k, v in a.items() if k != "idempotency_key"} for a in sent]
    assert live == strip[:len(live)]
    assert len(live) >= sum(a["kind"] != "suppressed" for a in sent)
    assert any(m.get("table") == "signal" for m in messages)  # the same relay as the other kinds
