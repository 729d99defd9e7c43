"""Planned suites (exact counts and witness rows, no GX yet) and their validation in batches.

:func:`plan` turns one partition's planned checks (``SuiteData`` after ``suite.plan``) into a
:class:`Plan`: per expectation the exact outcome over the whole column (:func:`quality.exact.judge`),
its witness values, and the examples a report shows. The table itself is not kept, so a run can
plan partition after partition in bounded memory.

:func:`validate` hands the witnesses of many plans to Great Expectations at once, in two kinds of
runs: the column-list and column-type expectations over each dataset's own rows (one run per
dataset and column-type signature), and one run for every column expectation of every plan, where
each expectation kind and threshold (``ExpectColumnValuesToBeBetween`` 0..86,399,999,999,999 say)
is one GX expectation over the stacked witness values of every column and partition it applies to,
under row ids that say whose value each is. GX's planning costs ~15 ms per expectation and little
per row, so the cost no longer grows with partitions, datasets of a step or rows. GX's verdict
for each (partition, column) must equal the exact one (else :class:`~quality.exact.EngineMismatch`);
the results carry the exact counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from quality.checks import Check, SuiteData
from quality.engine import Expect
from quality.engine import validate as gx_validate
from quality.exact import MAP_KINDS, EngineMismatch, Judgement, judge
from quality.result import CheckResult, SuiteResult

_MAX_EXAMPLES = 5
_ID_SHIFT = 40  # a row id is (plan << 40) | row: unique across the plans of one validation
_RESULT_FORMAT = {"result_format": "COMPLETE"}
_TABLE_FORMAT = {"result_format": "BOOLEAN_ONLY"}


@dataclass
class PlannedCheck:
    """One check of a plan: its expectations with their exact outcomes, before GX."""

    name: str
    description: str
    frame: str
    expects: list[Expect]
    judgements: list[Judgement]
    details: dict[str, Any]
    examples: list[dict[str, Any]]
    skipped: str | None = None


@dataclass
class Plan:
    """One dataset partition, planned: what GX must validate and everything the result reports.

    Attributes:
        dataset, day, row_count: the partition.
        checks: the planned checks, in suite order.
        table_frame: witness rows of the table's own columns (first row, first null of each column)
            for the column-type and column-list expectations.
    """

    dataset: str
    day: str | None
    row_count: int
    checks: list[PlannedCheck]
    table_frame: pd.DataFrame | None = None


def plan(data: SuiteData) -> Plan:
    """Judge every planned check of ``data`` exactly and keep its witness rows (see module docstring)."""
    rows = data.table.num_rows
    planned: list[PlannedCheck] = []
    table_rows: list[np.ndarray] = []
    for check in data.checks:
        if check.skipped:
            planned.append(PlannedCheck(check.name, check.description, check.frame, [], [],
                                        {**check.details, "skipped": check.skipped}, [], check.skipped))
            continue
        source = _source(data, check.frame)
        size = rows if check.frame != "day" else _day_rows(data)
        judged: list[Judgement | None] = []
        for e in check.expects:
            if data.carry is not None and e.kwargs.get("column") in data.carry.deferred:
                judged.append(None)  # judged by quality.slices once every slice is seen
                continue
            column = source.get(e.kwargs["column"]) if "column" in e.kwargs else None
            j = judge(e, column, size, table=data.table if check.frame == "rows" else None)
            if e.kind in MAP_KINDS:
                j.samples = _samples(column, j.witnesses)
            else:
                table_rows.append(j.witnesses)
            judged.append(j)
        planned.append(PlannedCheck(check.name, check.description, check.frame, check.expects, judged,
                                    dict(check.details),
                                    _examples(data, check, judged, None if data.carry else _MAX_EXAMPLES)))
    frame = None
    if table_rows:
        at = np.unique(np.concatenate(table_rows))
        frame = data.table.take(at).to_pandas()
        frame.index = at
    return Plan(data.dataset, data.day, rows, planned, frame)


def _samples(column: Any, at: np.ndarray) -> pd.Series:
    """The witness values of a column, typed so that stacking keeps them exact (nullable integers)."""
    if isinstance(column, pa.ChunkedArray | pa.Array):
        values = column.take(pa.array(at)).to_pandas()
    else:
        values = pd.Series(column[at])
    if values.dtype.kind in "iu":
        values = values.astype("Int64")
    elif values.dtype == bool:
        values = values.astype("boolean")
    values.index = at
    return values


def validate(plans: Sequence[Plan]) -> list[SuiteResult]:
    """Validate the witnesses of ``plans`` with Great Expectations and return one result per plan.

    Two kinds of GX runs: per dataset and column-type signature, the column-list and column-type
    expectations over the partitions' own rows; then one run for every column expectation of
    every plan, each kind and threshold one GX expectation over the stacked witnesses of all the
    columns and partitions it applies to.

    Raises:
        EngineMismatch: GX's verdict on a partition differs from the exact one (a bug).
    """
    verdicts: dict[tuple[int, int, int], bool] = {}  # (plan, check, expectation) -> GX success
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(plans):
        if p.table_frame is not None:
            signature = tuple((c, str(t)) for c, t in p.table_frame.dtypes.items())
            groups.setdefault((p.dataset, signature), []).append(i)
    for (dataset, _), members in groups.items():
        verdicts.update(_table_level(f"{dataset}.table", plans, members))
    verdicts.update(_stacked(plans))
    return [_result(i, p, verdicts) for i, p in enumerate(plans)]


def _table_level(name: str, plans: Sequence[Plan], group: list[int]) -> dict[tuple[int, int, int], bool]:
    slots: dict[tuple, list[tuple[int, int, int]]] = {}
    expects: dict[tuple, Expect] = {}
    for i in group:
        for c, check in enumerate(plans[i].checks):
            for e, expect in enumerate(check.expects):
                if expect.kind not in MAP_KINDS:
                    key = (expect.kind, json.dumps(expect.kwargs, sort_keys=True, default=str))
                    slots.setdefault(key, []).append((i, c, e))
                    expects[key] = expect
    frames = []
    for i in group:
        frame = plans[i].table_frame.copy()  # type: ignore[union-attr]
        frame.index = (np.int64(i) << _ID_SHIFT) + frame.index.to_numpy(np.int64)
        frames.append(frame)
    combined = pd.concat(frames) if len(frames) > 1 else frames[0]
    outcomes = gx_validate(name, combined, [[expects[k]] for k in slots], result_format=_TABLE_FORMAT)
    return {user: outcome.success for (_, users), (outcome,) in zip(slots.items(), outcomes, strict=True)
            for user in users}


def _stacked(plans: Sequence[Plan]) -> dict[tuple[int, int, int], bool]:
    """One GX run for every column expectation of ``plans`` (see :func:`validate`)."""
    slots: dict[tuple, list[int]] = {}
    entries: list[tuple[int, int, int]] = []
    for i, p in enumerate(plans):
        for c, check in enumerate(p.checks):
            for e, expect in enumerate(check.expects):
                if expect.kind not in MAP_KINDS:
                    continue
                kw = {k: v for k, v in expect.kwargs.items() if k != "column"}
                # a share-of-rows verdict belongs to one column of one partition
                owner = len(entries) if "mostly" in kw else None
                slots.setdefault((expect.kind, json.dumps(kw, sort_keys=True, default=str), owner),
                                 []).append(len(entries))
                entries.append((i, c, e))
    if not entries:
        return {}
    columns, expects = {}, []
    for n, ((kind, thresholds, _), members) in enumerate(slots.items()):
        parts = []
        for entry in members:
            i, c, e = entries[entry]
            samples = plans[i].checks[c].judgements[e].samples
            parts.append(pd.Series(samples.array, index=(np.int64(entry) << _ID_SHIFT)
                                   + samples.index.to_numpy(np.int64)))
        columns[f"slot{n}"] = pd.concat(parts) if len(parts) > 1 else parts[0]
        expects.append([Expect(kind, {"column": f"slot{n}", **json.loads(thresholds)})])
    frame = pd.concat(columns, axis=1)
    outcomes = gx_validate("witnesses", frame, expects, result_format=_RESULT_FORMAT)
    out = {}
    for ((_, _, owner), members), (outcome,) in zip(slots.items(), outcomes, strict=True):
        failing = {int(i) >> _ID_SHIFT for i in outcome.result.get("unexpected_index_list") or []}
        for entry in members:
            out[entries[entry]] = outcome.success if owner is not None else entry not in failing
    return out


def _source(data: SuiteData, frame: str) -> dict[str, Any]:
    if frame == "rows":
        return {c: data.table.column(c) for c in data.table.column_names}
    return data.derived if frame == "derived" else data.day_rows


def _day_rows(data: SuiteData) -> int:
    return max((len(v) for v in data.day_rows.values()), default=0)


def _result(i: int, p: Plan, verdicts: dict[tuple[int, int, int], bool]) -> SuiteResult:
    out = []
    for c, check in enumerate(p.checks):
        if check.skipped:
            out.append(CheckResult(check.name, True, 0, 0, details=check.details,
                                   description=check.description))
            continue
        summaries = []
        for e, (expect, judged) in enumerate(zip(check.expects, check.judgements, strict=True)):
            gx = verdicts.get((i, c, e))
            if gx is None or gx != judged.passed:
                raise EngineMismatch(
                    f"{p.dataset} {p.day} check {check.name}: {expect.kind} {expect.kwargs} is "
                    f"{'passed' if judged.passed else 'failed'} by the exact count "
                    f"({judged.unexpected_count} of {judged.judged}) but GX says "
                    f"{'nothing' if gx is None else ('passed' if gx else 'failed')} on the witness rows")
            summaries.append(_summary(expect, judged))
        passed = bool(check.judgements) and all(j.passed for j in check.judgements)
        unexpected = sum(j.unexpected_count for j in check.judgements)
        elements = len(check.judgements) if check.name == "schema" else \
            max((j.judged for j in check.judgements), default=0)
        examples = check.examples
        if not examples:
            failing = [s for s in summaries if not s["success"]][:_MAX_EXAMPLES]
            examples = [jsonable({"location": f"column {s['column']}" if "column" in s else "table", **s})
                        for s in failing]
        details = jsonable({**check.details, "expectations": summaries})
        out.append(CheckResult(check.name, passed, unexpected, elements, examples, details,
                               check.description))
    return SuiteResult(p.dataset, p.day, p.row_count, out)


def _summary(expect: Expect, judged: Judgement) -> dict[str, Any]:
    out: dict[str, Any] = {"expectation": expect.kind, "success": judged.passed,
                           **{k: v for k, v in expect.kwargs.items() if k != "column_list"}}
    if judged.observed is not None:
        out["observed_value"] = judged.observed
    else:
        out["element_count"] = judged.rows
        out["unexpected_count"] = judged.unexpected_count
        if expect.kind != "ExpectColumnValuesToNotBeNull":
            out["missing_count"] = judged.rows - judged.judged
        out["partial_unexpected_list"] = judged.unexpected_values[:_MAX_EXAMPLES]
    out["rows_validated_by_gx"] = len(judged.witnesses)
    return out


def _examples(data: SuiteData, check: Check, judged: list[Judgement | None],
              limit: int | None = _MAX_EXAMPLES) -> list[dict[str, Any]]:
    index: set[int] = set()
    for j in judged:
        if j is not None:
            index.update(int(i) for i in j.unexpected[:20])
    return [_example(data, check, i) for i in sorted(index)[:limit]]


def _example(data: SuiteData, check: Check, i: int) -> dict[str, Any]:
    if check.frame == "day":
        return {"location": f"instrument {i}", **data.day_examples.get(check.show[0], [{}] * (i + 1))[i]}
    row = {"location": f"row {i}"}
    row.update({k: v for k, v in data.table.slice(i, 1).to_pylist()[0].items() if not isinstance(v, bytes)})
    for name in check.show:
        if name in data.derived:
            row[name] = data.derived[name][i]
    return jsonable(row)


def jsonable(value: Any) -> Any:
    """Plain JSON values (Dagster metadata and the Data Docs page take nothing else)."""
    import datetime as dt
    from collections.abc import Mapping
    from pathlib import Path

    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        # strict JSON (Dagster metadata) has no Infinity: a flat baseline's z-score says so in words
        return float(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path | dt.date):
        return str(value)
    return value
