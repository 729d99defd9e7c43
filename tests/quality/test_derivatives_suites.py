"""The derivatives suites pass clean rows and fail exactly the check of each injected fault."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from quality import check_names, run_suite
from tapeflow.schemas.derivatives import (
    FUNDING_RATE,
    INDEX_PRICE,
    INSURANCE_FUND,
    LIQUIDATION,
    MARK_PRICE,
    OPEN_INTEREST,
)
from tapeflow.schemas.records import ASK, BID, NO_SIDE, SCALE, UNDEF_PRICE

DAY = "2024-01-01"
T0 = 1_704_067_200 * SCALE + 3_600 * SCALE  # 01:00 UTC
N = 6


def _table(record, **cols) -> pa.Table:
    times = [T0 + i * SCALE for i in range(N)]
    base = {"ts_event_ns": times, "ts_recv_ns": [t + 1_000_000 for t in times]}
    return record.table({**base, **cols}, constants={"venue": "binance-usdm", "symbol": "BTCUSDT"})


def _clean() -> dict[str, pa.Table]:
    eight = T0 + 7 * 3_600 * SCALE  # the next funding, 08:00
    return {
        "funding_rates": _table(
            FUNDING_RATE,
            funding_rate=[0.0001, -0.0375, math.nan, 0.0, 0.0002, 0.00015],
            funding_time_ns=[eight, eight, eight, -1, eight, eight],
            predicted_rate=[math.nan, math.nan, 0.0003, math.nan, 0.0001, math.nan],
            settled=[0] * N,
        ),
        # an expired option's zero mark and a spread's negative one are real
        "mark_prices": _table(
            MARK_PRICE, mark_price_nanos=[42_000 * SCALE, 0, -5 * SCALE, 41_999 * SCALE, 1, 3_800_576_422]
        ),
        "index_prices": _table(INDEX_PRICE, index_price_nanos=[42_000 * SCALE] * N),
        "open_interest": _table(
            OPEN_INTEREST,
            open_interest_nanos=[0, 10, 20, 30, 40, 50],
            open_interest_value_nanos=[UNDEF_PRICE, 0, 5, 6, 7, 8],
        ),
        "liquidations": _table(
            LIQUIDATION,
            liquidation_id=[""] * N,
            side=[BID, ASK] * 3,
            price_nanos=[42_000 * SCALE] * N,
            size_nanos=[14_000_000] * N,
        ),
        "insurance_funds": _table(INSURANCE_FUND, asset=["USDT"] * N, balance_nanos=[0, 1, 2, 3, 4, 5]),
    }


def _with(table: pa.Table, name: str, row: int, value) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    i = table.column_names.index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


@pytest.mark.parametrize("dataset", sorted(_clean()))
def test_clean_rows_pass_every_check(dataset: str) -> None:
    result = run_suite(dataset, _clean()[dataset], partition_day=DAY)
    assert result.passed, [(c.name, c.examples) for c in result.failed]
    assert [c.name for c in result.checks] == list(check_names(dataset))


FAULTS = [
    ("funding_rates", "funding_rate", 0.5, "rate_range"),  # a decimal read in the wrong place
    ("funding_rates", "predicted_rate", -0.2, "rate_range"),
    ("funding_rates", "funding_time_ns", T0, "funding_time_order"),  # funding before the estimate
    ("funding_rates", "settled", 2, "settled_code"),
    ("mark_prices", "mark_price_nanos", 10**18 + 1, "price_range"),  # above max_price_nanos
    ("index_prices", "index_price_nanos", 0, "price_range"),
    ("open_interest", "open_interest_nanos", -1, "size_range"),
    ("liquidations", "side", NO_SIDE, "side_code"),
    ("liquidations", "size_nanos", 0, "size_range"),
    ("liquidations", "ts_event_ns", T0 - 2 * 3_600 * SCALE, "ts_within_day"),
    ("insurance_funds", "balance_nanos", -5, "size_range"),
]


@pytest.mark.parametrize(("dataset", "column", "value", "check"), FAULTS)
def test_one_fault_fails_its_check_once(dataset: str, column: str, value, check: str) -> None:
    bad = _with(_clean()[dataset], column, 2, value)
    result = run_suite(dataset, bad, partition_day=DAY)
    assert {c.name: c.unexpected_count for c in result.failed} == {check: 1}


def test_a_settled_rate_is_stamped_with_its_funding_time() -> None:
    clean = _clean()["funding_rates"]
    settled = _with(_with(clean, "settled", 1, 1), "funding_time_ns", 1, T0 + SCALE)
    assert run_suite("funding_rates", settled, partition_day=DAY).passed
    late = _with(settled, "funding_time_ns", 1, T0 + 2 * SCALE)
    assert {c.name for c in run_suite("funding_rates", late, partition_day=DAY).failed} == {
        "funding_time_order"
    }
