"""The live flow's stages as one call per micro-batch: venue health, routing, the instrument pipeline.

A Bytewax item costs ~1.5 us per stateless step and ~9 us per stateful one, and a stage that
builds empty Arrow tables or walks rows in Python pays tens of microseconds per batch whatever
its size. So the flow (``flows.market``) runs three pieces of logic defined here:

* :class:`VenueHealth` (per venue, optional): feed health (``FeedHealth`` / ``RelativeHealth``),
  ``F_MAYBE_BAD_BOOK`` on rows captured in a degraded window, window changes under ``_degraded``;
* :func:`split_by_instrument` / :func:`passthrough`: the batch cut per instrument
  (``venue/symbol``), dead letters and STATUS rows straight to their sinks;
* :class:`InstrumentPipeline` (per instrument): book (``BookStage``) -> degraded windows ->
  bars (``LiveBars``) -> metrics (``LiveMetrics``) in one call, returning the
  ``(table_name, table)`` items the sinks get. A stage whose input is empty is not called.

Everything is picklable (Bytewax recovery snapshots it) and reads no clock: the output depends
only on the rows and their order per instrument, never on the batch cuts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from tapeflow.book.stage import BookStage
from tapeflow.derived import LiveBars, LiveMetrics
from tapeflow.derived.metrics import single_value
from tapeflow.live.batching import WATERMARK, Batch, instrument_rows
from tapeflow.live.health import batch_latencies
from tapeflow.live.windows import DEGRADED, OPEN_NS, DegradedWindows
from tapeflow.schemas import ALL_RECORDS, concat
from tapeflow.schemas.records import (
    BAR,
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    METRIC,
    ORDER_EVENT,
    QUOTE,
    REJECTED,
    STATUS,
    TRADE,
)

Item = tuple[str, pa.Table]
# The rebuilt best bid/offer: ``quote`` in a batch is the venue's own quote stream (e.g. Binance
# bookTicker), a different thing with the same record type.
BBO = "bbo"
# Tables with no per-instrument state: they bypass the instrument pipeline.
PASS_THROUGH = (REJECTED.name, STATUS.name)
# Tables the pipeline derives: an input table of the same name (LOBSTER's own book file, a
# vendor's OHLCV bars) is the vendor's, never sent on as if the flow had built it.
DERIVED = (BOOK_SNAPSHOT.name, BAR.name, METRIC.name)
_RAW = frozenset(ALL_RECORDS) - set(DERIVED) - set(PASS_THROUGH)
_BOOK_INPUTS = (ORDER_EVENT.name, BOOK_DELTA.name)
# Built once: a RecordType.empty_table() costs 0.02-1 ms, and a small batch asks for several.
_EMPTY = {r.name: r.empty_table() for r in (BOOK_SNAPSHOT, QUOTE, TRADE)}


def instrument_key(venue: str, symbol: str) -> str:
    """The routing key of one instrument."""
    return f"{venue}/{symbol}"


def split_by_instrument(batch: Batch) -> list[tuple[str, Batch]]:
    """Split a micro-batch into one batch per instrument (first-seen order, row order kept).

    A one-instrument table (the common case) is recognized from its string buffers and passed on
    without a copy; a mixed one is grouped once.
    """
    out: dict[str, Batch] = {}
    for name, table in batch.items():
        if name in PASS_THROUGH or not table.num_rows:
            continue
        venue, symbol = single_value(table.column("venue")), single_value(table.column("symbol"))
        if venue is not None and symbol is not None:
            out.setdefault(instrument_key(venue, symbol), {})[name] = table
            continue
        for v, s, rows in instrument_rows(table):
            out.setdefault(instrument_key(v, s), {})[name] = table if rows is None else table.take(rows)
    return list(out.items())


def passthrough(batch: Batch) -> list[Item]:
    """The batch's dead letters and STATUS rows as ``(table_name, table)`` items."""
    return [(name, batch[name]) for name in PASS_THROUGH if name in batch and batch[name].num_rows]


class InstrumentPipeline:
    """One instrument's book -> degraded windows -> bars -> metrics, one call per micro-batch.

    Feeding an instrument's batches (from :func:`split_by_instrument`) and then calling
    :meth:`close` gives the rows the stages give one after the other: ``book_snapshot`` (grid
    snapshots, flagged inside degraded windows), ``bar`` (+ ``rejected`` trades too late for the
    bar policy), ``metric``, the rebuilt BBO as ``quote`` when asked, and the decoded input rows
    when ``raw``.

    Args:
        book: the book stage (``BookStage(kind, levels, interval_ns)``).
        bars: a ``tapeflow.derived.LiveBars`` (``add``, ``drain_rejected``, ``close``), or None.
        metrics: a ``tapeflow.derived.LiveMetrics`` (``add``, ``close``), or None.
        raw: also send the decoded input records (as ``tapeflow ingest`` stores them).
        bbo_as_quote: also send the rebuilt best bid/offer as ``quote`` rows.
    """

    def __init__(self, book: BookStage, bars: Any | None = None, metrics: Any | None = None, *,
                 raw: bool = True, bbo_as_quote: bool = False) -> None:
        self.book = book
        self.bars = bars
        self.metrics = metrics
        self.windows = DegradedWindows()
        self.raw = raw
        self.bbo_as_quote = bbo_as_quote
        self.instrument: tuple[str, str] | None = None  # learnt from the first batch (keyed by it)

    def apply(self, batch: Batch) -> list[Item]:
        """Run one instrument batch through every stage.

        Returns:
            ``(table_name, table)`` items for the sinks, empty tables left out (often none at all).
        """
        changes = batch.get(DEGRADED)
        if changes is not None and changes.num_rows:
            self.windows.merge(changes)
        snaps = bbo = None
        if any(name in batch for name in _BOOK_INPUTS):
            out = self.book.apply(batch)
            snaps, bbo = _rows(out[BOOK_SNAPSHOT.name]), _rows(out[QUOTE.name])
        marks = batch.get(WATERMARK)
        if marks is not None and marks.num_rows:
            snaps = self._advance(marks, snaps)
        if snaps is not None and self.windows:
            # a snapshot shows the book at its grid instant: flagged when the instant is in a window
            snaps = self.windows.flag(snaps, "ts_event_ns")
        items = [(n, t) for n, t in batch.items() if n in _RAW and t.num_rows] if self.raw else []
        if snaps is not None:
            items.append((BOOK_SNAPSHOT.name, snaps))
        if bbo is not None and self.bbo_as_quote:
            items.append((QUOTE.name, bbo))
        trades = _rows(batch.get(TRADE.name))
        if trades is not None and self.bars is not None:
            self._bars(trades, items)
        if self.metrics is not None and (snaps is not None or bbo is not None or trades is not None):
            metric = self.metrics.add(snaps if snaps is not None else _EMPTY[BOOK_SNAPSHOT.name],
                                      bbo if bbo is not None else _EMPTY[QUOTE.name],
                                      trades if trades is not None else _EMPTY[TRADE.name],
                                      **self._keyed(self.metrics, batch))
            if metric.num_rows:
                items.append((METRIC.name, metric))
        return items

    def close(self) -> list[Item]:
        """End of stream: the book's last grid instant, the open bars and the held metric samples."""
        items: list[Item] = []
        snaps = _rows(self.book.close()[BOOK_SNAPSHOT.name])
        if snaps is not None and self.windows:
            snaps = self.windows.flag(snaps, "ts_event_ns")
        if snaps is not None:
            items.append((BOOK_SNAPSHOT.name, snaps))
        if self.bars is not None:
            bars = self.bars.close()
            if bars.num_rows:
                items.append((BAR.name, bars))
        if self.metrics is not None:
            parts = []
            if snaps is not None:
                parts.append(self.metrics.add(snaps, _EMPTY[QUOTE.name], _EMPTY[TRADE.name]))
            close = getattr(self.metrics, "close", None)
            if close is not None:
                parts.append(close())
            parts = [p for p in parts if p.num_rows]
            if parts:
                items.append((METRIC.name, parts[0] if len(parts) == 1 else pa.concat_tables(parts)))
        return items

    def _keyed(self, stage: Any, batch: Batch) -> dict[str, Any]:
        # every row of a routed batch is this pipeline's instrument: tell the derived stages so,
        # sparing them a check per table and call (custom stages get the plain call)
        if not isinstance(stage, LiveBars | LiveMetrics):
            return {}
        if self.instrument is None:
            for table in batch.values():
                if table.num_rows and "venue" in table.column_names:
                    venue, symbol = single_value(table.column("venue")), single_value(table.column("symbol"))
                    if venue is None or symbol is None:
                        return {}  # not a routed batch: let the stage group it
                    self.instrument = (venue, symbol)
                    break
        return {} if self.instrument is None else {"instrument": self.instrument}

    def _advance(self, marks: pa.Table, snaps: pa.Table | None) -> pa.Table | None:
        # the partition's capture clock (tapeflow.live.batching.Heartbeat), after this batch's rows
        parts = [] if snaps is None else [snaps]
        columns = (marks.column(c).to_pylist() for c in ("venue", "symbol", "ts_recv_ns"))
        for venue, symbol, ns in zip(*columns, strict=True):  # one row per heartbeat, not per event
            more = _rows(self.book.advance(venue, symbol, ns)[BOOK_SNAPSHOT.name])
            if more is not None:
                parts.append(more)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def _bars(self, trades: pa.Table, items: list[Item]) -> None:
        assert self.bars is not None
        bars = self.bars.add(trades, **self._keyed(self.bars, {TRADE.name: trades}))
        if bars.num_rows:
            items.append((BAR.name, bars))
        drain = getattr(self.bars, "drain_rejected", None)
        if drain is not None:
            late = drain()
            if late.num_rows:
                items.append((REJECTED.name, late))


def _rows(table: pa.Table | None) -> pa.Table | None:
    return table if table is not None and table.num_rows else None


class VenueHealth:
    """The health stage's state for one venue: the feed-health object and the windows it opened.

    Args:
        health: ``tapeflow.live.health.FeedHealth`` or ``tapeflow.live.relative.RelativeHealth``
            (anything with ``observe(records, now_ns) -> status rows``; ``observe_latencies``,
            when present, spares summarizing the batch twice).
    """

    def __init__(self, health: Any) -> None:
        self.health = health
        self.windows = DegradedWindows()
        self.high_water_ns = -1  # running max of the capture times seen (see DegradedWindows.from_status)

    def apply(self, batch: Batch, now_ns: int | None) -> Batch:
        """Judge one batch; returns it with the health rows added to ``status``, the rows captured
        inside a degraded window flagged ``F_MAYBE_BAD_BOOK`` and window changes under ``_degraded``."""
        events = {k: t for k, t in batch.items() if k not in PASS_THROUGH and not k.startswith("_")}
        summaries = batch_latencies(events)
        observe = getattr(self.health, "observe_latencies", None)
        rows = observe(summaries, now_ns) if observe is not None else self.health.observe(events, now_ns)
        if summaries:
            self.high_water_ns = max(self.high_water_ns, max(b.last_recv_ns for b in summaries))
        first_ns = _first_recv_ns(events)
        if not rows.num_rows and not (self.windows and first_ns < self.windows.latest_end_ns()):
            return batch  # nothing to add, and no row was captured before the last window ended
        out = dict(batch)
        if rows.num_rows:
            status = batch.get(STATUS.name)
            has_status = status is not None and status.num_rows
            out[STATUS.name] = concat(STATUS, [status, rows]) if has_status else rows
            changed = self.windows.from_status(rows, self.high_water_ns)
            if changed.num_rows:
                out[DEGRADED] = changed
        if self.windows and first_ns < self.windows.latest_end_ns():
            out.update({k: self.windows.flag(t) for k, t in events.items()})
        return out


def _first_recv_ns(events: Batch) -> int:
    firsts = [int(t.column("ts_recv_ns").to_numpy().min())
              for t in events.values() if t.num_rows and "ts_recv_ns" in t.column_names]
    return min(firsts, default=OPEN_NS)


def new_health(clock: str, degraded_ns: int) -> Any:
    """A fresh feed-health object for the health stage.

    Args:
        clock: ``wall`` or ``none`` (``FeedHealth``), ``relative`` (``RelativeHealth``).
        degraded_ns: the latency circuit breaker's threshold.
    """
    from tapeflow.live.health import FeedHealth, LatencyBreaker

    breaker = LatencyBreaker(degraded_ns)
    if clock == "relative":
        from tapeflow.live.relative import RelativeHealth

        return RelativeHealth(breaker)
    return FeedHealth(breaker)


def pipeline_factory(kind: str, levels: int, interval_ns: int | None, *, new_bars: Callable[[], Any] | None,
                     new_metrics: Callable[[], Any] | None, raw: bool, bbo_as_quote: bool
                     ) -> Callable[[], InstrumentPipeline]:
    """A factory of fresh :class:`InstrumentPipeline` s (one per instrument, built on its first batch)."""
    BookStage(kind, levels, interval_ns)  # a bad kind, depth or interval fails here, at build time

    def new() -> InstrumentPipeline:
        return InstrumentPipeline(BookStage(kind, levels, interval_ns), new_bars() if new_bars else None,
                                  new_metrics() if new_metrics else None, raw=raw, bbo_as_quote=bbo_as_quote)

    return new


__all__ = ["BBO", "DERIVED", "PASS_THROUGH", "InstrumentPipeline", "Item", "VenueHealth", "instrument_key",
           "new_health", "passthrough", "pipeline_factory", "split_by_instrument"]
