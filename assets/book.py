"""Group ``book``: normalized events -> book snapshots on the 1 s capture-time grid, and the BBO.

The live flow's book stage (:class:`tapeflow.book.stage.BookStage`) over the whole day:
order-by-order input goes through the L3 book, price-level input through the L2 book, L3 winning
when a venue yields both, with the capture-time grid of ``tapeflow book``
(:func:`tapeflow.book.rebuild.snapshots_for_format`). Each day is rebuilt from its own rows, so a
book starts from the previous day's rows (a session and its snapshot may begin before midnight)
and needs a snapshot (DBN start-of-day records, a venue REST snapshot) within those two days.
"""

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
from tapeflow.book.stage import BookStage
from tapeflow.schemas import RecordType, concat
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, F_MAYBE_BAD_BOOK, ORDER_EVENT, QUOTE, TRADE
from tapeflow.storage import lake as lake_store

LEVELS = 10
INTERVAL_NS = 1_000_000_000
# Best bid and offer rebuilt from the book, one row per change (as the live flow): a quote record,
# stored apart from the venue's own quotes (lake dataset / ClickHouse table ``bbo``).
BBO = dataclasses.replace(QUOTE, name="bbo", doc="Best bid and offer from the rebuilt book, at each change.")


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
        events = _arrival_order(ORDER_EVENT, common.read(ORDER_EVENT, lake, days))
        deltas = _arrival_order(BOOK_DELTA, common.read(BOOK_DELTA, lake, days))
        snaps[t], quotes[t] = rebuild(events, deltas, t)
    for name, record, tables in (("book_snapshots", BOOK_SNAPSHOT, snaps), ("bbo", BBO, quotes)):
        if not common.selected(context, name):
            continue
        writes = common.write(record, tables, lake, wanted)
        meta = common.describe(tables, writes, record=record, context=context, asset=name, books=True)
        meta["maybe_bad_rows"] = sum(_maybe_bad(t) for t in tables.values())
        yield MaterializeResult(asset_key=name, metadata=meta)
    # the day's trades open the session: an auction venue's pre-open book may cross until then
    trades = common.read(TRADE, lake, wanted)
    yield from checks.evaluate("book_snapshots", snaps, lake, record=BOOK_SNAPSHOT, trades=trades,
                               context=context)
    yield from checks.evaluate("bbo", quotes, lake, record=BBO, trades=trades, context=context)


def rebuild(events: pa.Table, deltas: pa.Table, target: Target) -> tuple[pa.Table, pa.Table]:
    """(snapshots on the 1 s grid, BBO changes) of one instrument-day, kept to that day.

    ``events`` / ``deltas`` start with the previous day's rows: the book state at midnight.

    The live flow's own book stage over the whole day in one batch: the same kernels and grid
    as ``tapeflow book`` (it is tested equal to it) and the same BBO-change rule as live.
    """
    stage = BookStage("auto", levels=LEVELS, interval_ns=INTERVAL_NS)
    out = stage.apply({ORDER_EVENT.name: events, BOOK_DELTA.name: deltas})
    end = stage.close()
    snaps = concat(BOOK_SNAPSHOT, [out[BOOK_SNAPSHOT.name], end[BOOK_SNAPSHOT.name]])
    quotes = concat(QUOTE, [out[QUOTE.name], end[QUOTE.name]])
    # the grid's last instant may fall on the next midnight: that row is the next day's first
    return (common.split_by_target(snaps, [target]).get(target, BOOK_SNAPSHOT.empty_table()),
            common.split_by_target(quotes, [target]).get(target, QUOTE.empty_table()))


def _arrival_order(record: RecordType, days: Mapping[Target, pa.Table]) -> pa.Table:
    # the previous day warms the book up (a session, and its snapshot, may start before midnight);
    # partitions are split by venue day, so merge them back into capture order (the lake's sort)
    rows = concat(record, [days[t] for t in sorted(days)])
    return rows.take(pc.sort_indices(rows, [(k, "ascending") for k in lake_store.sort_key(record)]))


def _maybe_bad(table: pa.Table) -> int:
    if not table.num_rows:
        return 0
    return int(np.count_nonzero(table.column("flags").to_numpy() & F_MAYBE_BAD_BOOK))
