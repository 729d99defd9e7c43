"""Group ``book``: normalized events -> book snapshots on the 1 s capture-time grid, and the BBO.

Wiring only: each instrument-day is rebuilt by :func:`tapeflow.book.partition.rebuild_slices`
(the live flow's book stage fed the day and the day before as micro-batches, read from the lake in
slices by :func:`tapeflow.batch.slices.read_slices`) and its own day's rows are written. A LOBSTER
day is anchored to the orderbook file's rows, kept as ``vendor_book_snapshot``
(:func:`tapeflow.batch.anchors.anchor_slices`).
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
from tapeflow.batch.anchors import anchor_slices
from tapeflow.batch.slices import read_slices
from tapeflow.book.partition import LEVELS, maybe_bad_rows, rebuild_slices
from tapeflow.schemas import concat
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
    for t in wanted:
        days = [t.previous(), t]
        # both days read in slices and fed to the book as micro-batches: the day is never held whole;
        # a LOBSTER day's book is anchored to the orderbook file's rows the ingest kept apart
        pieces = rebuild_slices([read_slices(ORDER_EVENT, lake, d) for d in days],
                                [read_slices(BOOK_DELTA, lake, d) for d in days],
                                anchors=anchor_slices(lake, days))
        mine: tuple[list[pa.Table], list[pa.Table]] = ([], [])
        for part_snaps, part_quotes in pieces:
            # the rows of the day itself (the lake's day rule); the day before only warmed the book up
            for kept, rows in zip(mine, (part_snaps, part_quotes), strict=True):
                kept.append(common.split_by_target(rows, [t]).get(t, rows.slice(0, 0)))
        snaps[t], quotes[t] = concat(BOOK_SNAPSHOT, mine[0]), concat(QUOTE, mine[1])
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
