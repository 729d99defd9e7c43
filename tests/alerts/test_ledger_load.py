"""The delivery ledger reaches the lake and ClickHouse from batch (``tapeflow alerts ledger``), from
the ledger journals the engines keep, once however often it runs."""

from __future__ import annotations

import socket
from pathlib import Path

import pyarrow.compute as pc

from tapeflow.alerts.config import load
from tapeflow.alerts.engine import AlertEngine
from tapeflow.cli import main
from tapeflow.schemas.alerts import ALERT_DELIVERY
from tapeflow.storage import lake
from tapeflow.storage.warehouse import Warehouse
from tapeflow.storage.writer import Writer
from tests.alerts.test_state_and_acks import signals


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def key(rows: list[dict]) -> list[tuple]:
    return sorted((r["idempotency_key"], r["attempt"], r["outcome"], r["reason"], r["ts_event_ns"])
                  for r in rows)


def test_the_ledger_journal_loads_into_the_lake_and_clickhouse_once(tmp_path: Path, dsn: str,
                                                                   capsys) -> None:  # noqa: ANN001
    """Before the ledger journal, an engine that did not write the lake itself (a flow with
    --no-lake, or killed before its courier wrote) left its ledger in memory only, and nothing put
    any ledger row into ClickHouse."""
    root = tmp_path / "lake"
    config = tmp_path / "alerts.toml"
    config.write_text(f"""\
[delivery]
max_attempts = 2
backoff_base_ms = 1
backoff_max_ms = 1
[allow]
loopback = true
[channel.log]
type = "file"
path = "{tmp_path / 'alerts.jsonl'}"
[channel.down]
type = "webhook"
url = "http://127.0.0.1:{closed_port()}/hook"
secret = "env:HOME"
[rule.whales]
channels = ["log", "down"]
window_ns = 0
""")
    engine = AlertEngine(load(config), journal=root / "_alerts" / "live.jsonl")
    engine.submit_table(signals([0, 1]))
    while engine.pending:
        engine.deliver_pending()
    engine.close()
    expected = key(engine.ledger)  # 2 delivered on log; retry + dead letter for each on down
    assert len(expected) == 6

    with Writer(root) as writer:  # what the flow's stage appends itself when it writes the lake
        engine.write_ledger(writer)
    for _ in range(2):  # neither those rows nor a second run are stored twice
        assert main(["alerts", "ledger", "--lake", str(root), "--clickhouse", dsn]) == 0
    assert "6 row(s) from 1 journal(s)" in capsys.readouterr().out
    assert key(lake.read(ALERT_DELIVERY, root).to_pylist()) == expected
    with Warehouse(dsn) as wh:
        stored = wh.fetch(ALERT_DELIVERY)
    assert key(stored.to_pylist()) == expected
    assert pc.sum(pc.equal(stored.column("outcome"), "dead_letter")).as_py() == 2
