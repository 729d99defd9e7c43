"""Group ``derived``: trades and books -> bars, features and per-instrument 20-day baselines.

The functions the live flow calls (``tapeflow.derived``), over whole days; bar kinds and their
sizes come from :mod:`tapeflow.batch.bars`, the trailing days from :mod:`tapeflow.batch.history`.
"""

import dataclasses
from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    asset,
    multi_asset,
)

from assets import checks, common
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, targets
from assets.resources import TapeflowResource
from quality.plan import Plan
from tapeflow.batch import history
from tapeflow.batch.bars import bar_thresholds, day_bars, per_interval
from tapeflow.batch.targets import Target
from tapeflow.derived import features as compute_features
from tapeflow.derived.bars import STANDARD_INTERVALS
from tapeflow.derived.profiles import baselines, daily_profile
from tapeflow.schemas import concat
from tapeflow.schemas.batch import BASELINE, PROFILE
from tapeflow.schemas.records import BAR, BBO, BOOK_SNAPSHOT, METRIC, TRADE

FEATURE_INTERVALS = ("1s", "1m")
FEATURE_LEVELS = 10


@multi_asset(
    specs=[AssetSpec("bars", group_name="derived", deps=["trades"], kinds={"parquet"},
                     description="Time bars in the live flow's 15 frames (1s ... 1d), plus tick, volume and "
                                 "dollar bars.",
                     metadata={"lake_dataset": BAR.name, "intervals": list(STANDARD_INTERVALS)})],
    check_specs=checks.specs("bars"),
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    can_subset=True,  # a check skipped everywhere (no baseline yet) may yield no result
)
def bars(context: AssetExecutionContext,
         tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Time bars in the live flow's 15 frames (1s ... 1d), plus tick, volume and dollar bars."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    build = common.selected(context, "bars")
    plans: dict[Target, Plan] = {}
    for t in wanted:
        if build:
            trades = common.read(TRADE, lake, [t])[t]
            sizing = bar_thresholds(lake, t, trades)
            table = day_bars(trades, sizing)
            writes = common.write(BAR, {t: table}, lake, [t])
            common.report(context, "bars", t, table, writes, extra={
                "bars_by_interval": per_interval(table), "bar_thresholds": dataclasses.asdict(sizing)})
        else:
            table = common.read(BAR, lake, [t])[t]
        if checks.selected(context, "bars"):
            plans[t] = checks.plan("bars", table, lake, t, record=BAR)
    if build:
        yield MaterializeResult(asset_key="bars", metadata=common.run_metadata(wanted))
    yield from checks.finish("bars", plans, lake, context=context)


@multi_asset(
    specs=[AssetSpec("features", group_name="derived", deps=["book_snapshots", "bbo", "trades"],
                     kinds={"parquet"},
                     description="Spread, depth, imbalance, microprice, OFI, CVD and realized volatility on "
                                 "the 1 s and 1 min grids.",
                     metadata={"lake_dataset": METRIC.name, "intervals": list(FEATURE_INTERVALS),
                               "levels": FEATURE_LEVELS})],
    check_specs=checks.specs("features"),
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    can_subset=True,
)
def features(context: AssetExecutionContext,
             tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Spread, depth, imbalance, microprice, OFI, CVD and realized volatility on the 1 s and 1 min grids."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    build = common.selected(context, "features")
    plans: dict[Target, Plan] = {}
    for t in wanted:
        trades = common.read(TRADE, lake, [t])[t]
        if build:
            snaps, quotes = (common.read(r, lake, [t])[t] for r in (BOOK_SNAPSHOT, BBO))
            table = compute_features(snaps, quotes, trades, intervals=FEATURE_INTERVALS,
                                     levels=FEATURE_LEVELS)
            writes = common.write(METRIC, {t: table}, lake, [t])
            common.report(context, "features", t, table, writes)
        else:
            table = common.read(METRIC, lake, [t])[t]
        if checks.selected(context, "features"):
            plans[t] = checks.plan("features", table, lake, t, record=METRIC, trades=trades)
    if build:
        yield MaterializeResult(asset_key="features", metadata=common.run_metadata(wanted))
    yield from checks.finish("features", plans, lake, context=context)


@asset(
    group_name="derived",
    deps=["trades", "features"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    kinds={"parquet"},
    metadata={"lake_datasets": [PROFILE.name, BASELINE.name], "window_days": history.WINDOW_DAYS},
)
def daily_baselines(context: AssetExecutionContext, tapeflow: TapeflowResource) -> MaterializeResult:
    """The day's profile (volume, trade size quantiles, imbalance, spread) and its 20-day baseline."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    for t in wanted:
        trades, metrics = (common.read(r, lake, [t])[t] for r in (TRADE, METRIC))
        profile = daily_profile(trades, metrics, t.date)
        writes = common.write(PROFILE, {t: profile}, lake, [t])
        window = concat(PROFILE, [*history.profile_tables(lake, t), profile])
        rolled = baselines(window, history.WINDOW_DAYS, days=[t.date])
        writes += common.write(BASELINE, {t: rolled}, lake, [t])
        days_used = int(rolled.column("days_used")[0].as_py()) if rolled.num_rows else 0
        common.report(context, "daily_baselines", t, rolled, writes, extra={"days_used": days_used})
    return MaterializeResult(metadata=common.run_metadata(wanted))
