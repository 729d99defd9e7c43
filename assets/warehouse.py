"""Group ``warehouse``: the lake partitions of a run -> ClickHouse tables, replacing by partition.

The one writer (:class:`tapeflow.storage.writer.Writer`) swaps whole (venue, symbol, day) slices
in, so re-materializing a partition never duplicates a row, and a slice the lake no longer holds
is emptied. Each instrument-day streams in slices of its lake partition
(:func:`tapeflow.batch.slices.read_slices`), so memory holds a slice, not the day. chdb allows
one writer process per data directory: a run that finds it locked fails with a ``StorageError``
naming the owner and is retried (``RetryPolicy``); the UI's run queue runs one run at a time
(``make ui``).
"""

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from assets import common
from assets.partitions import DAY_BY_INSTRUMENT, target_key, targets
from assets.resources import TapeflowResource
from tapeflow.batch.slices import read_slices
from tapeflow.batch.targets import Target
from tapeflow.schemas.batch import BASELINE, PROFILE
from tapeflow.schemas.records import (
    BAR,
    BBO,
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    METRIC,
    ORDER_EVENT,
    QUOTE,
    REJECTED,
    SIGNAL,
    TRADE,
)
from tapeflow.storage.warehouse import redact_dsn
from tapeflow.storage.writer import Writer

# ClickHouse table (= lake dataset) of each upstream asset
TABLES = {
    "trades": TRADE,
    "book_deltas": BOOK_DELTA,
    "order_events": ORDER_EVENT,
    "venue_quotes": QUOTE,
    "dead_letters": REJECTED,
    "book_snapshots": BOOK_SNAPSHOT,
    "bbo": BBO,
    "bars": BAR,
    "features": METRIC,
    "daily_baselines": BASELINE,
    "signals": SIGNAL,
}
# the profiles behind the baselines travel with them
ALSO_LOADED = (PROFILE,)


@asset(
    group_name="warehouse",
    deps=list(TABLES),
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RetryPolicy(max_retries=3, delay=5),
    kinds={"clickhouse"},
)
def clickhouse_tables(context: AssetExecutionContext, tapeflow: TapeflowResource) -> MaterializeResult:
    """Load every dataset of the run's instrument-days into ClickHouse (replace by partition)."""
    wanted = targets(context.partition_keys)
    slices = [(t.venue, t.symbol, t.date) for t in wanted]
    by_target: dict[Target, dict[str, int]] = {t: {} for t in wanted}
    with Writer(warehouse=tapeflow.dsn) as writer:
        for record in (*TABLES.values(), *ALSO_LOADED):
            with writer.load(record, "replace", partitions=slices) as load:
                for t in wanted:  # a slice of one instrument-day in memory at a time
                    by_target[t][record.name] = 0
                    for rows in read_slices(record, tapeflow.lake, t):
                        by_target[t][record.name] += rows.num_rows
                        load.add(rows)
                load.commit()
    for t, loaded in by_target.items():  # each partition's own rows, not the run's
        context.add_asset_metadata({"dagster/row_count": sum(loaded.values()),
                                    "rows_by_table": MetadataValue.json(loaded)}, partition_key=target_key(t))
    return MaterializeResult(metadata={**common.run_metadata(wanted), "dsn": redact_dsn(tapeflow.dsn)})
