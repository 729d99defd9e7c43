"""``run_suite``: validate one dataset partition with its Great Expectations suite, as plain results."""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality import derive
from quality.checks import Check, SuiteData
from quality.config import Baseline, QualityConfig
from quality.plan import Plan, validate
from quality.plan import plan as make_plan
from quality.result import SuiteResult
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
    "signals": "signal",
    "funding_rates": "funding_rate",
    "mark_prices": "mark_price",
    "index_prices": "index_price",
    "open_interest": "open_interest",
    "liquidations": "liquidation",
    "insurance_funds": "insurance_fund",
    "option_tickers": "option_ticker",
    "option_surfaces": "option_surface",
    "insurance_stress": "insurance_stress",
    "derivative_basis": "derivative_basis",
    "open_interest_change": "open_interest_change",
    "liquidation_clusters": "liquidation_cluster",
    "derivative_signals": "signal",  # the derivatives/1 rows of the signal partitions (not its suite)
}
_SUBSETS = frozenset({"derivative_signals"})  # suites of one producer's rows: the record keeps its own
_RECORD_TO_DATASET = {v: k for k, v in DATASETS.items() if k not in _SUBSETS}
_VOLUME_COLUMN = {"trades": "size_nanos", "bars": "volume_nanos"}


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
    inputs: Mapping[str, pa.Table] | None = None,
) -> SuiteResult:
    """Validate ``table`` with the suite of ``dataset``; every verdict is a Great Expectations result.

    Args:
        dataset: ``trades``, ``book_deltas``, ``order_events``, ``quotes``, ``book_snapshots``,
            ``bars``, ``metrics``, ``signals`` or a derivatives dataset (``funding_rates``,
            ``mark_prices``, ``index_prices``, ``open_interest``, ``liquidations``,
            ``insurance_funds``), ``option_tickers`` or ``option_surfaces``; the record names
            ``trade``, ``quote``, ... work too).
        table: the partition, a table of that dataset's record (any number of instruments).
        partition_day: the UTC day the partition holds (``YYYY-MM-DD`` or a date); None takes the
            day most rows fall on, and says so in the ``ts_within_day`` details.
        baseline: trailing per-day totals, one for the table or one per symbol, or rows of the
            derived ``baseline`` record (see :func:`baselines_from_table`); without one (or with
            fewer than ``config.baseline_min_days`` days) the baseline checks are skipped.
        book: ``quote`` or ``book_snapshot`` rows of the same instruments; the trades suite
            judges each trade against the prevailing best bid/ask (skipped without a book).
        session_open_ns: per symbol, the capture time its session opened on the day (see
            :func:`session_opens`: the first trade), None for a symbol that never traded that day.
            On ``config.auction_venues`` the ``crossed_book`` check of quotes, snapshots and
            metrics then counts crossed pre-open (auction) book states in ``pre_open_crossed``
            without failing on them. Without it every crossed row fails.
        config: thresholds; ``QualityConfig()`` when None.
        inputs: record name -> the rows a derived dataset was computed from (``liquidation``
            rows for ``liquidation_clusters``, whose members are recounted in them; without them
            that check is skipped).

    Returns:
        A ``SuiteResult`` whose checks are listed in ``check_names(dataset)`` order.

    Raises:
        ConfigError: an unknown dataset or a malformed ``partition_day``.
    """
    planned = plan_suite(dataset, table, partition_day=partition_day, baseline=baseline, book=book,
                         session_open_ns=session_open_ns, config=config, inputs=inputs)
    return validate_plans([planned])[0]


def plan_suite(
    dataset: str,
    table: pa.Table,
    *,
    partition_day: str | dt.date | None = None,
    baseline: Baseline | Mapping[str, Baseline] | pa.Table | None = None,
    book: pa.Table | None = None,
    session_open_ns: Mapping[str, int | None] | None = None,
    config: QualityConfig | None = None,
    inputs: Mapping[str, pa.Table] | None = None,
) -> Plan:
    """Judge every check of ``dataset``'s suite on ``table`` exactly, ready for :func:`validate_plans`.

    Same arguments as :func:`run_suite`. The plan keeps the counts, examples and witness rows, not
    the table: plan partition after partition, then validate them all in one Great Expectations
    run per dataset and frame.

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
                     book=derive.plain(book) if book is not None else None, session_open=session_open_ns,
                     inputs={k: derive.plain(v) for k, v in (inputs or {}).items()})
    missing = [c for c in suite.RECORD.column_names if c not in table.column_names]
    if missing:
        # without its columns a check cannot run; it fails (blocking downstream) rather than vanish
        from quality import checks

        checks.schema(data, suite.RECORD)
        checks.not_null_keys(data)
        planned = {c.name for c in data.checks}
        for check in suite.CHECKS:
            if check not in planned:
                data.add(Check(check, "not run: the table lacks columns it needs", "derived", [],
                               details={"skipped": f"missing columns {missing}"}))
    else:
        suite.plan(data)
    order = {c: i for i, c in enumerate(suite.CHECKS)}
    data.checks.sort(key=lambda c: order.get(c.name, len(order)))
    return make_plan(data)


def validate_plans(plans: Sequence[Plan]) -> list[SuiteResult]:
    """Validate planned suites with Great Expectations, one GX run per dataset and frame for all.

    Returns:
        One ``SuiteResult`` per plan, in order.

    Raises:
        EngineMismatch: GX and the exact count disagree on a verdict (a bug, never bad data).
    """
    return validate(plans)


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
