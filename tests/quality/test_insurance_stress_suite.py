"""The insurance_stress suite passes the batch definition's rows and fails exactly the check of each
injected fault."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from quality import check_names, run_suite
from tapeflow.derivatives.derived import insurance_stress
from tapeflow.derivatives.live_stress import stress_record
from tapeflow.schemas.derivatives import INSURANCE_FUND
from tapeflow.schemas.records import INSURANCE_STRESS, SCALE

DAY = "2024-01-01"
T0 = 1_704_067_200 * SCALE + 3_600 * SCALE  # 01:00 UTC


def _clean() -> pa.Table:
    # a fund from zero (NaN, level 0) up to 100, then down 4, 8, 15, 30 %: levels 0, 0, 1, 2, 3
    balances = [0, 100, 96, 92, 85, 70]
    times = [T0 + i * SCALE for i in range(len(balances))]
    funds = INSURANCE_FUND.table({"ts_event_ns": times, "ts_recv_ns": times, "asset": ["USDT"] * 6,
                                  "balance_nanos": [b * SCALE for b in balances]},
                                 constants={"venue": "okx", "symbol": "BTC-USDT"})
    return stress_record(insurance_stress(funds))


def _with(table: pa.Table, name: str, row: int, value) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    i = table.column_names.index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def test_the_batch_definitions_rows_pass_every_check() -> None:
    clean = _clean()
    assert clean.schema == INSURANCE_STRESS.arrow_schema()
    assert clean.column("level").to_pylist() == [0, 0, 0, 1, 2, 3]
    assert math.isnan(clean["drawdown"][0].as_py())
    result = run_suite("insurance_stress", clean, partition_day=DAY)
    assert result.passed, [(c.name, c.examples) for c in result.failed]
    assert [c.name for c in result.checks] == list(check_names("insurance_stress"))


@pytest.mark.parametrize(("column", "row", "value", "check"), [
    ("level", 5, 4, "level_code"),  # (at the deepest drawdown: no order broken)
    ("drawdown", 3, 0.09, "drawdown_range"),  # not (peak - balance) / peak = 0.08
    ("peak_nanos", 2, 90 * SCALE, "drawdown_range"),  # a peak below the balance
    ("balance_nanos", 5, -5 * SCALE, "drawdown_range"),  # a balance below zero (drawdown 1.05 as stored)
    ("drawdown", 0, 0.0, "drawdown_range"),  # a drawdown from a zero peak
    ("level", 3, 3, "level_order"),  # 8 % at level 3 puts 15 % (level 2) below a shallower row
    ("asset", 1, None, "not_null_keys"),
    ("ts_event_ns", 5, T0 - 2 * 3_600 * SCALE, "ts_within_day"),
])
def test_one_fault_fails_its_check(column: str, row: int, value, check: str) -> None:
    bad = _with(_clean(), column, row, value)
    assert {c.name for c in run_suite("insurance_stress", bad, partition_day=DAY).failed} == {check}


def test_a_pool_past_int64_is_stored_exactly_and_passes() -> None:
    # Bybit's shared USDT pool (about 1.01e10 USDT) in nanos passes int64 (9.22e18): a 10 % drop of it
    big = 10_148_045_273_618_073_000
    balances = [big, big * 9 // 10]
    times = [T0, T0 + SCALE]
    funds = INSURANCE_FUND.table({"ts_event_ns": times, "ts_recv_ns": times, "asset": ["USDT"] * 2,
                                  "balance_nanos": balances},
                                 constants={"venue": "bybit", "symbol": "USDT"})
    stored = stress_record(insurance_stress(funds))
    assert [int(v) for v in stored.column("balance_nanos").to_pylist()] == balances
    assert [int(v) for v in stored.column("peak_nanos").to_pylist()] == [big, big]
    assert stored.column("drawdown").to_pylist()[1] == pytest.approx(0.1, abs=1e-15)
    result = run_suite("insurance_stress", stored, partition_day=DAY)
    assert result.passed, [(c.name, c.examples) for c in result.failed]
    # a peak one nano below the balance is caught exactly (a float64 could not tell them apart)
    bad = _with(stored, "peak_nanos", 0, big - 1)
    assert "drawdown_range" in {c.name for c in run_suite("insurance_stress", bad, partition_day=DAY).failed}
