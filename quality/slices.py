"""Plan a one-instrument partition slice by slice, without ever holding it: :class:`SlicedPlanner`.

Feed the partition's rows in order, in pieces of any size (``add``); ``finish`` returns the
:class:`~quality.plan.Plan` that :func:`quality.plan_suite` gives for the same rows in one table,
exactly: every check's counts, verdict, offending rows, witnesses and their values, examples and
details. Each slice is planned by the suite's own code with a :class:`~quality.checks.Carry`
holding what crosses slices: the previous row's time (stale intervals), the last sequence of the
chain, the day totals of the baseline checks (judged at the end, on the summed totals). The
judgements of consecutive slices merge as :func:`quality.exact.merge` proves, witness values,
schema witness rows and example rows move to whole-partition positions.

One check depends on the whole partition before any row can be judged: the price band around the
partition's **median** execution (or best) price. Its prices are kept by distinct value (count,
first 20 positions, example rows of the first 5), not by row: the exact median and the band's
verdict, offending rows and extremes follow from them at the end. Memory is then bounded by one
slice, the distinct banded prices of the day, and a few witness rows per expectation; it does not
grow with the rows of the day. A share-of-rows (``mostly``) expectation keeps every judged row as a
witness, as it does whole (none of the default thresholds uses one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from quality import checks, derive
from quality.checks import Carry, SuiteData
from quality.config import Baseline, QualityConfig
from quality.engine import Expect
from quality.exact import MAP_KINDS, WITNESS_UNEXPECTED, Judgement, merge
from quality.plan import _MAX_EXAMPLES, Plan, PlannedCheck, _samples
from quality.plan import plan as make_plan
from tapeflow.batch.slices import SLICE_ROWS
from tapeflow.errors import ConfigError

__all__ = ["SLICED", "SlicedPlanner", "add_band"]

# the suites whose every check plans slice by slice (equal to the whole: tests/quality/test_sliced_plan.py)
SLICED = frozenset({"trades", "order_events", "book_deltas", "quotes"})

_EXAMPLES_PER_VALUE = _MAX_EXAMPLES


@dataclass
class Band:
    """The banded prices of a partition by distinct value (see the module docstring)."""

    name: str  # the price column (``details["median_price_nanos"]`` key)
    counts: dict[int, int] = field(default_factory=dict)
    first: dict[int, list[int]] = field(default_factory=dict)  # value -> first 20 positions
    pending: list[int] = field(default_factory=list)  # slice positions needing an example row

    def add(self, values: np.ndarray, at: np.ndarray, offset: int) -> None:
        """Count ``values`` (the banded rows ``at`` of a slice starting at row ``offset``)."""
        if not len(values):
            return
        uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        order = at[np.argsort(inverse.ravel(), kind="stable")]  # rows grouped by value, ascending within
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for u, start, count in zip(uniq.tolist(), starts.tolist(), counts.tolist(), strict=True):
            have = self.first.setdefault(u, [])
            self.counts[u] = self.counts.get(u, 0) + count
            need = WITNESS_UNEXPECTED - len(have)
            if need > 0:
                rows = order[start:start + min(need, count)]
                if len(have) < _EXAMPLES_PER_VALUE:
                    self.pending.extend(rows[:_EXAMPLES_PER_VALUE - len(have)].tolist())
                have.extend((rows + offset).tolist())


def add_band(d: SuiteData, band: str, values: np.ndarray, keep: np.ndarray) -> None:
    """Record one slice's banded prices (``keep`` rows of ``values``) for the band column ``band``."""
    assert d.carry is not None
    acc = d.carry.banded.setdefault(band, Band(band.removesuffix("_vs_median")))
    at = np.flatnonzero(keep)
    acc.add(values[at], at, d.carry.offset)


@dataclass
class _Acc:
    """The running merge of one expectation's judgements and the raw witness values behind them."""

    judgement: Judgement | None = None
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    values: Any = None  # pa.Array (a table column) or pd.Series (a derived column)


class SlicedPlanner:
    """Plan one instrument's partition of ``dataset`` from consecutive slices (see the module docstring).

    Args: as :func:`quality.plan_suite` (``partition_day`` required: a slice cannot infer the day),
        and ``slice_rows``: pieces are gathered up to that many rows before a slice is planned (a
        slice's planning has a fixed cost; 0 plans each piece as given).

    Raises:
        ConfigError: an unknown dataset, a malformed or missing ``partition_day``, or a slice
            holding another instrument than the first.
    """

    def __init__(self, dataset: str, *, partition_day: str, baseline: Baseline | Mapping[str, Baseline]
                 | pa.Table | None = None, book: pa.Table | None = None,
                 session_open_ns: Mapping[str, int | None] | None = None,
                 config: QualityConfig | None = None, slice_rows: int = SLICE_ROWS) -> None:
        from quality import runner

        if partition_day is None:
            raise ConfigError("planning in slices needs the partition day")
        self.suite = runner._suite(dataset)
        self.name = runner._RECORD_TO_DATASET.get(dataset, dataset)
        if self.name not in SLICED:
            raise ConfigError(f"the {self.name} suite is not planned in slices; have "
                              f"{', '.join(sorted(SLICED))}")
        self.dataset = dataset
        self.config = config or QualityConfig()
        self.day, _ = runner._day(pa.table({}), partition_day)
        if isinstance(baseline, pa.Table):
            baseline = runner.baselines_from_table(self.name, baseline, self.day)
        self.baseline = baseline
        self.book = derive.plain(book) if book is not None else None
        self.session_open = session_open_ns
        self.carry = Carry()
        self.instrument: tuple[str, str] | None = None
        self.checks: list[PlannedCheck] | None = None
        self.accs: list[list[_Acc]] = []
        self.examples: list[dict[int, dict[str, Any]]] = []
        self.frame: pa.Table | None = None
        self.frame_at = np.zeros(0, np.int64)
        self.band_examples: dict[int, dict[str, Any]] = {}
        self.first_slice: pa.Table | None = None
        self.slice_rows = slice_rows
        self.waiting: list[pa.Table] = []
        self.waiting_rows = 0

    @property
    def rows(self) -> int:
        return self.carry.offset + self.waiting_rows

    def add(self, table: pa.Table) -> None:
        """Plan the next ``table`` rows of the partition (once ``slice_rows`` rows are waiting)."""
        if table.num_rows == 0 or self.slice_rows <= 0:
            self._plan(table)
            return
        self.waiting.append(table)
        self.waiting_rows += table.num_rows
        if self.waiting_rows >= self.slice_rows:
            self._flush()

    def _flush(self) -> None:
        if self.waiting:
            rows = pa.concat_tables(self.waiting, promote_options="permissive") if len(self.waiting) > 1 \
                else self.waiting[0]
            self.waiting, self.waiting_rows = [], 0
            self._plan(rows)

    def _plan(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            if self.first_slice is None:
                self.first_slice = table.slice(0, 0)
            return
        table = derive.plain(table)
        missing = [c for c in self.suite.RECORD.column_names if c not in table.column_names]
        if missing:
            raise ConfigError(f"planning in slices needs every column of {self.name}: missing {missing}")
        data = SuiteData(self.name, table, self.config, self.day, False, baseline=self.baseline,
                         book=self.book, session_open=self.session_open, carry=self.carry)
        if len(data.instruments) != 1 or self.instrument not in (None, data.instruments[0]):
            raise ConfigError(f"planning in slices takes one instrument per partition: got {data.instruments}"
                              f" after {self.instrument}")
        self.instrument = data.instruments[0]
        if self.first_slice is None or self.first_slice.num_rows == 0:
            self.first_slice = table.slice(0, 0)
        self.suite.plan(data)
        order = {c: i for i, c in enumerate(self.suite.CHECKS)}
        data.checks.sort(key=lambda c: order.get(c.name, len(order)))
        planned = make_plan(data)
        offset = self.carry.offset
        self._merge(data, planned, offset)
        self._band_examples(data, planned)
        self.carry.offset += table.num_rows

    def _merge(self, data: SuiteData, planned: Plan, offset: int) -> None:
        first = self.checks is None
        if first:
            self.checks = planned.checks
            self.accs = [[_Acc() for _ in c.expects] for c in planned.checks]
            self.examples = [{} for _ in planned.checks]
        elif [c.name for c in planned.checks] != [c.name for c in self.checks]:  # type: ignore[union-attr]
            raise ConfigError(f"{self.name}: slices planned different checks")
        table_rows = []
        for c, (check, pc) in enumerate(zip(data.checks, planned.checks, strict=True)):
            mine = self.checks[c]  # type: ignore[index]
            if (mine.skipped is None) != (pc.skipped is None):
                raise ConfigError(f"{self.name}.{pc.name}: skipped on some slices only")
            if pc.skipped:
                continue
            mine.details = _merge_details(pc.name, mine.details, pc.details) if not first else mine.details
            if len(pc.expects) != len(self.accs[c]):
                raise ConfigError(f"{self.name}.{pc.name}: slices planned different expectations")
            for e, (expect, j) in enumerate(zip(pc.expects, pc.judgements, strict=True)):
                if j is None:
                    continue
                acc = self.accs[c][e]
                raw = self._raw(data, check, expect, j)
                positions = j.witnesses + offset
                if acc.judgement is None:
                    acc.judgement = j if offset == 0 else _shifted_first(expect, j, offset)
                    acc.positions, acc.values = positions, raw
                else:
                    acc.judgement = merge(expect, [acc.judgement, j])
                    acc.positions = np.concatenate([acc.positions, positions])
                    acc.values = _concat(acc.values, raw)
                keep = np.searchsorted(acc.positions, acc.judgement.witnesses)
                acc.positions = acc.positions[keep]
                acc.values = _take(acc.values, keep)
                if expect.kind not in MAP_KINDS:
                    table_rows.append(j.witnesses)
            # example rows: every candidate of this slice, kept while it can still be shown
            candidates = sorted({int(i) for j in pc.judgements if j is not None for i in j.unexpected[:20]})
            for i, example in zip(candidates, pc.examples, strict=True):
                self.examples[c][i + offset] = {**example, "location": f"row {i + offset}"}
            wanted = {int(i) for a in self.accs[c] if a.judgement is not None
                      for i in a.judgement.unexpected[:20]}
            self.examples[c] = {i: v for i, v in self.examples[c].items() if i in wanted}
        if table_rows:
            at = np.unique(np.concatenate(table_rows))
            rows = data.table.take(pa.array(at))
            self.frame = rows if self.frame is None else pa.concat_tables([self.frame, rows])
            self.frame_at = np.concatenate([self.frame_at, at + offset])
            keep_rows = np.unique(np.concatenate(
                [a.judgement.witnesses for accs, pc in zip(self.accs, self.checks, strict=True)  # type: ignore
                 for a, ex in zip(accs, pc.expects, strict=True)
                 if ex.kind not in MAP_KINDS and a.judgement is not None]))
            at_keep = np.searchsorted(self.frame_at, keep_rows)
            self.frame, self.frame_at = self.frame.take(pa.array(at_keep)), self.frame_at[at_keep]

    def _raw(self, data: SuiteData, check: checks.Check, expect: Expect, j: Judgement) -> Any:
        if expect.kind not in MAP_KINDS:
            return None
        if check.frame == "rows":
            return data.table.column(expect.kwargs["column"]).take(pa.array(j.witnesses)).combine_chunks()
        return j.samples.reset_index(drop=True)

    def _band_examples(self, data: SuiteData, planned: Plan) -> None:
        pending = sorted({p for band in self.carry.banded.values() for p in band.pending})
        for band in self.carry.banded.values():
            band.pending.clear()
        if not pending:
            return
        c = next(i for i, pc in enumerate(planned.checks) if pc.name == "price_range")
        check = data.checks[c]
        offset = self.carry.offset
        for i in pending:
            self.band_examples[i + offset] = {**_examples_at(data, check, i), "location": f"row {i + offset}"}

    def finish(self, *, baseline: Baseline | Mapping[str, Baseline] | pa.Table | None = None) -> Plan:
        """The partition's plan, equal to :func:`quality.plan_suite` over every row added, in order.

        ``baseline``, when given, replaces the one given at the start: only the day totals meet it,
        at the end (a backfill reads it once the days before are committed).
        """
        from quality import runner

        self._flush()
        if baseline is not None:
            self.baseline = runner.baselines_from_table(self.name, baseline, self.day) \
                if isinstance(baseline, pa.Table) else baseline
        if self.checks is None:  # no row at all: as planning the empty partition
            empty = self.first_slice if self.first_slice is not None else self.suite.RECORD.empty_table()
            return runner.plan_suite(self.dataset, empty, partition_day=self.day, baseline=self.baseline,
                                     book=self.book, session_open_ns=self.session_open, config=self.config)
        out: list[PlannedCheck] = []
        for c, pc in enumerate(self.checks):
            if pc.skipped:
                out.append(pc)
                continue
            expects, judgements = [], []
            for e, expect in enumerate(pc.expects):
                acc = self.accs[c][e]
                if acc.judgement is None:  # a deferred band
                    band = self.carry.banded[expect.kwargs["column"]]
                    j = _judge_band(expect, band, self.rows)
                    if j is None:
                        continue  # no banded price in the partition: no band (as whole)
                    pc.details.setdefault("median_price_nanos", {})[band.name] = j.observed
                    j.observed = None
                else:
                    j = acc.judgement
                    if expect.kind in MAP_KINDS:
                        j.samples = _samples(acc.values, np.arange(len(acc.positions)))
                        j.samples.index = acc.positions
                expects.append(expect)
                judgements.append(j)
            if pc.name == "price_range":
                pc.details["median_price_nanos"] = _in_order(pc.details.get("median_price_nanos", {}),
                                                             [e.kwargs["column"] for e in expects])
            index = sorted({int(i) for j in judgements for i in j.unexpected[:20]})[:_MAX_EXAMPLES]
            shown = {**self.examples[c], **(self.band_examples if pc.name == "price_range" else {})}
            examples = [shown[i] for i in index]
            out.append(PlannedCheck(pc.name, pc.description, pc.frame, expects, judgements, pc.details,
                                    examples))
        out += self._day_checks()
        order = {c: i for i, c in enumerate(self.suite.CHECKS)}
        out.sort(key=lambda c: order.get(c.name, len(order)))
        frame = None
        if self.frame is not None:
            frame = self.frame.to_pandas()
            frame.index = self.frame_at
        return Plan(self.name, self.day, self.rows, out, frame)

    def _day_checks(self) -> list[PlannedCheck]:
        """The baseline checks, on the day totals the slices summed (one instrument)."""
        if not self.carry.totals:
            return []
        data = SuiteData(self.name, self.suite.RECORD.empty_table(), self.config, self.day, False,
                         baseline=self.baseline, session_open=self.session_open)
        data.instruments = [self.instrument]  # type: ignore[list-item]
        for name, (field_name, total) in self.carry.totals.items():
            checks.vs_baseline(data, name, {0: total}, field_name)
        return make_plan(data).checks


def _examples_at(data: SuiteData, check: checks.Check, i: int) -> dict[str, Any]:
    from quality.plan import _example

    return _example(data, check, i)


def _shifted_first(expect: Expect, j: Judgement, offset: int) -> Judgement:
    """A first judgement that starts at ``offset`` (after slices without this expectation)."""
    raise ConfigError(f"{expect.kind} first planned at row {offset}: slices planned different checks")


def _concat(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if isinstance(a, pa.Array):
        return pa.concat_arrays([a, b.cast(a.type) if b.type != a.type else b])
    return pd.concat([a, b], ignore_index=True)


def _take(values: Any, at: np.ndarray) -> Any:
    if values is None:
        return None
    if isinstance(values, pa.Array):
        return values.take(pa.array(at, pa.int64()))
    return values.iloc[at].reset_index(drop=True)


_SUMMED = frozenset({"rows_left_out", "missing_sequences", "f_gap_rows", "both_sides_rows", "pre_open_rows",
                     "pre_open_crossed", "judged_trades", "unjudged_trades"})
_LARGEST = frozenset({"longest_silence_ns"})


def _merge_details(check: str, mine: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Details of two consecutive slices as the whole partition reports them."""
    out = dict(mine)
    for key, value in new.items():
        if key == "median_price_nanos":
            continue  # the band's: set at the end
        if key in _SUMMED:
            out[key] = out.get(key, 0) + value
        elif key in _LARGEST:
            out[key] = max(out.get(key, value), value)
        elif out.get(key, value) != value:
            raise ConfigError(f"{check}: detail {key!r} differs between slices ({out[key]!r}, {value!r}):"
                              f" no rule merges it")
        else:
            out[key] = value
    return out


def _in_order(medians: dict[str, float], columns: list[str]) -> dict[str, float]:
    names = [c.removesuffix("_vs_median") for c in columns if c.endswith("_vs_median")]
    return {n: medians[n] for n in names if n in medians}


def _median(values: np.ndarray, counts: np.ndarray) -> float:
    """``np.median`` of the rows that ``values`` (sorted, distinct) repeated ``counts`` times hold."""
    n = int(counts.sum())
    ends = np.cumsum(counts)
    middle = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    picked = values[np.searchsorted(ends, np.array(middle), side="right")]
    return float(np.median(picked.astype(values.dtype)))


def _judge_band(expect: Expect, band: Band, rows: int) -> Judgement | None:
    """The band expectation's exact judgement over the whole partition (``observed``: the median)."""
    if not band.counts:
        return None
    values = np.array(sorted(band.counts), np.int64)
    counts = np.array([band.counts[v] for v in values.tolist()], np.int64)
    median = _median(values, counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = values / median
    kw = expect.kwargs
    judged_value = ~np.isnan(ratio)
    bad = np.zeros(len(values), bool)
    if kw.get("min_value") is not None:
        bad |= ratio < kw["min_value"]
    if kw.get("max_value") is not None:
        bad |= ratio > kw["max_value"]
    bad &= judged_value
    firsts = np.array([band.first[v][0] for v in values.tolist()], np.int64)
    extra = np.zeros(0, np.int64)
    if judged_value.any():
        idx = np.flatnonzero(judged_value)
        lo = idx[ratio[idx] == ratio[idx].min()]
        hi = idx[ratio[idx] == ratio[idx].max()]
        extra = np.array([firsts[lo].min(), firsts[hi].min()], np.int64)
    ratio_at = {}
    unexpected_all = []
    for k in np.flatnonzero(bad).tolist():
        for p in band.first[int(values[k])]:
            unexpected_all.append(int(p))
            ratio_at[int(p)] = ratio[k]
    unexpected = np.array(sorted(unexpected_all)[:WITNESS_UNEXPECTED], np.int64)
    count = int(counts[bad].sum())
    for k, p in enumerate(firsts.tolist()):
        ratio_at.setdefault(int(p), ratio[k])
    witnesses = np.unique(np.concatenate([extra, unexpected]))
    j = Judgement(rows, int(counts[judged_value].sum()), count, unexpected, count == 0, witnesses,
                  observed=median, unexpected_values=[float(ratio_at[int(p)]) for p in unexpected],
                  anchors=extra, anchor_values=np.array([ratio_at[int(p)] for p in extra]))
    j.samples = pd.Series(np.array([ratio_at[int(p)] for p in witnesses], np.float64), index=witnesses)
    return j

