"""The flow's alerts step outside the flow: status and signal tables per batch, closing counts at the end."""

from __future__ import annotations

import json
from pathlib import Path

from tapeflow.alerts.stage import AlertStage
from tapeflow.schemas.alerts import ALERT_DELIVERY
from tapeflow.schemas.records import SIGNAL, STATUS
from tapeflow.storage import lake

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

    assert [a["kind"] for a in lines()] == ["gap"]  # delivered within the batch
    stage.close()  # the window is still open at the end: its two held-back gaps are counted now
    assert [(a["kind"], a["suppressed"]) for a in lines()] == [("gap", 0), ("suppressed", 2)]
    ledger = lake.read(ALERT_DELIVERY, tmp_path / "lake")
    assert ledger.column("outcome").to_pylist() == ["delivered", "delivered"]
