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
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, targets
from assets.resources import TapeflowResource
from tapeflow.bars import STANDARD_INTERVALS, time_bars
from tapeflow.schemas import concat
from tapeflow.schemas.records import BAR, TRADE


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


def _per_interval(tables: object) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tables:  # type: ignore[attr-defined]
        for interval in t.column("interval").to_pylist():
            out[interval] = out.get(interval, 0) + 1
    return out
