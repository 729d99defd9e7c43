"""Group ``derived``: trades and books -> bars, features and per-instrument baselines.

The functions the live flow calls (``tapeflow.bars``, ``tapeflow.derived``), over whole days.
"""

from collections.abc import Iterator

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
from assets.partitions import DAY_BY_INSTRUMENT, targets
from assets.resources import TapeflowResource
from tapeflow.bars import STANDARD_INTERVALS, time_bars
from tapeflow.derived import metrics
from tapeflow.schemas import concat
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, METRIC, TRADE

FEATURE_INTERVAL = "1s"
FEATURE_LEVELS = 10


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
    """Time bars in the live flow's 15 frames (1s ... 1d) from each day's trades."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    trades = common.read(TRADE, lake, wanted)
    tables = {t: concat(BAR, [time_bars(trades[t], i) for i in STANDARD_INTERVALS]) for t in wanted}
    writes = common.write(BAR, tables, lake, wanted)
    meta = common.describe(tables, writes, record=BAR)
    meta["bars_by_interval"] = MetadataValue.json(_per_interval(tables.values()))
    yield MaterializeResult(metadata=meta)
    yield from checks.evaluate("bars", tables, lake)


@asset(
    group_name="derived",
    deps=["book_snapshots", "bbo", "trades"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    kinds={"parquet"},
    metadata={"lake_dataset": METRIC.name, "interval": FEATURE_INTERVAL, "levels": FEATURE_LEVELS},
    check_specs=checks.specs("features"),
)
def features(context: AssetExecutionContext,
             tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Spread, depth, imbalance, microprice, OFI, CVD and realized volatility on the 1 s book grid."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    snaps = common.read(BOOK_SNAPSHOT, lake, wanted)
    quotes = common.read(BBO, lake, wanted)
    trades = common.read(TRADE, lake, wanted)
    tables = {t: metrics(snaps[t], quotes[t], trades[t], interval=FEATURE_INTERVAL, levels=FEATURE_LEVELS)
              for t in wanted}
    writes = common.write(METRIC, tables, lake, wanted)
    yield MaterializeResult(metadata=common.describe(tables, writes, record=METRIC))
    yield from checks.evaluate("features", tables, lake)


def _per_interval(tables: object) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tables:  # type: ignore[attr-defined]
        for interval in t.column("interval").to_pylist():
            out[interval] = out.get(interval, 0) + 1
    return out
