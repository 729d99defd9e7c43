"""``run_suite``: validate one dataset partition with its Great Expectations suite, as plain results."""

from __future__ import annotations

import datetime as dt
import importlib
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from quality import derive
from quality.checks import Check, SuiteData
from quality.config import Baseline, QualityConfig
from quality.engine import Outcome, validate
from quality.result import CheckResult, SuiteResult
from tapeflow.errors import ConfigError

# dataset -> (suite module, record name): the lake dataset names the assets use
DATASETS: dict[str, str] = {
    "trades": "trade",
    "book_deltas": "book_delta",
    "order_events": "order_event",
    "quotes": "quote",
    "book_snapshots": "book_snapshot",
    "bars": "bar",
    "metrics": "metric",
}
_RECORD_TO_DATASET = {v: k for k, v in DATASETS.items()}
_MAX_EXAMPLES = 5
_VOLUME_COLUMN = {"trades": "size_nanos", "bars": "volume_nanos"}
_EXACT_FLOAT = 2**53  # float64 holds every integer below this exactly


def _suite(dataset: str) -> Any:
    name = _RECORD_TO_DATASET.get(dataset, dataset)
    if name not in DATASETS:
        raise ConfigError(f"no quality suite for dataset {dataset!r}; have {', '.join(DATASETS)}")
    return importlib.import_module(f"quality.suites.{name}")


def check_names(dataset: str) -> tuple[str, ...]:
    """The stable check names of a dataset's suite, in order (for declaring asset checks up front).

    Raises:
        ConfigError: no suite for ``dataset``.
    """
    return tuple(_suite(dataset).CHECKS)


def run_suite(
    dataset: str,
    table: pa.Table,
    *,
    partition_day: str | dt.date | None = None,
    baseline: Baseline | Mapping[str, Baseline] | pa.Table | None = None,
    book: pa.Table | None = None,
    session_open_ns: Mapping[str, int | None] | None = None,
    config: QualityConfig | None = None,
) -> SuiteResult:
    """Validate ``table`` with the suite of ``dataset``; every verdict is a Great Expectations result.

    Args:
        dataset: ``trades``, ``book_deltas``, ``order_events``, ``quotes``, ``book_snapshots``,
            ``bars`` or ``metrics`` (the record names ``trade``, ``quote``, ... work too).
        table: the partition, a table of that dataset's record (any number of instruments).
        partition_day: the UTC day the partition holds (``YYYY-MM-DD`` or a date); None takes the
            day most rows fall on, and says so in the ``ts_within_day`` details.
        baseline: trailing per-day totals, one for the table or one per symbol, or rows of the
            derived ``baseline`` record (see :func:`baselines_from_table`); without one (or with
            fewer than ``config.baseline_min_days`` days) the baseline checks pass as skipped.
        book: ``quote`` or ``book_snapshot`` rows of the same instruments; the trades suite
            judges each trade against the prevailing best bid/ask (skipped without a book).
        session_open_ns: per symbol, the capture time its session opened on the day (see
            :func:`session_opens`: the first trade), None for a symbol that never traded that day.
            On ``config.auction_venues`` the ``crossed_book`` check of quotes, snapshots and
            metrics then counts crossed pre-open (auction) book states in ``pre_open_crossed``
            without failing on them. Without it every crossed row fails.
        config: thresholds; ``QualityConfig()`` when None.

    Returns:
        A ``SuiteResult`` whose checks are listed in ``check_names(dataset)`` order.

    Raises:
        ConfigError: an unknown dataset or a malformed ``partition_day``.
    """
    suite = _suite(dataset)
    name = _RECORD_TO_DATASET.get(dataset, dataset)
    config = config or QualityConfig()
    table = derive.plain(table)
    day, inferred = _day(table, partition_day)
    if isinstance(baseline, pa.Table):
        baseline = baselines_from_table(name, baseline, day)
    data = SuiteData(name, table, config, day, inferred, baseline=baseline,
                     book=derive.plain(book) if book is not None else None, session_open=session_open_ns)
    missing = [c for c in suite.RECORD.column_names if c not in table.column_names]
    if missing:
        # without its columns a check cannot run; it fails (blocking downstream) rather than vanish
        from quality import checks

        checks.schema(data, suite.RECORD)
        checks.not_null_keys(data)
    else:
        suite.plan(data)
    results = _evaluate(name, data)
    by_name = {r.name: r for r in results}
    ordered = []
    for check in suite.CHECKS:
        if check in by_name:
            ordered.append(by_name.pop(check))
        else:
            ordered.append(CheckResult(check, False, 0, 0,
                                       details={"skipped": f"missing columns {missing}"},
                                       description="not run: the table lacks columns it needs"))
    ordered.extend(by_name.values())
    return SuiteResult(name, day, table.num_rows, ordered)


def session_opens(trades: pa.Table, symbols: Iterable[str] = ()) -> dict[str, int | None]:
    """When each symbol's session opened on a day: the capture time of its first trade.

    Args:
        trades: one day of ``trade`` rows (any instruments).
        symbols: symbols to report even without a trade (they get None: the session never opened).

    Returns:
        symbol -> ``ts_recv_ns`` of its earliest trade (``ts_event_ns`` where no capture time), or None.
    """
    out: dict[str, int | None] = {s: None for s in symbols}
    if trades.num_rows == 0:
        return out
    trades = derive.plain(trades)
    ts = trades.column("ts_recv_ns").to_numpy()
    ts = np.where(ts >= 0, ts, trades.column("ts_event_ns").to_numpy())
    symbol = trades.column("symbol").to_numpy(zero_copy_only=False)
    for s in np.unique(symbol):
        out[str(s)] = int(ts[symbol == s].min())
    return out


def baselines_from_days(dataset: str, days: Sequence[pa.Table]) -> dict[str, Baseline]:
    """Per-symbol baselines from earlier partitions of ``dataset`` (one table per day).

    A symbol missing from a day counts 0 rows that day. Volume is summed for trades
    (``size_nanos``) and bars (``volume_nanos`` of the finest time interval, as the suite does).

    Raises:
        ConfigError: no suite for ``dataset``.
    """
    name = _RECORD_TO_DATASET.get(dataset, dataset)
    _suite(name)
    per_day = [_day_totals(name, derive.plain(t)) for t in days]
    symbols = sorted({s for day in per_day for s in day})
    return {
        s: Baseline(row_counts=[day.get(s, (0, 0))[0] for day in per_day],
                    volumes_nanos=[day.get(s, (0, 0))[1] for day in per_day]
                    if name in _VOLUME_COLUMN else [])
        for s in symbols
    }


def baselines_from_table(dataset: str, table: pa.Table, day: str | None = None) -> dict[str, Baseline]:
    """Per-symbol baselines from rows of the derived ``baseline`` record (``tapeflow.derived.baselines``).

    That record summarizes trades: its trade count is the row baseline of the ``trades`` suite
    only; its volume serves ``trades`` and ``bars``. Other datasets get no statistic from it.
    With ``day``, only the rows for that day (its ``date`` column) are used.

    Raises:
        ConfigError: no suite for ``dataset``, or the table lacks the record's columns.
    """
    name = _RECORD_TO_DATASET.get(dataset, dataset)
    _suite(name)
    need = ("symbol", "days_used", "volume_mean_nanos", "volume_std_nanos", "trade_count_mean",
            "trade_count_std")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise ConfigError(f"baseline table lacks columns {missing}; have {table.column_names}")
    table = derive.plain(table)
    if day is not None and "date" in table.column_names:
        table = table.filter(pc.equal(table.column("date"), day))
    out: dict[str, Baseline] = {}
    for row in table.select(list(need)).to_pylist():
        if row["symbol"] in out:
            raise ConfigError(f"baseline table holds two rows for symbol {row['symbol']!r}; pass one day")
        summary = {}
        if name in _VOLUME_COLUMN:
            summary["volumes_nanos"] = (row["days_used"], row["volume_mean_nanos"], row["volume_std_nanos"])
        if name == "trades":
            summary["row_counts"] = (row["days_used"], row["trade_count_mean"], row["trade_count_std"])
        out[row["symbol"]] = Baseline(summary=summary)
    return out


def _day_totals(name: str, table: pa.Table) -> dict[str, tuple[int, int]]:
    if table.num_rows == 0:
        return {}
    if name == "bars":
        from quality.suites.bars import finest_rows

        table = table.filter(pa.array(finest_rows(table)[1]))
    symbols = table.column("symbol").to_numpy(zero_copy_only=False)
    column = _VOLUME_COLUMN.get(name)
    volume = table.column(column).to_numpy() if column else np.zeros(len(symbols), np.int64)
    return {str(s): (int((symbols == s).sum()), int(volume[symbols == s].sum())) for s in np.unique(symbols)}


def _day(table: pa.Table, partition_day: str | dt.date | None) -> tuple[str | None, bool]:
    if partition_day is not None:
        day = partition_day if isinstance(partition_day, str) else partition_day.isoformat()
        derive.day_bounds(day)
        return day, False
    if "ts_event_ns" not in table.column_names or table.num_rows == 0:
        return None, True
    return derive.modal_day(derive.partition_ts(table)), True


def _evaluate(dataset: str, data: SuiteData) -> list[CheckResult]:
    frames = {"rows": data.table.to_pandas(), "derived": pd.DataFrame({k: _vectorizable(v) for k, v in
                                                                      data.derived.items()}),
              "day": pd.DataFrame(data.day_rows)}
    results: dict[int, CheckResult] = {}
    for frame_name, frame in frames.items():
        planned = [(i, c) for i, c in enumerate(data.checks) if c.frame == frame_name and not c.skipped]
        outcomes = validate(f"{dataset}.{frame_name}", frame, [c.expects for _, c in planned])
        for (i, check), outs in zip(planned, outcomes, strict=True):
            results[i] = _result(check, outs, data, frame)
    for i, check in enumerate(data.checks):
        if check.skipped:
            details = {**check.details, "skipped": check.skipped}
            results[i] = CheckResult(check.name, True, 0, 0, details=details, description=check.description)
    return [results[i] for i in range(len(data.checks))]


def _vectorizable(values: Any) -> Any:
    """A nullable integer column in a dtype GX compares vectorized, where that is exact.

    GX's between-check calls a Python function per value on pandas' nullable ``Int64`` (about 1 s
    per million values) but compares numpy ``int64``/``float64`` columns in one vectorized step.
    Without missing values the column is plain ``int64``; with some, ``float64`` with NaN for the
    missing ones (GX counts NaN as missing too) when every value is within +-2**53, where float64
    holds integers exactly, so the verdicts do not change. Larger values (timestamps) stay ``Int64``.
    """
    if not isinstance(values, pd.arrays.IntegerArray):
        return values
    mask = values.isna()
    if not mask.any():
        return values.to_numpy(dtype=np.int64)
    valid = values[~mask].to_numpy(dtype=np.int64)
    if len(valid) and max(int(valid.max()), -int(valid.min())) >= _EXACT_FLOAT:
        return values
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _result(check: Check, outcomes: list[Outcome], data: SuiteData, frame: pd.DataFrame) -> CheckResult:
    passed = bool(outcomes) and all(o.success for o in outcomes)
    unexpected = sum(_unexpected(o) for o in outcomes)
    # missing values mark rows a check does not apply to: they are not judged
    elements = max((int(o.result.get("element_count", len(frame))) - int(o.result.get("missing_count", 0))
                    for o in outcomes), default=0)
    if check.name == "schema":
        elements = len(outcomes)
    index: list[int] = []
    for o in outcomes:
        for i in o.result.get("partial_unexpected_index_list") or []:
            if int(i) not in index:
                index.append(int(i))
    examples = [_example(data, check, i) for i in sorted(index)[:_MAX_EXAMPLES]]
    if not examples:
        # table-level expectations (schema) have no offending rows: show what was observed instead
        failing = [o for o in outcomes if not o.success][:_MAX_EXAMPLES]
        examples = [_jsonable({"location": f"column {o.kwargs['column']}" if "column" in o.kwargs
                               else "table", **_summary(o)}) for o in failing]
    details = {**check.details, "expectations": [_summary(o) for o in outcomes]}
    return CheckResult(check.name, passed, unexpected, elements, examples, _jsonable(details),
                       check.description)


def _unexpected(o: Outcome) -> int:
    if "unexpected_count" in o.result:
        return int(o.result["unexpected_count"])
    return 0 if o.success else 1


def _summary(o: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {"expectation": o.kind, "success": o.success,
                           **{k: v for k, v in o.kwargs.items() if k != "column_list"}}
    for key in ("element_count", "unexpected_count", "missing_count", "observed_value", "exception"):
        if key in o.result:
            out[key] = o.result[key]
    if "partial_unexpected_list" in o.result:
        out["partial_unexpected_list"] = list(o.result["partial_unexpected_list"])[:_MAX_EXAMPLES]
    return out


def _example(data: SuiteData, check: Check, i: int) -> dict[str, Any]:
    if check.frame == "day":
        return {"location": f"instrument {i}", **data.day_examples.get(check.show[0], [{}] * (i + 1))[i]}
    row = {"location": f"row {i}"}
    row.update({k: v for k, v in data.table.slice(i, 1).to_pylist()[0].items() if not isinstance(v, bytes)})
    for name in check.show:
        if name in data.derived:
            row[name] = data.derived[name][i]
    return _jsonable(row)


def _jsonable(value: Any) -> Any:
    """Plain JSON values (Dagster metadata and the Data Docs page take nothing else)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
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
