"""Raw sources -> the normalized rows of each instrument-day, one day at a time.

The same decoders as ``tapeflow ingest`` and the live connectors (``tapeflow.venues``), so a day
rebuilt from the journal holds the rows the live flow decoded from the same frames. Each source is
decoded once per run (or its kept rows read back, :class:`~tapeflow.batch.sources.SourceIndex`),
chunk by chunk; a day is handed over as soon as every source holding it has been read, so memory
holds the days a source is still feeding, not the run. With a ``sink`` every piece is also handed
on as it is decoded (the assets stream it into the lake, :class:`tapeflow.batch.loads.DayLoads`),
so writing a day never needs the day in one table.

Day rule: a row belongs to the UTC day of its venue time (capture time where the venue gave none),
the lake's rule. An instrument-day with order events but no trade rows (an MBO-only vendor drop:
Databento ``mbo``) gets its trades from the ``T`` events, as Databento derives its trades schema
(:func:`tapeflow.derived.trades.trades_from_order_events`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.batch.sources import Source, SourceIndex
from tapeflow.batch.targets import Target
from tapeflow.derived.trades import trades_from_order_events
from tapeflow.schemas import RecordType, concat
from tapeflow.schemas.batch import VENDOR_BAR, VENDOR_BOOK_SNAPSHOT
from tapeflow.schemas.records import (
    BOOK_DELTA,
    INSTRUMENT,
    ORDER_EVENT,
    QUOTE,
    REJECTED,
    STATISTIC,
    TRADE,
)
from tapeflow.storage.lake import split
from tapeflow.venues import get_format

# what the decoders emit -> the lake dataset each is kept in; a vendor's own snapshots and bars are
# stored apart from the ones the pipeline rebuilds
STORED_AS: dict[str, RecordType] = {
    TRADE.name: TRADE,
    BOOK_DELTA.name: BOOK_DELTA,
    ORDER_EVENT.name: ORDER_EVENT,
    QUOTE.name: QUOTE,
    REJECTED.name: REJECTED,
    STATISTIC.name: STATISTIC,
    INSTRUMENT.name: INSTRUMENT,
    "book_snapshot": VENDOR_BOOK_SNAPSHOT,
    "bar": VENDOR_BAR,
}


@dataclass
class DayRows:
    """Every normalized row of one instrument-day, by lake dataset name (see :data:`STORED_AS`).

    Attributes:
        target: the instrument-day.
        tables: dataset name -> rows (every dataset of :data:`STORED_AS`; empty where none).
        trades_from_order_events: the trades were derived from the ``T`` order events.
        sources: the sources that held the day (``<format>: <path>``), when known.
    """

    target: Target
    tables: dict[str, pa.Table]
    trades_from_order_events: bool = False
    sources: list[str] = field(default_factory=list)

    def __getitem__(self, record: RecordType) -> pa.Table:
        return self.tables[record.name]


@dataclass
class Normalizer:
    """Decode the sources of some instrument-days and hand each day over once it is complete.

    Attributes:
        sources: the sources holding rows of the wanted days.
        wanted: the instrument-days to build.
        index: the source index (kept decodes; which source holds which day); None decodes everything
            and hands every day over at the end.
        orphans: rejected rows without a symbol (they belong to no instrument-day), to be merged
            into the lake's ``rejected`` dataset by the caller.
        sink: called with (instrument-day, dataset name, rows) for every piece as it is decoded, and
            for the trades derived from order events when the day is complete (before its
            :class:`DayRows` is handed over).
        hold: the datasets whose rows the :class:`DayRows` hold (None: every one). The others are
            only handed to ``sink`` piece by piece, so a day of them is never held (their tables
            in the :class:`DayRows` are empty); the trades derived from order events are derived
            piece by piece then (the rows are the same: one per ``T`` event, in order).
    """

    sources: Sequence[Source]
    wanted: Sequence[Target]
    index: SourceIndex | None = None
    orphans: list[pa.Table] = field(default_factory=list)
    sink: Callable[[Target, str, pa.Table], None] | None = None
    hold: frozenset[str] | None = None

    def days(self) -> Iterator[DayRows]:
        """Every wanted instrument-day (in order of completion; empty where no source holds it)."""
        wanted = set(self.wanted)
        waiting = {t: self._holders(t) for t in wanted}
        parts: dict[Target, dict[str, list[pa.Table]]] = {t: {} for t in wanted}
        for src in self.sources:
            for name, table in self._chunks(src):
                stored = STORED_AS.get(name)
                if stored is None:
                    continue
                if name == REJECTED.name:
                    orphans = table.filter(pc.equal(table.column("symbol"), ""))
                    if orphans.num_rows:
                        self.orphans.append(orphans)
                for target, rows in _split(table, wanted):
                    if self._held(stored.name):
                        parts[target].setdefault(stored.name, []).append(rows)
                    elif stored.name == ORDER_EVENT.name and self._held(TRADE.name):
                        # the trades a day without trade rows gets, derived as the events pass
                        derived = trades_from_order_events(rows)
                        if derived.num_rows:
                            parts[target].setdefault(_DERIVED, []).append(derived)
                    if self.sink is not None:
                        self.sink(target, stored.name, rows)
            self._dropped(src)
            for t in sorted(t for t, holders in waiting.items() if src.key in holders):
                holders = waiting[t]
                holders.discard(src.key)
                if not holders:
                    del waiting[t]
                    yield self._day(t, parts.pop(t))
        for t in sorted(parts):
            yield self._day(t, parts.pop(t))

    def _held(self, name: str) -> bool:
        return self.hold is None or name in self.hold

    def _day(self, t: Target, parts: dict[str, list[pa.Table]]) -> DayRows:
        derived = parts.pop(_DERIVED, None)
        if derived is not None and not parts.get(TRADE.name):
            day = _day(t, {**parts, TRADE.name: derived})
            day.trades_from_order_events = True
        else:
            day = _day(t, parts)
        if day.trades_from_order_events and self.sink is not None:
            self.sink(t, TRADE.name, day[TRADE])
        return day

    def _holders(self, t: Target) -> set[str]:
        if self.index is None:
            return {"\0never"}  # without an index no day is known complete before the end
        return {s.key for s in self.index.sources_for(t.venue, t.symbol, t.date)} & {
            s.key for s in self.sources}

    def _chunks(self, src: Source) -> Iterator[tuple[str, pa.Table]]:
        kept = self.index.decoded_chunks(src) if self.index is not None else None
        if kept is not None:
            yield from kept
            return
        for chunk in get_format(src.format).decode(list(src.paths)):
            for name, table in chunk.tables.items():
                if table.num_rows:
                    yield name, table

    def _dropped(self, src: Source) -> None:
        """Forget the kept rows of ``src`` once this run covers every day it holds."""
        if self.index is None:
            return
        entry = self.index.entries.get(src.key)
        keys = {f"{t.venue}\t{t.symbol}\t{t.date}" for t in self.wanted}
        if entry is not None and keys.issuperset(entry.partitions):
            self.index.drop_decoded(src)


_DERIVED = "\0trades derived from order events"


def _split(table: pa.Table, wanted: set[Target]) -> Iterable[tuple[Target, pa.Table]]:
    for venue, symbol, date, part in split(table):
        target = Target(date, venue, symbol)
        if target in wanted:
            yield target, part


def _day(t: Target, parts: dict[str, list[pa.Table]]) -> DayRows:
    tables = {name: concat(record, parts.get(name, [])) for name, record in
              {r.name: r for r in STORED_AS.values()}.items()}
    derived = False
    if tables[TRADE.name].num_rows == 0 and tables[ORDER_EVENT.name].num_rows:
        trades = trades_from_order_events(tables[ORDER_EVENT.name])
        if trades.num_rows:
            tables[TRADE.name], derived = trades, True
    return DayRows(t, tables, derived)


def split_by_target(table: pa.Table, wanted: Iterable[Target]) -> dict[Target, pa.Table]:
    """Rows of ``table`` per wanted target (the lake's day rule); rows of other days are dropped."""
    out: dict[Target, list[pa.Table]] = {}
    for target, part in _split(table, set(wanted)):
        out.setdefault(target, []).append(part)
    return {t: pa.concat_tables(parts) for t, parts in out.items()}
