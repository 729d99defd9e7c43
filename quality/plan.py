"""Planned suites (exact counts and witness rows, no GX yet) and their validation in batches.

:func:`plan` turns one partition's planned checks (``SuiteData`` after ``suite.plan``) into a
:class:`Plan`: per expectation the exact outcome over the whole column (:func:`quality.exact.judge`),
the examples a report shows, and small frames of witness rows. The table itself is not kept, so a
run can plan partition after partition in bounded memory.

:func:`validate` hands the witnesses of many plans to Great Expectations at once: per dataset one
GX run per frame kind (``rows``: the table's own columns, one run per column-type signature;
``derived``; ``day``), every partition's rows in one frame under ids that say whose row each is.
An expectation shared by all partitions (same kind, column and thresholds) is one GX expectation;
where the thresholds differ per partition (the day's bounds) each variant reads its own copy of
the column. GX's verdict for each partition must equal the exact one (else
:class:`~quality.exact.EngineMismatch`); the results carry the exact counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from quality.checks import Check, SuiteData
from quality.engine import Expect, Outcome
from quality.engine import validate as gx_validate
from quality.exact import MAP_KINDS, EngineMismatch, Judgement, judge
from quality.result import CheckResult, SuiteResult

_MAX_EXAMPLES = 5
_ID_SHIFT = 40  # a row id is (plan << 40) | row: unique across the plans of one validation
_RESULT_FORMAT = {"result_format": "COMPLETE"}


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
    """One dataset partition, planned: what GX must validate and everything the result reports."""

    dataset: str
    day: str | None
    row_count: int
    checks: list[PlannedCheck]
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # frame kind -> witness rows


def plan(data: SuiteData) -> Plan:
    """Judge every planned check of ``data`` exactly and keep its witness rows (see module docstring)."""
    rows = data.table.num_rows
    planned: list[PlannedCheck] = []
    witnesses: dict[str, list[np.ndarray]] = {"rows": [], "derived": [], "day": []}
    for check in data.checks:
        if check.skipped:
            planned.append(PlannedCheck(check.name, check.description, check.frame, [], [],
                                        {**check.details, "skipped": check.skipped}, [], check.skipped))
            continue
        source = _source(data, check.frame)
        size = rows if check.frame != "day" else _day_rows(data)
        judged = [judge(e, source.get(e.kwargs.get("column")) if "column" in e.kwargs else None, size,
                        table=data.table if check.frame == "rows" else None) for e in check.expects]
        witnesses[check.frame] += [j.witnesses for j in judged]
        planned.append(PlannedCheck(check.name, check.description, check.frame, check.expects, judged,
                                    dict(check.details), _examples(data, check, judged)))
    frames = {}
    for kind, parts in witnesses.items():
        at = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        frames[kind] = _witness_frame(data, kind, at, [c for c in planned if c.frame == kind])
    return Plan(data.dataset, data.day, rows, planned, frames)


def validate(plans: Sequence[Plan]) -> list[SuiteResult]:
    """Validate the witnesses of ``plans`` with Great Expectations and return one result per plan.

    Raises:
        EngineMismatch: GX's verdict on a partition differs from the exact one (a bug).
    """
    verdicts: dict[tuple[int, int, int], bool] = {}  # (plan, check, expectation) -> GX success
    by_dataset: dict[str, list[int]] = {}
    for i, p in enumerate(plans):
        by_dataset.setdefault(p.dataset, []).append(i)
    for dataset, members in by_dataset.items():
        for kind in ("rows", "derived", "day"):
            for group in _groups(plans, members, kind):
                verdicts.update(_run(f"{dataset}.{kind}", plans, group, kind))
    return [_result(i, p, verdicts) for i, p in enumerate(plans)]


def _source(data: SuiteData, frame: str) -> dict[str, Any]:
    if frame == "rows":
        return {c: data.table.column(c) for c in data.table.column_names}
    return data.derived if frame == "derived" else data.day_rows


def _day_rows(data: SuiteData) -> int:
    return max((len(v) for v in data.day_rows.values()), default=0)


def _witness_frame(data: SuiteData, kind: str, at: np.ndarray, checks: list[PlannedCheck]) -> pd.DataFrame:
    if kind == "rows":
        frame = data.table.take(at).to_pandas()
    else:
        source = _source(data, kind)
        used = sorted({e.kwargs["column"] for c in checks for e in c.expects if "column" in e.kwargs})
        frame = pd.DataFrame({name: source[name][at] for name in used})
    frame.index = at
    return frame


def _groups(plans: Sequence[Plan], members: list[int], kind: str) -> list[list[int]]:
    """Plans whose ``kind`` frames GX can validate together: ``rows`` frames must share column types."""
    if kind != "rows":
        return [members]
    out: dict[tuple, list[int]] = {}
    for i in members:
        frame = plans[i].frames["rows"]
        out.setdefault(tuple((c, str(t)) for c, t in frame.dtypes.items()), []).append(i)
    return list(out.values())


@dataclass
class _Slot:
    expect: Expect
    users: list[tuple[int, int, int]] = field(default_factory=list)  # (plan, check, expectation)


def _run(name: str, plans: Sequence[Plan], group: list[int], kind: str
         ) -> dict[tuple[int, int, int], bool]:
    slots: dict[tuple, _Slot] = {}
    for i in group:
        for c, check in enumerate(plans[i].checks):
            if check.frame != kind:
                continue
            for e, expect in enumerate(check.expects):
                kw = {k: v for k, v in expect.kwargs.items() if k != "column"}
                # a share-of-rows verdict belongs to one partition: its column is its own
                owner = i if "mostly" in kw else None
                thresholds = json.dumps(kw, sort_keys=True, default=str)
                key = (expect.kind, expect.kwargs.get("column"), thresholds, owner)
                slots.setdefault(key, _Slot(expect)).users.append((i, c, e))
    if not slots:
        return {}
    columns = _column_names(list(slots), kind)
    frames = []
    for i in group:
        base = plans[i].frames[kind]
        frame = base if kind == "rows" else pd.DataFrame(index=base.index)
        if kind != "rows":
            for key, slot in slots.items():
                if any(u[0] == i for u in slot.users):
                    frame[columns[key]] = base[slot.expect.kwargs["column"]].array
        frame = frame.copy()
        frame.index = (np.int64(i) << _ID_SHIFT) + base.index.to_numpy(np.int64)
        frames.append(frame)
    combined = pd.concat(frames) if len(frames) > 1 else frames[0]
    expects = []
    for key, slot in slots.items():
        kw = dict(slot.expect.kwargs)
        if "column" in kw:
            kw["column"] = columns[key]
        expects.append([Expect(slot.expect.kind, kw)])
    outcomes = gx_validate(name, combined, expects, result_format=_RESULT_FORMAT)
    out = {}
    for (key, slot), (outcome,) in zip(slots.items(), outcomes, strict=True):
        failing = _failing_plans(outcome)
        for user in slot.users:
            out[user] = outcome.success if (key[3] is not None or slot.expect.kind not in MAP_KINDS) \
                else user[0] not in failing
    return out


def _column_names(keys: list[tuple], kind: str) -> dict[tuple, str]:
    """Frame column per slot: the column's own name, or ``<column>@<n>`` where thresholds differ."""
    by_column: dict[str | None, list[tuple]] = {}
    for key in keys:
        by_column.setdefault(key[1], []).append(key)
    out = {}
    for column, variants in by_column.items():
        for n, key in enumerate(variants):
            out[key] = column if (len(variants) == 1 or kind == "rows") else f"{column}@{n}"
    return out


def _failing_plans(outcome: Outcome) -> set[int]:
    ids = outcome.result.get("unexpected_index_list") or []
    return {int(i) >> _ID_SHIFT for i in ids}


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
        out["unexpected_count"] = len(judged.unexpected)
        if expect.kind != "ExpectColumnValuesToNotBeNull":
            out["missing_count"] = judged.rows - judged.judged
        out["partial_unexpected_list"] = judged.unexpected_values[:_MAX_EXAMPLES]
    out["rows_validated_by_gx"] = len(judged.witnesses)
    return out


def _examples(data: SuiteData, check: Check, judged: list[Judgement]) -> list[dict[str, Any]]:
    index: set[int] = set()
    for j in judged:
        index.update(int(i) for i in j.unexpected[:20])
    return [_example(data, check, i) for i in sorted(index)[:_MAX_EXAMPLES]]


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
