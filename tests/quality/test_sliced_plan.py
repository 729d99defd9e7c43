"""A partition planned slice by slice (``quality.slices.SlicedPlanner``) equals it planned whole.

The suites of the ingest step, on the simulated day clean and with the injected faults of
``test_witnesses`` that touch them (and a price band broken by a few executions), planned whole
(``quality.plan_suite``) and fed in four uneven slices, and in slices of 7 rows over its head:
every check's counts, verdict, offending rows and values, witnesses and their values, examples,
details and the schema's witness rows must be identical, so a backfill can plan a day it never
holds whole. GX then validates both plans of one faulty case to the same results.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from quality import plan_suite, validate_plans
from quality.plan import Plan, jsonable
from quality.slices import SlicedPlanner
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import L3_TRADE
from tests.quality.conftest import DAY
from tests.quality.test_witnesses import (
    _backwards,
    _clean,
    _dropped_sequences,
    _gap_flags,
    _outside_book,
    _tolerated_crossings,
    _volume_off_baseline,
    _with,
)


def _band_broken(day):
    events = day.order_events
    price = events.column("price_nanos").to_numpy().copy()
    traded = np.flatnonzero(events.column("action").to_numpy() == L3_TRADE)
    price[traded[[3, 40, 41, 500]]] *= 3  # executions far off the day's median
    return "order_events", _with(events, "price_nanos", price), {}


# the faults whose checks cross slices (chains, silences, day totals, rates, the band, the book)
CASES = [*(_clean(d) for d in ("trades", "order_events", "book_deltas", "quotes")), _dropped_sequences,
         _gap_flags, _outside_book, _backwards, _volume_off_baseline, _tolerated_crossings, _band_broken]


def _sliced(dataset: str, table: pa.Table, size: int, **kwargs) -> Plan:
    planner = SlicedPlanner(dataset, partition_day=DAY, slice_rows=0, **kwargs)
    for start in range(0, table.num_rows, size):
        planner.add(table.slice(start, size))
    return planner.finish()


def _same_plan(got: Plan, want: Plan) -> None:
    assert (got.dataset, got.day, got.row_count) == (want.dataset, want.day, want.row_count)
    assert [c.name for c in got.checks] == [c.name for c in want.checks]
    for g, w in zip(got.checks, want.checks, strict=True):
        assert (g.skipped, g.frame, g.expects) == (w.skipped, w.frame, w.expects), w.name
        assert jsonable(g.details) == jsonable(w.details), w.name
        assert jsonable(g.examples) == jsonable(w.examples), w.name
        for gj, wj in zip(g.judgements, w.judgements, strict=True):
            assert (gj.rows, gj.judged, gj.unexpected_count, gj.passed, gj.observed) == \
                (wj.rows, wj.judged, wj.unexpected_count, wj.passed, wj.observed), w.name
            for field in ("unexpected", "witnesses"):
                np.testing.assert_array_equal(getattr(gj, field), getattr(wj, field), err_msg=w.name)
            # the rows only a whole column decides (a value set's are in value order for small codes)
            np.testing.assert_array_equal(np.sort(gj.anchors), np.sort(wj.anchors), err_msg=w.name)
            assert jsonable(gj.unexpected_values) == jsonable(wj.unexpected_values), w.name
            if wj.samples is not None:
                pd.testing.assert_series_equal(gj.samples, wj.samples, check_names=False)
    if want.table_frame is None:
        assert got.table_frame is None
    else:
        pd.testing.assert_frame_equal(got.table_frame, want.table_frame)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.strip("_"))
def test_sliced_plan_equals_whole(sim_day, case) -> None:
    dataset, table, kwargs = case(sim_day)
    want = plan_suite(dataset, table, partition_day=DAY, **kwargs)
    # uneven slices: four over the table, then 7 rows over its head (every row near a boundary)
    _same_plan(_sliced(dataset, table, table.num_rows // 4 + 3, **kwargs), want)
    head = table.slice(0, 70)
    _same_plan(_sliced(dataset, head, 7, **kwargs), plan_suite(dataset, head, partition_day=DAY, **kwargs))


def test_the_broken_band_fails_with_its_rows_and_gx_agrees(sim_day) -> None:
    dataset, table, _ = _band_broken(sim_day)
    whole, sliced = validate_plans([plan_suite(dataset, table, partition_day=DAY),
                                    _sliced(dataset, table, table.num_rows // 3 + 1)])
    check = sliced.check("price_range")
    assert not check.passed and check.unexpected_count == 4
    assert [jsonable(c.__dict__) for c in sliced.checks] == [jsonable(c.__dict__) for c in whole.checks]


def test_a_second_instrument_is_refused(sim_day) -> None:
    events = sim_day.order_events
    other = _with(events.slice(0, 10), "symbol", ["OTHER"] * 10)
    planner = SlicedPlanner("order_events", partition_day=DAY, slice_rows=0)
    planner.add(events.slice(0, 10))
    with pytest.raises(ConfigError, match="one instrument"):
        planner.add(other)
