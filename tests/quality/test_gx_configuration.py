"""GX builds each expectation's configuration once per validation, with the same verdicts as without.

The reference is the same suite run with GX's own property (the memo switched off in the test);
rows are altered here so that checks fail with examples, which must come out identical too.
"""

from __future__ import annotations

import contextlib
import dataclasses

import pyarrow as pa
import pytest

from quality import engine, run_suite
from tests.quality.conftest import DAY


def _bad_trades(trades: pa.Table) -> pa.Table:
    size = trades.column("size_nanos").to_numpy().copy()
    size[[3, 7, 11]] = -size[[3, 7, 11]]  # three negative sizes: size_range fails with 3 examples
    i = trades.schema.get_field_index("size_nanos")
    return trades.set_column(i, trades.schema.field(i), pa.array(size, pa.int64()))


@pytest.mark.parametrize("dataset", ["trades", "book_deltas", "book_snapshots"])
def test_memoized_configuration_gives_the_same_results(sim_day, monkeypatch, dataset: str) -> None:
    table = _bad_trades(sim_day.trades) if dataset == "trades" else sim_day.table(dataset)
    fast = run_suite(dataset, table, partition_day=DAY)
    monkeypatch.setattr(engine, "_configuration_once", contextlib.nullcontext)
    plain = run_suite(dataset, table, partition_day=DAY)
    assert dataclasses.asdict(fast) == dataclasses.asdict(plain)
    if dataset == "trades":
        size = fast.check("size_range")
        assert not size.passed and size.unexpected_count == 3
        assert [e["location"] for e in size.examples] == ["row 3", "row 7", "row 11"]


def test_configuration_is_built_once_per_expectation_object_and_the_property_restored(sim_day,
                                                                                     monkeypatch) -> None:
    from great_expectations.expectations.expectation import Expectation

    original = Expectation.__dict__["configuration"]
    built: list[int] = []

    def counting(self: Expectation) -> object:
        built.append(id(self))
        return original.fget(self)

    monkeypatch.setattr(Expectation, "configuration", property(counting))
    counted = Expectation.__dict__["configuration"]
    result = run_suite("trades", sim_day.trades, partition_day=DAY)
    memoized = len(built)
    assert Expectation.__dict__["configuration"] is counted  # restored for any other GX user
    expectations = sum(len(c.details.get("expectations", [])) for c in result.checks)
    assert expectations > 10
    # GX makes a few objects per expectation (copies per planning round): each is built once
    assert memoized < 20 * expectations
    built.clear()
    monkeypatch.setattr(engine, "_configuration_once", contextlib.nullcontext)
    run_suite("trades", sim_day.trades, partition_day=DAY)
    assert len(built) > 5 * memoized  # GX alone rebuilds it on every access
