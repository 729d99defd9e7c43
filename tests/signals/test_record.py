"""The ``signal`` record: declared once (lake, warehouse), and its quality suite catches each fault."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from quality import check_names, run_suite
from tapeflow.schemas import ALL_RECORDS
from tapeflow.schemas.records import SIGNAL, UNDEF_PRICE
from tapeflow.storage import lake
from tapeflow.storage.warehouse import Warehouse
from tapeflow.storage.writer import write

DAY = "2024-01-01"
T0 = 1_704_067_200_000_000_000 + 3_600_000_000_000


def _signals(n: int = 4) -> pa.Table:
    return SIGNAL.table({
        "ts_event_ns": [T0 + i * 1_000_000_000 for i in range(n)],
        "ts_recv_ns": [T0 + i * 1_000_000_000 + 5 for i in range(n)],
        "kind": ["whale", "withdrawal", "whale", "withdrawal"][:n],
        "side": [1, -1, -1, 1][:n],
        "price_nanos": [60_000_000_000_000, 60_001_000_000_000, UNDEF_PRICE, 59_999_000_000_000][:n],
        "size_nanos": [5_000_000_000] * n,
        "start_ns": [T0 + i * 1_000_000_000 - 500 for i in range(n)],
        "end_ns": [T0 + i * 1_000_000_000 for i in range(n)],
        "confidence": [0.9, 0.2, 0.5, 1.0][:n],
        "score": [12.5, 0.8, 3.0, 0.95][:n],
        "detector": ["whale/1", "withdrawal/1", "whale/1", "withdrawal/1"][:n],
        "params_hash": ["abc"] * n,
        "flags": [0] * n,
        "evidence": [json.dumps({"size_x_median": 40.0})] * n,
    }, constants={"venue": "sim", "symbol": "SIM-BTCUSDT"})


def test_signal_is_a_declared_record_with_lake_and_warehouse_projections(tmp_path):
    assert ALL_RECORDS["signal"] is SIGNAL
    ddl = SIGNAL.clickhouse_ddl()
    assert "`side` Int32" in ddl and "`confidence` Float64" in ddl and "`evidence` String" in ddl
    table = _signals()
    write(SIGNAL, table, tmp_path / "lake")
    back = lake.read(SIGNAL, tmp_path / "lake").sort_by("ts_event_ns")
    assert back.to_pylist() == table.to_pylist()
    with Warehouse(f"chdb://{tmp_path / 'wh'}") as wh:
        wh.load(SIGNAL, table)
        stored = wh.fetch(SIGNAL).sort_by("ts_event_ns")
    assert stored.column("side").to_pylist() == [1, -1, -1, 1]
    assert stored.column("evidence").to_pylist() == table.column("evidence").to_pylist()


def test_clean_signals_pass_every_check():
    result = run_suite("signals", _signals(), partition_day=DAY)
    assert [c.name for c in result.checks] == list(check_names("signals"))
    assert {c.name: c.examples[:1] for c in result.failed} == {}
    assert all(c.element_count > 0 for c in result.checks)


@pytest.mark.parametrize(("column", "value", "check"), [
    ("kind", "astrology", "kind_known"),
    ("side", 2, "side_code"),
    ("confidence", 1.5, "confidence_range"),
    ("confidence", float("nan"), "confidence_range"),
    ("start_ns", T0 + 10**12, "episode_window"),
    ("evidence", "[1, 2]", "evidence_json"),
    ("evidence", "not json", "evidence_json"),
    ("price_nanos", -5, "price_range"),
])
def test_each_fault_fails_its_check_only(column, value, check):
    table = _signals()
    values = table.column(column).to_pylist()
    values[1] = value
    table = table.set_column(table.schema.get_field_index(column), SIGNAL[column].name,
                             pa.array(values, SIGNAL[column].arrow_type))
    result = run_suite("signals", table, partition_day=DAY)
    assert [c.name for c in result.failed] == [check]
    assert result.check(check).unexpected_count == 1
