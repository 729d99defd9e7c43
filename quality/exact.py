"""Exact per-row outcome of an expectation, and the rows Great Expectations must see to reach it.

Great Expectations validates pandas frames row by row in Python-heavy code (about 2 us per row and
expectation here), which would be most of a backfill. Every expectation the suites use has a
verdict decided by a few rows: a range (``ExpectColumnValuesToBeBetween``) by the column's smallest
and largest values, a set (``...ToBeInSet``) by one row per distinct value, not-null by a null,
a column type by a null (pandas turns an integer column with a null into float64) and any row.
:func:`judge` computes, with numpy over the whole column, the exact counts (judged, missing,
unexpected rows) and picks those **witness rows**: the extremes, one row per distinct value, the
first null, and the first offending rows. GX then validates only the witnesses (``quality.plan``)
and its verdict must equal the exact one, or the run stops (:class:`EngineMismatch`): GX still
decides, on the rows that decide.

An expectation with ``mostly`` below 1 is judged on a share of rows, which no witness set
reproduces: its witnesses are every judged row (such thresholds are off by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from quality.engine import Expect
from tapeflow.errors import TapeflowError

# offending rows GX sees per expectation (as many as GX lists in a partial result)
WITNESS_UNEXPECTED = 20
_EMPTY = np.zeros(0, np.int64)
MAP_KINDS = frozenset({"ExpectColumnValuesToBeBetween", "ExpectColumnValuesToBeInSet",
                       "ExpectColumnValuesToNotBeNull"})


class EngineMismatch(TapeflowError):
    """Great Expectations and the exact count disagree on a verdict: a bug, never bad data."""


@dataclass
class Judgement:
    """The exact outcome of one expectation over a whole column (or table).

    Attributes:
        rows: rows of the frame.
        judged: rows the expectation applies to (not missing; all rows for not-null).
        unexpected_count: offending rows (table-level: 1 when failed, else 0).
        unexpected: positions of the first ``WITNESS_UNEXPECTED`` offending rows, ascending.
        passed: the exact verdict.
        witnesses: rows GX validates to reach the same verdict (ascending, unique).
        observed: table- or column-level observed value (column list, dtype name), else None.
        unexpected_values: values of the first offending rows (for the report).
    """

    rows: int
    judged: int
    unexpected_count: int
    unexpected: np.ndarray
    passed: bool
    witnesses: np.ndarray
    observed: Any = None
    unexpected_values: list[Any] = field(default_factory=list)
    samples: Any = None  # the witness values GX validates (column expectations), set by quality.plan
    # the witness rows that are not offending rows (first row, first null, extremes, first of each
    # value) and their values, in the order judge picks them: what merge() needs from each slice
    anchors: np.ndarray = field(default_factory=lambda: _EMPTY)
    anchor_values: Any = None


def column_values(data: Any, *, values: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """(values, missing mask) of a frame column: numpy, pandas nullable, or Arrow.

    With ``values=False`` only the mask is computed (a not-null check needs no values).
    """
    if isinstance(data, pa.ChunkedArray | pa.Array):
        missing = (data.is_null().to_numpy(zero_copy_only=False) if data.null_count
                   else np.zeros(len(data), bool))
        if not values:
            return None, missing
        if data.null_count and pa.types.is_boolean(data.type):
            data = pc.fill_null(data, False)
        elif data.null_count and pa.types.is_integer(data.type):
            data = pc.fill_null(data, 0)
        return data.to_numpy(zero_copy_only=False), missing
    if isinstance(data, pd.arrays.IntegerArray | pd.arrays.BooleanArray | pd.arrays.FloatingArray):
        return data._data, data._mask  # the arrays behind the extension type, no copy
    array = np.asarray(data)
    if array.dtype.kind == "f":
        return array, np.isnan(array)
    if array.dtype == object:
        return array, pd.isna(array)
    return array, np.zeros(len(array), bool)


def judge(expect: Expect, column: Any, rows: int, *, table: pa.Table | None = None) -> Judgement:
    """The exact outcome of ``expect`` and its witness rows.

    Args:
        expect: the expectation (one of :data:`MAP_KINDS`, ``ExpectColumnValuesToBeOfType`` or
            ``ExpectTableColumnsToMatchOrderedList``).
        column: the values of ``expect``'s column (None for table-level expectations).
        rows: rows of the frame.
        table: the Arrow table behind a ``rows`` frame (column types and nulls of the schema check).

    Raises:
        EngineMismatch: an expectation kind this module does not know (a suite bug).
    """
    kind, kw = expect.kind, expect.kwargs
    first = np.arange(min(rows, 1), dtype=np.int64)
    if kind == "ExpectTableColumnsToMatchOrderedList":
        observed = list(table.column_names) if table is not None else []
        ok = observed == list(kw["column_list"])
        return Judgement(rows, rows, int(not ok), _EMPTY, ok, first, observed, anchors=first)
    if kind == "ExpectColumnValuesToBeOfType":
        arrow = table.column(kw["column"])  # type: ignore[union-attr]
        nulls = arrow.is_null().to_numpy(zero_copy_only=False) if arrow.null_count else None
        null_rows = _first_true(nulls, 1) if nulls is not None else _EMPTY
        at = int(null_rows[0]) if len(null_rows) else 0
        # pandas picks a column's dtype from its Arrow type and whether it holds a null
        dtype = str(arrow.slice(at, min(rows, 1)).to_pandas().dtype)
        ok = dtype == kw["type_"]
        return Judgement(rows, rows, int(not ok), _EMPTY, ok, _union(first, null_rows), dtype,
                         anchors=null_rows)
    if kind not in MAP_KINDS:
        raise EngineMismatch(f"no exact rule for expectation {kind}")
    values, missing = column_values(column, values=kind != "ExpectColumnValuesToNotBeNull")
    if kind == "ExpectColumnValuesToNotBeNull":
        bad = missing
        judged_mask = None
        extra = first
    else:
        judged_mask = ~missing
        if kind == "ExpectColumnValuesToBeBetween":
            bad = np.zeros(rows, bool)
            if kw.get("min_value") is not None:
                bad |= values < kw["min_value"]
            if kw.get("max_value") is not None:
                bad |= values > kw["max_value"]
            bad &= judged_mask
            extra = _extremes(values, judged_mask)
        else:
            bad = judged_mask & ~np.isin(values, list(kw["value_set"]))
            extra = _first_of_each(values, judged_mask)
    judged = rows if judged_mask is None else int(np.count_nonzero(judged_mask))
    unexpected = np.flatnonzero(bad)
    mostly = float(kw.get("mostly", 1.0))
    if mostly < 1.0:
        passed = judged == 0 or (1.0 - len(unexpected) / judged) >= mostly
    else:
        passed = len(unexpected) == 0
    if mostly < 1.0:
        witnesses = np.flatnonzero(judged_mask) if judged_mask is not None else np.arange(rows)
    else:
        witnesses = _union(extra, unexpected[:WITNESS_UNEXPECTED])
    shown = values[unexpected[:WITNESS_UNEXPECTED]] if kind != "ExpectColumnValuesToNotBeNull" else []
    anchor_values = values[extra] if values is not None else None
    return Judgement(rows, judged, len(unexpected), unexpected[:WITNESS_UNEXPECTED], passed, witnesses,
                     unexpected_values=[_plain(v) for v in shown], anchors=extra, anchor_values=anchor_values)


def merge(expect: Expect, parts: Sequence[Judgement]) -> Judgement:
    """The judgement of a whole column from the judgements of its consecutive slices, in order.

    Equal to :func:`judge` over the concatenated slices: counts add up, offending rows and
    witnesses move to the whole column's positions, and the rows only a whole column decides
    (its extremes, the first row of each value, its first null, its dtype) are chosen among the
    slices' own, the earliest winning ties as ``np.argmin`` and ``drop_duplicates`` do.

    Raises:
        EngineMismatch: no slices, or an expectation kind :func:`judge` does not know.
    """
    if not parts:
        raise EngineMismatch(f"no slice judged for {expect.kind}")
    if len(parts) == 1:
        return parts[0]
    kind, kw = expect.kind, expect.kwargs
    offsets = np.cumsum([0] + [p.rows for p in parts[:-1]]).astype(np.int64)
    rows = sum(p.rows for p in parts)
    first = np.arange(min(rows, 1), dtype=np.int64)
    if kind == "ExpectTableColumnsToMatchOrderedList":
        head = parts[0]
        return Judgement(rows, rows, head.unexpected_count, _EMPTY, head.passed, first, head.observed,
                         anchors=first)
    if kind == "ExpectColumnValuesToBeOfType":
        # the dtype a whole column gets is the one of its first null's slice (else of its first row)
        nulls = [(p, o) for p, o in zip(parts, offsets, strict=True) if len(p.anchors)]
        head, at = nulls[0] if nulls else (next((p for p in parts if p.rows), parts[0]), None)
        null_rows = _EMPTY if at is None else head.anchors + at
        return Judgement(rows, rows, head.unexpected_count, _EMPTY, head.passed, _union(first, null_rows),
                         head.observed, anchors=null_rows)
    if kind not in MAP_KINDS:
        raise EngineMismatch(f"no exact rule for expectation {kind}")
    judged = sum(p.judged for p in parts)
    count = sum(p.unexpected_count for p in parts)
    unexpected = np.concatenate([p.unexpected + o for p, o in zip(parts, offsets, strict=True)])
    unexpected = unexpected[:WITNESS_UNEXPECTED].astype(np.int64)
    shown = [v for p in parts for v in p.unexpected_values][:WITNESS_UNEXPECTED]
    values = None
    if kind == "ExpectColumnValuesToNotBeNull":
        extra = first
    else:
        positions = [p.anchors + o for p, o in zip(parts, offsets, strict=True) if len(p.anchors)]
        values = [p.anchor_values for p in parts if len(p.anchors)]
        if not positions:
            extra = _EMPTY
        elif kind == "ExpectColumnValuesToBeBetween":
            # each slice's anchors are [row of its minimum, row of its maximum]
            low = np.array([v[0] for v in values])
            high = np.array([v[1] for v in values])
            lo, hi = int(np.argmin(low)), int(np.argmax(high))
            extra = np.array([positions[lo][0], positions[hi][1]], np.int64)
            values = np.array([low[lo], high[hi]])
        else:
            at = np.concatenate(positions)
            firsts = pd.Series(np.concatenate(values)).drop_duplicates().index.to_numpy()
            extra, values = at[firsts].astype(np.int64), np.concatenate(values)[firsts]
    mostly = float(kw.get("mostly", 1.0))
    if mostly < 1.0:
        passed = judged == 0 or (1.0 - count / judged) >= mostly
        witnesses = np.concatenate([p.witnesses + o for p, o in zip(parts, offsets, strict=True)])
    else:
        passed = count == 0
        witnesses = _union(extra, unexpected)
    return Judgement(rows, judged, count, unexpected, passed, witnesses.astype(np.int64),
                     unexpected_values=shown, anchors=extra, anchor_values=values)


def _union(*parts: np.ndarray) -> np.ndarray:
    return np.unique(np.concatenate([np.asarray(p, np.int64) for p in parts]))


def _first_true(mask: np.ndarray, k: int) -> np.ndarray:
    return np.flatnonzero(mask)[:k].astype(np.int64)


def _extremes(values: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """The rows of the smallest and the largest judged value."""
    if not judged.any():
        return _EMPTY
    if judged.all():
        return np.array([np.argmin(values), np.argmax(values)], np.int64)
    idx = np.flatnonzero(judged)
    sub = values[idx]
    return idx[[np.argmin(sub), np.argmax(sub)]].astype(np.int64)


def _first_of_each(values: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """The first judged row of each distinct value."""
    if values.dtype == bool or values.dtype == np.uint8:
        present = (False, True) if values.dtype == bool else np.flatnonzero(np.bincount(values[judged],
                                                                                      minlength=1))
        return np.array([np.argmax(judged & (values == v)) for v in present
                         if (judged & (values == v)).any()], np.int64)
    idx = np.flatnonzero(judged)
    firsts = pd.Series(values[idx]).drop_duplicates().index.to_numpy()
    return idx[firsts].astype(np.int64)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
