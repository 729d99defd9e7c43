"""Group ``book``: normalized events -> book snapshots on the 1 s capture-time grid, and the BBO.

Wiring only: each instrument-day is rebuilt by :func:`tapeflow.book.partition.rebuild_partition`
(the live flow's book stage over the day and the day before) and its own day's rows are written.
"""

from collections.abc import Iterator

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    multi_asset,
)

from assets import checks, common
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, Target, targets
from assets.resources import TapeflowResource
from tapeflow.book.partition import LEVELS, maybe_bad_rows, rebuild_partition
from tapeflow.schemas.records import BBO, BOOK_DELTA, BOOK_SNAPSHOT, ORDER_EVENT, QUOTE, TRADE


@multi_asset(
    specs=[
        AssetSpec("book_snapshots", group_name="book", deps=["order_events", "book_deltas", "trades"],
                  kinds={"parquet"},
                  description=f"Top {LEVELS} levels every 1 s of capture time (book_snapshot rows).",
                  metadata={"lake_dataset": BOOK_SNAPSHOT.name}),
        AssetSpec("bbo", group_name="book", deps=["order_events", "book_deltas", "trades"], kinds={"parquet"},
                  description=BBO.doc, metadata={"lake_dataset": BBO.name}),
    ],
    check_specs=checks.specs("book_snapshots") + checks.specs("bbo"),
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    can_subset=True,  # a check skipped everywhere (no baseline yet) may yield no result
)
def books(context: AssetExecutionContext,
          tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Rebuild each instrument-day's book from its lake partition."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    snaps: dict[Target, pa.Table] = {}
    quotes: dict[Target, pa.Table] = {}
    held: dict[Target, tuple[pa.Table, pa.Table]] = {}
    # an instrument's days in order: a day read as the day is reused as the next one's day before
    for t in sorted(wanted, key=lambda t: (t.venue, t.symbol, t.date)):
        days = [t.previous(), t]
        held = {d: rows for d, rows in held.items() if d in days}  # at most two days
        missing = [d for d in days if d not in held]
        events, deltas = common.read(ORDER_EVENT, lake, missing), common.read(BOOK_DELTA, lake, missing)
        held.update({d: (events[d], deltas[d]) for d in missing})
        both_snaps, both_quotes = rebuild_partition([held[d][0] for d in days], [held[d][1] for d in days])
        # the rows of the day itself (the lake's day rule); the day before only warmed the book up
        snaps[t] = common.split_by_target(both_snaps, [t]).get(t, BOOK_SNAPSHOT.empty_table())
        quotes[t] = common.split_by_target(both_quotes, [t]).get(t, QUOTE.empty_table())
        del events, deltas, both_snaps, both_quotes
    snaps, quotes = {t: snaps[t] for t in wanted}, {t: quotes[t] for t in wanted}
    for name, record, tables in (("book_snapshots", BOOK_SNAPSHOT, snaps), ("bbo", BBO, quotes)):
        if not common.selected(context, name):
            continue
        writes = common.write(record, tables, lake, wanted)
        meta = common.describe(tables, writes, record=record, context=context, asset=name, books=True)
        meta["maybe_bad_rows"] = sum(maybe_bad_rows(t) for t in tables.values())
        yield MaterializeResult(asset_key=name, metadata=meta)
    # the day's trades open the session: an auction venue's pre-open book may cross until then
    trades = common.read(TRADE, lake, wanted)
    yield from checks.evaluate("book_snapshots", snaps, lake, record=BOOK_SNAPSHOT, trades=trades,
                               context=context)
    yield from checks.evaluate("bbo", quotes, lake, record=BBO, trades=trades, context=context)
