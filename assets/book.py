"""Group ``book``: normalized events -> book snapshots on the 1 s capture-time grid, and the BBO.

The batch book of ``tapeflow book`` (:func:`tapeflow.book.book_snapshots`,
:func:`tapeflow.book_l3.l3_book_snapshots`): order-by-order input goes through the L3 book,
price-level input through the L2 book, L3 winning when a venue yields both (as
:func:`tapeflow.rebuild.snapshots_for_format`). Each day is rebuilt from its own rows, so a book
needs the day's snapshot (DBN start-of-day records, a venue REST snapshot) to be valid.
"""

import dataclasses
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from dagster import AssetExecutionContext, AssetSpec, BackfillPolicy, MaterializeResult, multi_asset

from assets import common
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, Target, targets
from assets.resources import TapeflowResource
from kernels.reference import VALID
from tapeflow.book import book_snapshots as l2_snapshots
from tapeflow.book import quotes_from_deltas
from tapeflow.book_l3 import instrument_rows, l3_book_snapshots, replay_l3
from tapeflow.schemas import concat
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, F_MAYBE_BAD_BOOK, ORDER_EVENT, QUOTE

LEVELS = 10
INTERVAL_NS = 1_000_000_000
# Best bid and offer after every published book event, rebuilt from the book: a quote record,
# stored apart from the venue's own quotes (lake dataset / ClickHouse table ``bbo``).
BBO = dataclasses.replace(QUOTE, name="bbo", doc="Best bid and offer after each published book event.")


@multi_asset(
    specs=[
        AssetSpec("book_snapshots", group_name="book", deps=["order_events", "book_deltas"],
                  kinds={"parquet"},
                  description=f"Top {LEVELS} levels every 1 s of capture time (book_snapshot rows).",
                  metadata={"lake_dataset": BOOK_SNAPSHOT.name}),
        AssetSpec("bbo", group_name="book", deps=["order_events", "book_deltas"], kinds={"parquet"},
                  description=BBO.doc, metadata={"lake_dataset": BBO.name}),
    ],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    can_subset=False,
)
def books(context: AssetExecutionContext, tapeflow: TapeflowResource) -> Iterator[MaterializeResult]:
    """Rebuild each instrument-day's book from its lake partition."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    events = common.read(ORDER_EVENT, lake, wanted)
    deltas = common.read(BOOK_DELTA, lake, wanted)
    snaps: dict[Target, pa.Table] = {}
    quotes: dict[Target, pa.Table] = {}
    for t in wanted:
        snaps[t], quotes[t] = rebuild(events[t], deltas[t], t)
    for name, record, tables in (("book_snapshots", BOOK_SNAPSHOT, snaps), ("bbo", BBO, quotes)):
        writes = common.write(record, tables, lake, wanted)
        meta = common.describe(tables, writes, record=record)
        meta["maybe_bad_rows"] = sum(_maybe_bad(t) for t in tables.values())
        yield MaterializeResult(asset_key=name, metadata=meta)


def rebuild(events: pa.Table, deltas: pa.Table, target: Target) -> tuple[pa.Table, pa.Table]:
    """(snapshots on the 1 s grid, BBO rows) of one instrument-day, kept to that day."""
    if events.num_rows:
        snaps = l3_book_snapshots(events, levels=LEVELS, interval_ns=INTERVAL_NS)
        quotes = l3_quotes(events)
    elif deltas.num_rows:
        snaps = l2_snapshots(deltas, levels=LEVELS, interval_ns=INTERVAL_NS)
        quotes = quotes_from_deltas(deltas)
    else:
        return BOOK_SNAPSHOT.empty_table(), BBO.empty_table()
    # the grid's last instant may fall on the next midnight: that row is the next day's first
    return (common.split_by_target(snaps, [target]).get(target, BOOK_SNAPSHOT.empty_table()),
            common.split_by_target(quotes, [target]).get(target, QUOTE.empty_table()))


def l3_quotes(events: pa.Table) -> pa.Table:
    """Best bid and offer after every published (``F_LAST``) order event, per instrument."""
    parts = []
    for rows in instrument_rows(events):
        sub = events.take(pa.array(rows))
        rep = replay_l3(sub, levels=0)
        at = np.flatnonzero(rep.published)
        if not len(at):
            continue
        b = rep.bbo
        parts.append(QUOTE.table(
            {"ts_event_ns": sub.column("ts_event_ns").to_numpy()[at],
             "ts_recv_ns": sub.column("ts_recv_ns").to_numpy()[at],
             "sequence": sub.column("sequence").to_numpy()[at],
             "bid_price_nanos": b["bid_px"][at], "bid_size_nanos": b["bid_sz"][at],
             "ask_price_nanos": b["ask_px"][at], "ask_size_nanos": b["ask_sz"][at],
             "flags": np.where(b["status"][at] != VALID, F_MAYBE_BAD_BOOK, 0).astype(np.uint8)},
            constants={"venue": sub.column("venue")[0].as_py(), "symbol": sub.column("symbol")[0].as_py()}))
    return concat(QUOTE, parts)


def _maybe_bad(table: pa.Table) -> int:
    if not table.num_rows:
        return 0
    return int(np.count_nonzero(table.column("flags").to_numpy() & F_MAYBE_BAD_BOOK))
