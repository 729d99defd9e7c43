"""Group ``ingest``: raw sources (landing folder, live journal) -> normalized lake partitions.

The body wires :class:`tapeflow.batch.normalize.Normalizer` (decode each source once, hand each
instrument-day over when complete) to streaming lake loads (:class:`tapeflow.batch.loads.DayLoads`:
each decoded piece is written as it comes, a day committed once complete) and the quality suites;
see those modules for the day rule and the trades derived from MBO order events.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    RetryPolicy,
    multi_asset,
)

from assets import checks, common
from assets.partitions import DAY_BY_INSTRUMENT, targets
from assets.resources import TapeflowResource
from quality.plan import Plan
from quality.slices import SlicedPlanner
from tapeflow.batch.loads import DayLoads
from tapeflow.batch.normalize import STORED_AS, DayRows, Normalizer
from tapeflow.batch.slices import read_slices
from tapeflow.batch.sources import SourceIndex, discover
from tapeflow.batch.stats import PieceStats
from tapeflow.batch.targets import Target
from tapeflow.schemas import RecordType, concat
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT, QUOTE, REJECTED, TRADE
from tapeflow.storage.lake import PartitionWrite
from tapeflow.storage.writer import Writer, write

# asset name -> the record it stores (lake dataset = record name)
NORMALIZED: dict[str, RecordType] = {
    "trades": TRADE,
    "book_deltas": BOOK_DELTA,
    "order_events": ORDER_EVENT,
    "venue_quotes": QUOTE,
    "dead_letters": REJECTED,
}
# assets whose quality suite runs as blocking checks (dead letters are judged by their count)
CHECKED = ("trades", "book_deltas", "order_events", "venue_quotes")
# checked slice by slice as their pieces stream into the lake: a day of them is never held
STREAMED = {"book_deltas": BOOK_DELTA, "order_events": ORDER_EVENT}
# held for the day: the trades are judged against the day's venue quotes, the quotes' pre-open
# against the day's first trade, and the dead letters reported by reason
HELD = frozenset({TRADE.name, QUOTE.name, REJECTED.name})
# other decoded datasets, kept in the lake without an asset of their own (never dropped)
ALSO_STORED: dict[str, RecordType] = {
    name: record for name, record in STORED_AS.items() if record not in NORMALIZED.values()
}
RETRY = RetryPolicy(max_retries=2, delay=2)


@multi_asset(
    specs=[AssetSpec(name, group_name="ingest", description=rec.doc, kinds={"parquet"},
                     metadata={"lake_dataset": rec.name}) for name, rec in NORMALIZED.items()],
    check_specs=[s for name in CHECKED for s in checks.specs(name)],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    # subsettable so that a check skipped everywhere (no baseline yet) may yield no result
    can_subset=True,
)
def normalized(context: AssetExecutionContext,
               tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Decode every source holding the run's instrument-days and write their lake partitions."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    writing = [name for name in NORMALIZED if common.selected(context, name)]
    checking = [name for name in CHECKED if checks.selected(context, name)]
    plans: dict[str, dict[Target, Plan]] = {name: {} for name in checking}
    # the streamed datasets of each day not complete yet: their planners and counts
    planners: dict[tuple[Target, str], SlicedPlanner] = {}
    seen: dict[tuple[Target, str], PieceStats] = {}

    def judge(day: DayRows) -> None:
        t = day.target
        for name in checking:
            record = NORMALIZED[name]
            if name in STREAMED:
                planner = planners.pop((t, name), None)
                if planner is None:
                    planner = checks.planner(name, t)
                    if not writing:  # a run that only executes checks reads the lake, slice by slice
                        for rows in read_slices(record, lake, t):
                            planner.add(rows)
                plans[name][t] = checks.finish_planner(planner, lake, t, record)
                continue
            # trades are judged against the venue's BBO; a venue's own BBO shows the pre-open
            # auction book too (CME MBP-1): the trades open the session
            plans[name][t] = checks.plan(name, day[record], lake, t, record=record,
                                         book=day[QUOTE] if name == "trades" else None,
                                         trades=day[TRADE] if name == "venue_quotes" else None)

    if writing:
        stored = [*ALSO_STORED.values(), *(NORMALIZED[name] for name in writing)]
        by_record = {record.name: name for name, record in STREAMED.items()}
        with Writer(lake) as writer:
            loads = DayLoads(writer, stored)

            def sink(t: Target, dataset: str, rows: pa.Table) -> None:
                loads.add(t, dataset, rows)
                name = by_record.get(dataset)
                if name is not None and name in writing:
                    seen.setdefault((t, name), PieceStats(common.PREVIEW_ROWS)).add(rows)
                if name is not None and name in checking:
                    if (t, name) not in planners:
                        planners[(t, name)] = checks.planner(name, t)
                    planners[(t, name)].add(rows)

            try:
                # each piece reaches the lake (and its checks) as it is decoded; a day is
                # committed once complete, and only its held datasets were kept
                for day in _days(context, tapeflow, wanted, sink=sink):
                    _report(context, day, writing, loads.commit(day.target), seen)
                    judge(day)
                    del day  # before the next day is decoded: one day in memory at a time
            finally:
                loads.abort()
    else:
        for day in _lake_days(lake, wanted):
            judge(day)
            del day
    for name in writing:
        yield MaterializeResult(asset_key=name, metadata=common.run_metadata(wanted))
    yield from checks.finish_all(plans, lake, context=context)


def _days(context: AssetExecutionContext, tapeflow: TapeflowResource, wanted: list[Target],
          sink: Callable[[Target, str, pa.Table], None]) -> Iterator[DayRows]:
    lake = tapeflow.lake
    index = SourceIndex(lake)
    for entry in index.refresh(discover(tapeflow.landing, tapeflow.journal)):
        if entry.error:
            context.log.warning(f"source {entry.key} ({entry.format}) could not be decoded: {entry.error}")
    sources = sorted({s for t in wanted for s in index.sources_for(t.venue, t.symbol, t.date)},
                     key=lambda s: s.key)
    if not sources:
        context.log.warning(f"no indexed source holds {', '.join(map(str, wanted))}")
    normalizer = Normalizer(sources, wanted, index, sink=sink, hold=HELD)
    for day in normalizer.days():
        t = day.target
        day.sources = [f"{s.format}: {s.key}" for s in index.sources_for(t.venue, t.symbol, t.date)]
        yield day
    if normalizer.orphans:
        orphans = concat(REJECTED, normalizer.orphans)
        write(REJECTED, orphans, lake, mode="merge")


def _lake_days(lake: Path, wanted: list[Target]) -> Iterator[DayRows]:
    """The days as the lake holds them (a run that only executes checks re-reads, never decodes);
    the streamed datasets are left empty (their checks read them in slices)."""
    streamed = {r.name for r in STREAMED.values()}
    for t in wanted:
        yield DayRows(t, {r.name: common.read(r, lake, [t])[t] if r.name not in streamed else r.empty_table()
                          for r in STORED_AS.values()})


def _report(context: AssetExecutionContext, day: DayRows, writing: list[str],
            writes: dict[str, list[PartitionWrite]], seen: dict[tuple[Target, str], PieceStats]) -> None:
    t = day.target
    for name in writing:
        record = NORMALIZED[name]
        extra: dict[str, object] = {"sources": day.sources}
        if name == "trades":
            extra["trades_from_order_events"] = day.trades_from_order_events
        rows = seen.pop((t, name), None) or PieceStats() if name in STREAMED else day[record]
        common.report(context, name, t, rows, writes[record.name], rejected=day[REJECTED], extra=extra)
    if day.trades_from_order_events:
        context.log.info(f"{t}: trades derived from order events (no trade rows in the sources)")
