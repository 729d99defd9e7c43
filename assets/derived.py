"""Group ``derived``: trades and books -> bars, features and per-instrument 20-day baselines.

The functions the live flow calls (``tapeflow.bars``, ``tapeflow.derived``), over whole days.
"""

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets import checks, common
from assets.book import BBO
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, Target, targets
from assets.resources import TapeflowResource
from tapeflow.bars import STANDARD_INTERVALS, dollar_bars, tick_bars, time_bars, volume_bars
from tapeflow.derived import features as compute_features
from tapeflow.derived.profiles import BASELINE, PROFILE, baselines, daily_profile
from tapeflow.schemas import concat
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, METRIC, TRADE

FEATURE_INTERVALS = ("1s", "1m")
FEATURE_LEVELS = 10
TICK_BAR_TRADES = 100
# volume and dollar bars are sized from the instrument-day itself: about this many bars a day
THRESHOLD_BARS_PER_DAY = 100
BASELINE_DAYS = 20


@asset(
    group_name="derived",
    deps=["trades"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    kinds={"parquet"},
    metadata={"lake_dataset": BAR.name, "intervals": list(STANDARD_INTERVALS)},
    check_specs=checks.specs("bars"),
)
def bars(context: AssetExecutionContext,
         tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Time bars in the live flow's 15 frames (1s ... 1d), plus tick, volume and dollar bars."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    trades = common.read(TRADE, lake, wanted)
    tables = {t: day_bars(trades[t]) for t in wanted}
    writes = common.write(BAR, tables, lake, wanted)
    meta = common.describe(tables, writes, record=BAR)
    meta["bars_by_interval"] = MetadataValue.json(_per_interval(tables.values()))
    yield MaterializeResult(metadata=meta)
    yield from checks.evaluate("bars", tables, lake, record=BAR)


def day_bars(trades: pa.Table) -> pa.Table:
    """Every bar kind of one instrument-day's trades.

    Volume and dollar thresholds are the day's traded volume (notional) over
    ``THRESHOLD_BARS_PER_DAY``, so every instrument gets bars of a comparable count; the threshold
    is in the interval text (``volume:<nanos>``), and re-running the day gives the same bars.
    """
    parts = [time_bars(trades, i) for i in STANDARD_INTERVALS]
    if trades.num_rows:
        size = trades.column("size_nanos").to_numpy()
        price = trades.column("price_nanos").to_numpy()
        volume = int(size.sum())
        notional = sum(int(p) * int(s) for p, s in zip(price, size, strict=True)) // 1_000_000_000
        parts.append(tick_bars(trades, TICK_BAR_TRADES))
        if volume > 0:
            parts.append(volume_bars(trades, max(1, volume // THRESHOLD_BARS_PER_DAY)))
        if notional > 0:
            parts.append(dollar_bars(trades, max(1, notional // THRESHOLD_BARS_PER_DAY)))
    return concat(BAR, parts)


@asset(
    group_name="derived",
    deps=["book_snapshots", "bbo", "trades"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    kinds={"parquet"},
    metadata={"lake_dataset": METRIC.name, "intervals": list(FEATURE_INTERVALS), "levels": FEATURE_LEVELS},
    check_specs=checks.specs("features"),
)
def features(context: AssetExecutionContext,
             tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Spread, depth, imbalance, microprice, OFI, CVD and realized volatility on the 1 s and 1 min grids."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    snaps = common.read(BOOK_SNAPSHOT, lake, wanted)
    quotes = common.read(BBO, lake, wanted)
    trades = common.read(TRADE, lake, wanted)
    tables = {t: compute_features(snaps[t], quotes[t], trades[t], intervals=FEATURE_INTERVALS,
                                  levels=FEATURE_LEVELS) for t in wanted}
    writes = common.write(METRIC, tables, lake, wanted)
    yield MaterializeResult(metadata=common.describe(tables, writes, record=METRIC))
    yield from checks.evaluate("features", tables, lake, record=METRIC)


@asset(
    group_name="derived",
    deps=["trades", "features"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    kinds={"parquet"},
    metadata={"lake_datasets": [PROFILE.name, BASELINE.name], "window_days": BASELINE_DAYS},
)
def daily_baselines(context: AssetExecutionContext, tapeflow: TapeflowResource) -> MaterializeResult:
    """The day's profile (volume, trade size quantiles, imbalance, spread) and its 20-day baseline."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    trades = common.read(TRADE, lake, wanted)
    metrics = common.read(METRIC, lake, wanted)
    profiles = {t: daily_profile(trades[t], metrics[t], t.date) for t in wanted}
    writes = common.write(PROFILE, profiles, lake, wanted)
    rolled = {t: baselines(concat(PROFILE, [*_history(lake, t), profiles[t]]), BASELINE_DAYS, days=[t.date])
              for t in wanted}
    writes += common.write(BASELINE, rolled, lake, wanted)
    meta = common.describe(rolled, writes, record=BASELINE)
    meta["days_used"] = MetadataValue.json({str(t): _days_used(b) for t, b in rolled.items()})
    return MaterializeResult(metadata=meta)


def _history(lake: object, t: Target) -> Iterable[pa.Table]:
    day = t
    for _ in range(BASELINE_DAYS):
        day = day.previous()
        yield common.read(PROFILE, lake, [day])[day]  # type: ignore[arg-type]


def _days_used(table: pa.Table) -> int:
    return int(pc.max(table.column("days_used")).as_py() or 0) if table.num_rows else 0


def _per_interval(tables: Iterable[pa.Table]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tables:
        for interval in t.column("interval").to_pylist():
            out[interval] = out.get(interval, 0) + 1
    return out
