"""Throttle windows survive a kill -9 of tapeflow, and acknowledgements made through ``tapeflow
serve``'s API reach the engine running in another thread through the acknowledgements file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tapeflow.alerts.acks import AckReader, append
from tapeflow.alerts.config import load
from tapeflow.alerts.engine import Ack, AlertEngine
from tapeflow.alerts.stage import AlertStage
from tapeflow.errors import StorageError
from tapeflow.schemas.records import SIGNAL
from tests.alerts.receivers import WAIT_S

S = 1_000_000_000
REPO = Path(__file__).resolve().parents[2]


def signals(ts_s: list[int]) -> object:
    n = len(ts_s)
    columns = {c: [None] * n for c in SIGNAL.column_names}
    columns.update(ts_event_ns=[t * S for t in ts_s], ts_recv_ns=[t * S for t in ts_s],
                   venue=["binance"] * n, symbol=["BTCUSDT"] * n, kind=["whale"] * n,
                   side=[1] * n, price_nanos=[0] * n, size_nanos=[0] * n, start_ns=[t * S for t in ts_s],
                   end_ns=[t * S for t in ts_s], confidence=[0.9] * n, score=[1.0] * n,
                   detector=["whale/1"] * n, params_hash=["p"] * n, flags=[0] * n, evidence=["{}"] * n)
    return SIGNAL.table(columns)


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "alerts.toml"
    config.write_text(f"""\
[channel.log]
type = "file"
path = "{tmp_path / 'alerts.jsonl'}"
[rule.whales]
channels = ["log"]
window_ns = {60 * S}
{extra}""")
    return config


def sent(tmp_path: Path) -> list[tuple[str, int, int]]:
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    return [(a["kind"], a["ts_event_ns"] // S, a["suppressed"]) for a in lines]


_KILLED = """
import sys, time
from pathlib import Path
from tapeflow.alerts.stage import AlertStage
from tests.alerts.test_state_and_acks import signals
stage = AlertStage(Path(sys.argv[1]), Path(sys.argv[2]))
stage.apply([("signal", signals([0]))])    # opens the window: sent
stage.apply([("signal", signals([5, 6]))]) # held back in it
assert stage.wait_delivered(30)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_window_open_when_tapeflow_is_killed_still_throttles_after_the_restart(tmp_path: Path) -> None:
    """Before the state file, a restarted engine had no windows: the match at 10 s was sent again
    as a new alert, and the two matches held back before the kill were never counted."""
    config, journal = write_config(tmp_path), tmp_path / "_alerts" / "live.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(config), str(journal)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no close(): nothing is flushed on the way out
        proc.wait(30)
    assert sent(tmp_path) == [("whale", 0, 0)]

    stage = AlertStage(config, journal)
    assert stage.apply([("signal", signals([10]))]) == []  # still inside the window opened at 0 s
    (after,) = stage.apply([("signal", signals([70]))])    # the window ended: the next message
    assert (after.ts_event_ns, after.suppressed) == (70 * S, 3)  # 5 s and 6 s before the kill, 10 s after
    assert stage.apply([("signal", signals([0]))]) == []   # the row that opened it, replayed: not re-sent
    stage.close()
    assert sent(tmp_path) == [("whale", 0, 0), ("whale", 70, 3)]


def test_a_damaged_state_file_is_an_error_naming_it(tmp_path: Path) -> None:
    journal = tmp_path / "live.jsonl"
    (tmp_path / "live.state.json").write_text("{not json")
    with pytest.raises(StorageError, match="live.state.json"):
        AlertEngine(load(write_config(tmp_path)), journal=journal)


def test_the_ack_reader_reads_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "acks.jsonl"
    reader = AckReader(path)
    assert reader.read_new() == []  # no file yet: nothing acknowledged
    append(path, "a1", Ack("alice", 5))
    with path.open("ab") as fh:
        fh.write(b'{"alert_id": "a2", "by": "bo')  # an append in progress (or a crash mid-write)
    assert reader.read_new() == [("a1", Ack("alice", 5))]
    append(path, "a3", Ack("carol", 7))  # ends the torn line first, so this one parses
    assert reader.read_new() == [("a3", Ack("carol", 7))]
    assert reader.read_new() == []


def test_an_acknowledgement_through_the_api_holds_back_the_engines_follow_ups(tmp_path: Path) -> None:
    """The engine (the flow's stage, this thread) and ``tapeflow serve`` (uvicorn in another thread)
    share only the lake folder. Before the stage read the acks file, the acknowledged alert's
    follow-up at 70 s (its window of 60 s had ended) was sent as a new alert."""
    from tapeflow.serve.app import build_app
    from tapeflow.serve.settings import ServeSettings
    from tests.serve.server import get, get_json, serving

    lake = tmp_path / "lake"
    config = write_config(tmp_path, f"ack_hold_ns = {600 * S}\n")
    stage = AlertStage(config, lake / "_alerts" / "live.jsonl", lake, acks=lake / "_alerts" / "acks.jsonl")
    (first,) = stage.apply([("signal", signals([0]))])
    assert stage.wait_delivered(WAIT_S)
    with serving(build_app(ServeSettings(lake=lake))) as base:  # acks default: LAKE/_alerts/acks.jsonl
        for _ in range(100):  # the courier appends the ledger row the API finds the alert by
            if get_json(base + f"/api/v1/alerts?alert_id={first.alert_id}")[1]["rows"]:
                break
            stage.wait_delivered(0.1)
        status, _, body = get(base + f"/api/v1/alerts/{first.alert_id}/ack", method="POST",
                              data=b'{"by": "alice"}', headers={"Content-Type": "application/json"})
        assert status == 201, body
    assert stage.apply([("signal", signals([70, 300]))]) == []  # held back: acknowledged
    ack = stage.engine.acknowledgement(first.alert_id)
    assert ack is not None and ack.by == "alice"
    (after,) = stage.apply([("signal", signals([601]))])  # the hold (600 s) ended: sent, with the count
    assert (after.ts_event_ns, after.suppressed) == (601 * S, 2)
    stage.close()
    assert sent(tmp_path)[:2] == [("whale", 0, 0), ("whale", 601, 2)]


def test_an_acknowledged_windows_closing_count_is_sent_as_information(tmp_path: Path) -> None:
    engine = AlertEngine(load(write_config(tmp_path, f"ack_hold_ns = {600 * S}\n")))
    (first,) = engine.submit_table(signals([0]))
    engine.acknowledge(first.alert_id, "alice")
    assert engine.submit_table(signals([30, 90])) == []
    assert engine.close_windows(300 * S) == []  # the hold runs to 600 s
    (closing,) = engine.close_windows(600 * S)
    assert (closing.kind, closing.suppressed, closing.severity) == ("suppressed", 2, "info")
    assert "acknowledged by alice" in closing.title and closing.detail == {"acknowledged_by": "alice"}
    assert engine.acknowledge(first.alert_id, "bob").by == "alice"  # the first one stands
