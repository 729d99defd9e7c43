"""A column judged slice by slice and merged (``quality.exact.merge``) equals it judged whole.

Every expectation of every suite, on the simulated day's tables clean and with each injected
fault of ``test_witnesses``, is judged over the whole column and over consecutive slices of 1, 7
and 1,000 rows (and one slice): counts, offending rows and values, witnesses, dtype and verdict
must be identical, so a day can be planned without holding it whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from quality import QualityConfig, runner
from quality.checks import SuiteData
from quality.engine import Expect
from quality.exact import EngineMismatch, Judgement, judge, merge
from tests.quality.conftest import DAY
from tests.quality.test_witnesses import CASES

SIZES = (1, 7, 1000, None)
# slices of 1 and 7 rows run over the head of each table (every row of it a slice boundary)
SMALL_HEAD_ROWS = 300


def _cut(column: Any, start: int, stop: int) -> Any:
    if column is None:
        return None
    if isinstance(column, pa.ChunkedArray | pa.Array):
        return column.slice(start, stop - start)
    return column[start:stop]


def _sliced(expect: Expect, column: Any, table: pa.Table | None, rows: int, size: int | None) -> Judgement:
    size = size or max(rows, 1)
    parts = []
    for start in range(0, max(rows, 1), size):
        stop = min(start + size, rows)
        part = table.slice(start, stop - start) if table is not None else None
        parts.append(judge(expect, _cut(column, start, stop), stop - start, table=part))
    return merge(expect, parts)


def _same(got: Judgement, want: Judgement) -> None:
    assert (got.rows, got.judged, got.unexpected_count, got.passed) == \
        (want.rows, want.judged, want.unexpected_count, want.passed)
    np.testing.assert_array_equal(got.unexpected, want.unexpected)
    np.testing.assert_array_equal(got.witnesses, want.witnesses)
    assert got.observed == want.observed
    np.testing.assert_array_equal(np.asarray(got.unexpected_values, object),
                                  np.asarray(want.unexpected_values, object))


def _planned(dataset: str, table: pa.Table, **kwargs: Any) -> SuiteData:
    config = kwargs.pop("config", None) or QualityConfig()
    book = kwargs.pop("book", None)
    baseline = kwargs.pop("baseline", None)
    data = SuiteData(dataset, runner.derive.plain(table), config, DAY, False, baseline=baseline,
                     book=runner.derive.plain(book) if book is not None else None)
    runner._suite(dataset).plan(data)
    return data


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.strip("_"))
def test_sliced_judgements_equal_whole_column(sim_day, case) -> None:
    dataset, table, kwargs = case(sim_day)
    data = _planned(dataset, table, **kwargs)
    compared = 0
    for check in data.checks:
        if check.skipped or check.frame == "day":
            continue
        source = ({c: data.table.column(c) for c in data.table.column_names} if check.frame == "rows"
                  else data.derived)
        rows = data.table.num_rows
        for expect in check.expects:
            column = source.get(expect.kwargs["column"]) if "column" in expect.kwargs else None
            whole_table = data.table if check.frame == "rows" else None
            for size in SIZES:
                n = min(rows, SMALL_HEAD_ROWS) if size is not None and size < 10 else rows
                head = whole_table.slice(0, n) if whole_table is not None else None
                want = judge(expect, _cut(column, 0, n), n, table=head)
                _same(_sliced(expect, _cut(column, 0, n), head, n, size), want)
                compared += 1
    assert compared > 0


def test_merge_finds_the_extremes_and_values_of_later_slices() -> None:
    values = np.array([5, 3, 9, 3, 1, 9, 1, 7], np.int64)
    between = Expect("ExpectColumnValuesToBeBetween", {"column": "x", "min_value": 2, "max_value": 8})
    in_set = Expect("ExpectColumnValuesToBeInSet", {"column": "x", "value_set": [3, 5, 7]})
    for expect in (between, in_set):
        parts = [judge(expect, values[i:i + 3], len(values[i:i + 3])) for i in range(0, 8, 3)]
        got = merge(expect, parts)
        # minimum 1 first at row 4, maximum 9 first at row 2; first rows of 5, 3, 9, 1, 7: 0, 1, 2, 4, 7
        want = [4, 2] if expect is between else [0, 1, 2, 4, 7]
        assert got.witnesses.tolist() == sorted(set(want) | set(got.unexpected.tolist()))
        assert got.unexpected.tolist() == [2, 4, 5, 6]
        assert not got.passed


def test_merge_of_nothing_is_an_error() -> None:
    with pytest.raises(EngineMismatch):
        merge(Expect("ExpectColumnValuesToNotBeNull", {"column": "x"}), [])


@pytest.mark.realdata
def test_real_es_order_events_sliced_equal_whole(real_data) -> None:
    from tapeflow.venues.databento.parse import decode_all
    from tests.conftest import need
    from tests.quality.test_realdata import ES

    events = decode_all([need(real_data / ES)])["order_event"]
    data = _planned("order_events", events)
    rows = data.table.num_rows
    for check in (c for c in data.checks if not c.skipped and c.frame != "day"):
        source = ({c: data.table.column(c) for c in data.table.column_names} if check.frame == "rows"
                  else data.derived)
        for expect in check.expects:
            column = source.get(expect.kwargs["column"]) if "column" in expect.kwargs else None
            table = data.table if check.frame == "rows" else None
            want = judge(expect, column, rows, table=table)
            for size in (1000, 7919):
                _same(_sliced(expect, column, table, rows, size), want)
