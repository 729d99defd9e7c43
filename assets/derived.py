"""Group ``derived``: trades and books -> bars, features and per-instrument 20-day baselines.

The functions the live flow calls (``tapeflow.derived.bars``, ``tapeflow.derived``), over whole days.
"""

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

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
from quality import QualityConfig
from tapeflow.derived import features as compute_features
from tapeflow.derived.bars import STANDARD_INTERVALS, dollar_bars, tick_bars, time_bars, volume_bars
from tapeflow.derived.profiles import BASELINE, PROFILE, baselines, daily_profile
from tapeflow.schemas import concat
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, METRIC, SCALE, TRADE
from tapeflow.storage import lake as lake_store

FEATURE_INTERVALS = ("1s", "1m")
FEATURE_LEVELS = 10
TICK_BAR_TRADES = 100
# volume and dollar bars are sized to about this many bars on a typical day (see bar_thresholds)
THRESHOLD_BARS_PER_DAY = 100
BASELINE_DAYS = 20
# as many history days as the baseline checks want before they judge a day
BASELINE_MIN_DAYS = QualityConfig().baseline_min_days


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
    sizing = {t: bar_thresholds(lake, t, trades[t]) for t in wanted}
    tables = {t: day_bars(trades[t], sizing[t]) for t in wanted}
    writes = common.write(BAR, tables, lake, wanted)
    meta = common.describe(tables, writes, record=BAR)
    meta["bars_by_interval"] = MetadataValue.json(_per_interval(tables.values()))
    meta["bar_thresholds"] = MetadataValue.json({str(t): dataclasses.asdict(th) for t, th in sizing.items()})
    yield MaterializeResult(metadata=meta)
    yield from checks.evaluate("bars", tables, lake, record=BAR)


@dataclasses.dataclass(frozen=True)
class BarThresholds:
    """Volume and dollar bar sizes of one instrument-day, and where they came from.

    Attributes:
        volume_nanos: volume bar threshold (0: no volume bars, nothing traded).
        notional_nanos: dollar bar threshold in the price currency, 1e-9 units (0: none).
        source: ``baseline`` (the mean day of the trailing window) or ``day`` (the day itself).
        baseline_days: days of history found in the window.
    """

    volume_nanos: int
    notional_nanos: int
    source: str
    baseline_days: int


def bar_thresholds(lake: Path, t: Target, trades: pa.Table) -> BarThresholds:
    """Size volume and dollar bars to about ``THRESHOLD_BARS_PER_DAY`` bars on a typical day.

    With at least ``BASELINE_MIN_DAYS`` days of history among the ``BASELINE_DAYS`` before ``t``
    (daily profiles in the lake), the thresholds are the history's mean daily volume and mean
    daily notional (``volume x vwap`` of each day's ``1d`` bar) over ``THRESHOLD_BARS_PER_DAY``:
    a busy day then gets more bars than a quiet one, as information-driven bars should, and the
    threshold does not move with the day being sized. Without that history they come from the
    day's own volume and notional (every day gets ~100 bars).
    """
    volumes, notionals = [], []
    day = t
    for _ in range(BASELINE_DAYS):
        day = day.previous()
        profile = lake_store.read(PROFILE, lake, venue=day.venue, symbol=day.symbol, date=day.date)
        if not profile.num_rows:
            continue
        volumes.append(int(profile.column("volume_nanos")[0].as_py()))
        daily = lake_store.read(BAR, lake, venue=day.venue, symbol=day.symbol, date=day.date)
        daily = daily.filter(pc.equal(daily.column("interval"), "1d"))
        notionals.append(sum(int(v) * int(p) for v, p in zip(daily.column("volume_nanos").to_pylist(),
                                                              daily.column("vwap_price_nanos").to_pylist(),
                                                              strict=True)) // SCALE)
    if len(volumes) >= BASELINE_MIN_DAYS and sum(volumes) > 0:
        bars_in_window = len(volumes) * THRESHOLD_BARS_PER_DAY
        return BarThresholds(_per_bar(sum(volumes), bars_in_window), _per_bar(sum(notionals), bars_in_window),
                             "baseline", len(volumes))
    size = trades.column("size_nanos").to_numpy()
    price = trades.column("price_nanos").to_numpy()
    notional = sum(int(p) * int(s) for p, s in zip(price, size, strict=True)) // SCALE
    return BarThresholds(_per_bar(int(size.sum()), THRESHOLD_BARS_PER_DAY),
                         _per_bar(notional, THRESHOLD_BARS_PER_DAY), "day", len(volumes))


def _per_bar(total: int, bars: int) -> int:
    # at least 1 unit once anything traded: a tiny day still gets bars; 0 means none
    return max(1, total // bars) if total > 0 else 0


def day_bars(trades: pa.Table, sizing: BarThresholds) -> pa.Table:
    """Every bar kind of one instrument-day's trades.

    Time bars in ``STANDARD_INTERVALS``, tick bars of ``TICK_BAR_TRADES`` trades, and volume and
    dollar bars of the thresholds in ``sizing`` (:func:`bar_thresholds`); a threshold is in the
    interval text (``volume:<nanos>``), and re-running the day gives the same bars.
    """
    parts = [time_bars(trades, i) for i in STANDARD_INTERVALS]
    if trades.num_rows:
        parts.append(tick_bars(trades, TICK_BAR_TRADES))
        if sizing.volume_nanos > 0:
            parts.append(volume_bars(trades, sizing.volume_nanos))
        if sizing.notional_nanos > 0:
            parts.append(dollar_bars(trades, sizing.notional_nanos))
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
    yield from checks.evaluate("features", tables, lake, record=METRIC, trades=trades)


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
