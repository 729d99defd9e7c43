"""Rules, throttling, de-duplication, the quiet switch and acknowledgement (file channel, no network)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tapeflow.alerts.alert import AlertError
from tapeflow.alerts.config import load
from tapeflow.alerts.engine import AlertEngine
from tapeflow.errors import TapeflowError

SECOND_NS = 1_000_000_000


def _config(tmp_path: Path, extra: str = "") -> Any:
    path = tmp_path / "alerts.toml"
    path.write_text(f"""\
[channel.log]
type = "file"
path = "{tmp_path / 'alerts.jsonl'}"
[rule.whales]
kinds = ["whale"]
min_confidence = 0.7
instruments = ["BTCUSDT", "ETHUSDT"]
severity = "critical"
channels = ["log"]
window_ns = 60_000_000_000
[rule.feed]
source = "status"
channels = ["log"]
window_ns = 0
{extra}""")
    return load(path)


def _signal(ts_s: float, *, kind: str = "whale", symbol: str = "BTCUSDT", confidence: float = 0.9) -> dict:
    return {"ts_event_ns": int(ts_s * SECOND_NS), "ts_recv_ns": 0, "venue": "binance", "symbol": symbol,
            "kind": kind, "confidence": confidence, "detector": "whale/1",
            "evidence": json.dumps({"size_x_median": 80.0})}


def _lines(tmp_path: Path) -> list[dict]:
    path = tmp_path / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_rules_match_kind_confidence_and_instrument(tmp_path: Path) -> None:
    engine = AlertEngine(_config(tmp_path))
    assert engine.submit(_signal(0, kind="spoofing")) == []
    assert engine.submit(_signal(0, confidence=0.69)) == []
    assert engine.submit(_signal(0, confidence=math.nan)) == []  # NaN never passes a floor
    assert engine.submit(_signal(0, symbol="SOLUSDT")) == []
    (alert,) = engine.submit(_signal(0))
    assert (alert.rule, alert.severity, alert.kind) == ("whales", "critical", "whale")
    assert alert.symbol == "BTCUSDT"
    assert alert.detail == {"size_x_median": 80.0}
    engine.deliver_pending()
    (line,) = _lines(tmp_path)
    assert line["alert_id"] == alert.alert_id and line["confidence"] == 0.9 and line["idempotency_key"]
    assert [r["outcome"] for r in engine.ledger] == ["delivered"]


def test_one_message_per_rule_and_instrument_per_window_carrying_the_suppressed_count(tmp_path: Path) -> None:
    engine = AlertEngine(_config(tmp_path))
    sent = [a for t in (0, 10, 20, 59.9) for a in engine.submit(_signal(t))]
    sent += engine.submit(_signal(5, symbol="ETHUSDT"))  # another instrument has its own window
    assert [(a.symbol, a.suppressed) for a in sent] == [("BTCUSDT", 0), ("ETHUSDT", 0)]
    (later,) = engine.submit(_signal(60))  # the window ended: sent, with the 3 held back
    assert later.suppressed == 3 and "(+3 suppressed)" in later.text()
    assert engine.submit(_signal(61)) == []
    assert engine.submit(_signal(30)) == []  # late and older than the open window: counted in it
    assert engine.close_windows(100 * SECOND_NS) == []  # 60 s + 60 s not reached
    (closing,) = engine.close_windows(120 * SECOND_NS)
    assert (closing.kind, closing.suppressed, closing.symbol) == ("suppressed", 2, "BTCUSDT")
    assert engine.close_windows(10_000 * SECOND_NS) == []  # a closing count is sent once
    assert engine._windows == {}  # ended windows are forgotten: memory stays bounded


def test_a_replayed_source_row_raises_nothing_twice(tmp_path: Path) -> None:
    engine = AlertEngine(_config(tmp_path))
    (first,) = engine.submit(_signal(0))
    assert engine.submit(_signal(0)) == []
    (again,) = AlertEngine(_config(tmp_path)).submit(_signal(0))
    assert again.alert_id == first.alert_id  # ids are stable across restarts: receivers de-duplicate


def test_quiet_switch_counts_and_sends_nothing(tmp_path: Path) -> None:
    engine = AlertEngine(_config(tmp_path))
    engine.set_quiet(True)
    assert engine.submit(_signal(0)) == [] and engine.quiet_suppressed == 1
    engine.set_quiet(False)
    assert len(engine.submit(_signal(1))) == 1
    path = tmp_path / "q.toml"
    path.write_text("quiet = true\n" + (tmp_path / "alerts.toml").read_text())
    assert AlertEngine(load(path)).submit(_signal(0)) == []  # quiet from the file


def test_acknowledgement_is_kept_in_the_engine(tmp_path: Path) -> None:
    engine = AlertEngine(_config(tmp_path), wall_ns=lambda: 42)
    (alert,) = engine.submit(_signal(0))
    assert engine.acknowledgement(alert.alert_id) is None
    ack = engine.acknowledge(alert.alert_id, "alice")
    assert (ack.by, ack.at_ns) == ("alice", 42)
    assert engine.acknowledge(alert.alert_id, "bob").by == "alice"  # the first acknowledgement stands
    with pytest.raises(AlertError, match="no alert 'nope'"):
        engine.acknowledge("nope", "alice")
    assert issubclass(AlertError, TapeflowError)


def test_status_rules_match_bad_feed_states(tmp_path: Path) -> None:
    engine = AlertEngine(_config(tmp_path))
    row = {"ts_event_ns": 5, "ts_recv_ns": 5, "venue": "binance", "symbol": "BTCUSDT", "state": "synced",
           "sequence": 7, "detail": ""}
    assert engine.submit_status(row) == []  # a healthy state is no alert
    (gap,) = engine.submit_status({**row, "state": "gap", "detail": "seq 7 -> 12"})
    assert gap.kind == "gap" and "seq 7 -> 12" in gap.title and gap.payload()["confidence"] is None


def test_the_ledger_record_follows_the_declaration_rules() -> None:
    from tapeflow.schemas import ALERT_RECORDS, ALL_RECORDS, BATCH_RECORDS
    from tapeflow.schemas.alerts import ALERT_DELIVERY

    assert ALERT_RECORDS == {"alert_delivery": ALERT_DELIVERY}
    assert not set(ALERT_RECORDS) & (set(ALL_RECORDS) | set(BATCH_RECORDS))
    assert ALERT_DELIVERY.column_names[:4] == ["ts_event_ns", "ts_recv_ns", "venue", "symbol"]
    assert "`latency_ns` Int64" in ALERT_DELIVERY.clickhouse_ddl()


def test_rows_without_the_columns_rules_read_are_clear_errors(tmp_path: Path) -> None:
    engine = AlertEngine(_config(tmp_path))
    row = _signal(0)
    del row["confidence"]
    with pytest.raises(AlertError, match=r"signal row lacks columns \['confidence'\]"):
        engine.submit(row)
    with pytest.raises(AlertError, match="confidence is not a number: 'high'"):
        engine.submit({**_signal(0), "confidence": "high"})
    with pytest.raises(AlertError, match=r"status row lacks columns \['state'\]"):
        engine.submit_status({"ts_event_ns": 0, "venue": "v", "symbol": "s"})


def test_a_real_signal_table_goes_through_submit_table(tmp_path: Path) -> None:
    from tapeflow.schemas.records import SIGNAL, UNDEF_PRICE

    columns = {"ts_event_ns": [0, SECOND_NS, 2 * SECOND_NS], "ts_recv_ns": [0, 0, 0],
               "kind": ["whale", "whale", "spoofing"], "side": [1, -1, 1],
               "price_nanos": [UNDEF_PRICE] * 3, "size_nanos": [5, 6, 7], "start_ns": [0, 0, 0],
               "end_ns": [0, 0, 0], "confidence": [0.95, 0.5, 0.99], "score": [1.0, 1.0, 1.0],
               "detector": ["whale/1", "whale/1", "spoofing/1"], "params_hash": ["h"] * 3,
               "flags": [0, 0, 0], "evidence": ['{"x": 1}', "{}", "{}"]}
    table = SIGNAL.table(columns, constants={"venue": "binance", "symbol": "ETHUSDT"})
    (alert,) = AlertEngine(_config(tmp_path)).submit_table(table)  # 0.5 < 0.7, spoofing not a rule kind
    assert (alert.symbol, alert.confidence, alert.detail) == ("ETHUSDT", 0.95, {"x": 1})


def _check(passed: bool = False, **over: Any) -> dict:
    row = {"ts_event_ns": 7 * SECOND_NS, "venue": "sim", "symbol": "SIM-BTCUSDT", "asset": "bars",
           "check": "bars_ohlc", "severity": "ERROR", "passed": passed, "run_id": "r1",
           "partition": "2024-01-01|sim.SIM-BTCUSDT", "detail": "high < low in 3 rows"}
    return {**row, **over}


def test_failed_quality_checks_and_runs_match_their_rules(tmp_path: Path) -> None:
    engine = AlertEngine(_config(tmp_path, """\
[rule.checks]
source = "quality"
assets = ["bars"]
channels = ["log"]
window_ns = 0
[rule.runs]
source = "run"
jobs = ["tapeflow_days"]
severity = "critical"
channels = ["log"]
window_ns = 0
"""))
    assert engine.submit_quality(_check(passed=True)) == []  # a passing check is no alert
    assert engine.submit_quality(_check(severity="WARN")) == []  # only ERROR (blocking) by default
    assert engine.submit_quality(_check(asset="book")) == []
    (alert,) = engine.submit_quality(_check())
    assert (alert.rule, alert.source, alert.kind, alert.symbol) == ("checks", "quality", "bars_ohlc",
                                                                   "SIM-BTCUSDT")
    assert "high < low" in alert.title and alert.detail["run_id"] == "r1"
    assert engine.submit_quality(_check()) == []  # the same evaluation again: de-duplicated
    run = {"ts_event_ns": 9, "venue": "", "symbol": "", "job": "tapeflow_days", "run_id": "r2",
           "detail": "step bars failed"}
    assert engine.submit_run({**run, "job": "other"}) == []
    (failed,) = engine.submit_run(run)
    assert (failed.rule, failed.severity, failed.kind) == ("runs", "critical", "run_failure")
    with pytest.raises(AlertError, match="lacks columns"):
        engine.submit_run({"ts_event_ns": 1})
    engine.deliver_pending()
    assert [line["rule"] for line in _lines(tmp_path)] == ["checks", "runs"]
    engine.close()
