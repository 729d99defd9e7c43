"""Group ``ingest``: raw sources (landing folder, live journal) -> normalized lake partitions.

The same decoders as ``tapeflow ingest`` and the live connectors (``tapeflow.venues``), so a day
rebuilt from the journal holds the rows the live flow decoded from the same frames.
"""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    multi_asset,
)

from assets import checks, common
from assets.partitions import DAY_BY_INSTRUMENT, Target, targets
from assets.resources import TapeflowResource
from assets.sources import Source, SourceIndex, discover
from tapeflow.derived.trades import trades_from_order_events
from tapeflow.schemas import ALL_RECORDS, RecordType, concat
from tapeflow.schemas.records import (
    BAR,
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    INSTRUMENT,
    ORDER_EVENT,
    QUOTE,
    REJECTED,
    STATISTIC,
    TRADE,
)
from tapeflow.storage.writer import Writer
from tapeflow.venues import get_format
from tapeflow.venues.base import merge

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
# other decoded records, kept in the lake without an asset of their own (never dropped); a
# vendor's own snapshots and bars are stored apart from the ones the pipeline rebuilds
ALSO_STORED: dict[str, RecordType] = {
    STATISTIC.name: STATISTIC,
    INSTRUMENT.name: INSTRUMENT,
    BOOK_SNAPSHOT.name: dataclasses.replace(BOOK_SNAPSHOT, name="vendor_book_snapshot"),
    BAR.name: dataclasses.replace(BAR, name="vendor_bar"),
}
RETRY = RetryPolicy(max_retries=2, delay=2)


@multi_asset(
    specs=[AssetSpec(name, group_name="ingest", description=rec.doc, kinds={"parquet"},
                     metadata={"lake_dataset": rec.name}) for name, rec in NORMALIZED.items()],
    check_specs=[s for name in CHECKED for s in checks.specs(name)],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    can_subset=False,
)
def normalized(context: AssetExecutionContext,
               tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Decode every source holding the run's instrument-days and write their lake partitions."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    index = SourceIndex(lake)
    for entry in index.refresh(discover(tapeflow.landing, tapeflow.journal)):
        if entry.error:
            context.log.warning(f"source {entry.key} ({entry.format}) could not be decoded: {entry.error}")
    sources = sorted({s for t in wanted for s in index.sources_for(t.venue, t.symbol, t.date)},
                     key=lambda s: s.key)
    if not sources:
        context.log.warning(f"no indexed source holds {', '.join(map(str, wanted))}")
    decoded = decode_sources(sources, wanted, lake, index)
    source_meta = {
        "sources": MetadataValue.json([f"{s.format}: {s.key}" for s in sources]),
        "source_bytes": sum(s.size for s in sources),
    }
    for name, record in ALSO_STORED.items():
        common.write(record, decoded.get(name, {}), lake, wanted)
    derived = derive_trades(decoded, wanted)
    if derived:
        context.log.info(f"trades derived from order events (no trade rows in the sources): {derived}")
    rejected = decoded.get(REJECTED.name, {})
    written = {}
    for name, record in NORMALIZED.items():
        found = decoded.get(record.name, {})
        tables = written[name] = {t: found.get(t, record.empty_table()) for t in wanted}
        writes = common.write(record, tables, lake, wanted)
        meta = common.describe(tables, writes, record=record, rejected=rejected)
        if name == "trades":
            meta["trades_from_order_events"] = MetadataValue.json(derived)
        yield MaterializeResult(asset_key=name, metadata=meta | source_meta)
    for name in CHECKED:
        book = written["venue_quotes"] if name == "trades" else None
        # a venue's own BBO shows the pre-open auction book too (CME MBP-1): the trades open the session
        trades = written["trades"] if name == "venue_quotes" else None
        yield from checks.evaluate(name, written[name], lake, book=book, record=NORMALIZED[name],
                                   trades=trades)


def derive_trades(decoded: dict[str, dict[Target, pa.Table]], wanted: list[Target]) -> list[str]:
    """Give trade rows to instrument-days that have order events but no trades (MBO-only vendors).

    An MBO feed (Databento ``mbo``) carries its executions as ``T`` order events; Databento's
    trades schema is derived from them the same way
    (:func:`tapeflow.derived.trades.trades_from_order_events`).
    An instrument-day that has a trade source keeps it. Returns the instrument-days derived.
    """
    trades = decoded.setdefault(TRADE.name, {})
    events = decoded.get(ORDER_EVENT.name, {})
    out = []
    for t in wanted:
        if trades.get(t) is None or trades[t].num_rows == 0:
            rows = trades_from_order_events(events[t]) if t in events else TRADE.empty_table()
            if rows.num_rows:
                trades[t] = rows
                out.append(str(t))
    return out


def decode_sources(sources: list[Source], wanted: list[Target], lake: Path,
                   index: SourceIndex | None = None) -> dict[str, dict[Target, pa.Table]]:
    """Decode each source once and keep the rows of the wanted instrument-days, per record type.

    With ``index``, a source whose rows its indexing decode kept (unchanged since) is read back
    instead of decoded, and the kept rows are dropped once ``wanted`` covers every instrument-day
    the source holds. Rejected rows without a symbol belong to no instrument: they are merged (by
    content, so a re-run adds nothing) into the lake's
    ``rejected/venue=<v>/symbol=__HIVE_DEFAULT_PARTITION__``.
    """
    found: dict[str, dict[Target, list[pa.Table]]] = {}
    keys = {f"{t.venue}\t{t.symbol}\t{t.date}" for t in wanted}
    for src in sources:
        tables = index.decoded(src) if index is not None else None
        if tables is None:
            tables = merge(list(get_format(src.format).decode(list(src.paths))))
        for name, table in tables.items():
            for target, part in common.split_by_target(table, wanted).items():
                found.setdefault(name, {}).setdefault(target, []).append(part)
            if name == REJECTED.name:
                orphans = table.filter(pc.equal(table.column("symbol"), ""))
                if orphans.num_rows:
                    Writer(lake).merge(REJECTED, orphans)
        entry = index.entries.get(src.key) if index is not None else None
        if entry is not None and keys.issuperset(entry.partitions):
            index.drop_decoded(src)  # type: ignore[union-attr]
    return {
        name: {t: concat(ALL_RECORDS[name], parts) for t, parts in by_target.items()}
        for name, by_target in found.items()
    }
