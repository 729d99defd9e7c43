"""The flow's alerts step outside the flow: status and signal tables per batch, closing counts at the end."""

from __future__ import annotations

import json
from pathlib import Path

from tapeflow.alerts.stage import AlertStage
from tapeflow.schemas.alerts import ALERT_DELIVERY
from tapeflow.schemas.records import SIGNAL, STATUS
from tapeflow.storage import lake
from tests.alerts.receivers import WAIT_S, HttpReceiver, wait_until

S = 1_000_000_000


def _status(ts_s: list[int], state: str) -> object:
    n = len(ts_s)
    return STATUS.table({"ts_event_ns": [t * S for t in ts_s], "ts_recv_ns": [t * S for t in ts_s],
                         "venue": ["binance"] * n, "symbol": ["BTCUSDT"] * n, "state": [state] * n,
                         "sequence": [7] * n, "until_ns": [-1] * n, "detail": ["seq 7 -> 12"] * n})


def test_status_rows_alert_per_batch_and_held_back_counts_are_sent_at_the_end(tmp_path: Path) -> None:
    config = tmp_path / "alerts.toml"
    config.write_text(f"""\
[channel.log]
type = "file"
path = "{tmp_path / 'alerts.jsonl'}"
[rule.feed]
source = "status"
channels = ["log"]
window_ns = 60_000_000_000
""")
    stage = AlertStage(config, tmp_path / "outbox.jsonl", tmp_path / "lake")
    assert stage.apply([(STATUS.name, _status([0, 1], "synced"))]) == []  # healthy: nothing
    (gap,) = stage.apply([(STATUS.name, _status([10, 20, 30], "gap")), (SIGNAL.name, SIGNAL.table({
        c: [] for c in SIGNAL.column_names}))])
    assert gap.kind == "gap" and gap.ts_event_ns == 10 * S

    def lines() -> list[dict]:
        return [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]

    assert stage.wait_delivered(WAIT_S)  # the courier thread delivers it
    assert [a["kind"] for a in lines()] == ["gap"]
    stage.close()  # the window is still open at the end: its two held-back gaps are counted now
    assert [(a["kind"], a["suppressed"]) for a in lines()] == [("gap", 0), ("suppressed", 2)]
    ledger = lake.read(ALERT_DELIVERY, tmp_path / "lake")
    assert ledger.column("outcome").to_pylist() == ["delivered", "delivered"]


def _signals(ts_s: list[int]) -> object:
    n = len(ts_s)
    columns = {c: [None] * n for c in SIGNAL.column_names}
    columns.update(ts_event_ns=[t * S for t in ts_s], ts_recv_ns=[t * S for t in ts_s],
                   venue=["binance"] * n, symbol=["BTCUSDT"] * n, kind=["whale"] * n,
                   side=[1] * n, price_nanos=[0] * n, size_nanos=[0] * n, start_ns=[t * S for t in ts_s],
                   end_ns=[t * S for t in ts_s], confidence=[0.9] * n, score=[1.0] * n,
                   detector=["whale/1"] * n, params_hash=["p"] * n, flags=[0] * n, evidence=["{}"] * n)
    return SIGNAL.table(columns)


def test_a_slow_receiver_never_holds_up_the_flows_batches(tmp_path: Path) -> None:
    """Before the courier thread, apply() delivered inline: a receiver taking 10 s to answer held
    the flow's worker for 10 s per batch, and the delivery's ledger row existed when apply returned."""
    receiver = HttpReceiver(b"unused").start()
    receiver.slow_s = 10.0
    receiver.faults.append("slow")
    try:
        config = tmp_path / "alerts.toml"
        config.write_text(f"""\
[delivery]
timeout_ms = 60000
[allow]
loopback = true
[channel.chat]
type = "slack"
url = "{receiver.url('slack')}"
[rule.all]
channels = ["chat"]
window_ns = 0
""")
        stage = AlertStage(config, tmp_path / "outbox.jsonl", tmp_path / "lake")
        (first,) = stage.apply([(SIGNAL.name, _signals([1]))])
        assert stage.engine.ledger == []  # apply returned before the receiver answered
        wait_until(lambda: len(receiver.seen) == 1)  # the courier is inside the slow attempt
        (second,) = stage.apply([(SIGNAL.name, _signals([2]))])
        assert stage.engine.ledger == [] and len(receiver.accepted) == 0
        wait_until(lambda: len(receiver.accepted) == 1, timeout_s=WAIT_S + receiver.slow_s)
        stage.close()
        ledger = lake.read(ALERT_DELIVERY, tmp_path / "lake")
        assert ledger.column("alert_id").to_pylist() == [first.alert_id, second.alert_id]  # in order
        assert ledger.column("outcome").to_pylist() == ["delivered", "delivered"]
    finally:
        receiver.stop()
