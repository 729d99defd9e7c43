"""The live flow's stages as one call per micro-batch: venue health and the instrument pipeline.

A Bytewax step costs microseconds per item whatever the item holds, and a stage that builds
Arrow tables or reads Arrow columns pays a microsecond or more per call, so the flow
(``flows.market``) moves each batch through few steps and converts its columns once:

* :func:`tapeflow.live.routing.route` cuts the batch per instrument and converts each table's
  numeric columns into one matrix;
* :class:`VenueHealth` (per venue, optional) judges the batch from those matrices (feed health:
  ``FeedHealth`` / ``RelativeHealth``), flags rows captured in a degraded window and hands the
  window changes to the instruments under ``_degraded``;
* :class:`InstrumentPipeline` (per instrument): book (``BookStage``) -> degraded windows -> bars
  (``LiveBars``) -> metrics (``LiveMetrics``) in one call, reading the same matrices and passing
  the rebuilt best bid/offer to the metrics as arrays, then the signals
  (``tapeflow.signals.stream.LiveSignals``: the detectors, their thresholds polled once per
  batch); it returns the ``(table_name, table)`` items the sinks get. A stage whose input is
  empty is not called.

Everything is picklable (Bytewax recovery snapshots it) and reads no clock: the output depends
only on the rows and their order per instrument, never on the batch cuts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.book.rows import QuoteRows
from tapeflow.book.stage import BookStage
from tapeflow.derived import LiveBars, LiveMetrics
from tapeflow.derived.live_metrics import QUOTE_COLS, QuoteArrays, TradeArrays
from tapeflow.live.batching import WATERMARK, Batch, instrument_rows
from tapeflow.live.health import SMALL, BatchLatency, summarize, summarize_lists
from tapeflow.live.routing import (
    EVENT,
    FLAGS,
    PASS_THROUGH,
    RECV,
    SEQUENCE,
    T_PRICE,
    T_SIDE,
    T_SIZE,
    Item,
    Routed,
    RoutedBatch,
    instrument_key,
    route,
    routed_one,
)
from tapeflow.live.windows import DEGRADED, OPEN_NS, DegradedWindows
from tapeflow.schemas import ALL_RECORDS, concat
from tapeflow.schemas.ml import PREDICTION
from tapeflow.schemas.records import (
    BAR,
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    F_MAYBE_BAD_BOOK,
    METRIC,
    ORDER_EVENT,
    QUOTE,
    REJECTED,
    SIGNAL,
    STATUS,
    TRADE,
    VALID,
)

# The rebuilt best bid/offer: ``quote`` in a batch is the venue's own quote stream (e.g. Binance
# bookTicker), a different thing with the same record type.
BBO = "bbo"
# Tables the pipeline derives: an input table of the same name (LOBSTER's own book file, a
# vendor's OHLCV bars) is the vendor's, never sent on as if the flow had built it.
DERIVED = (BOOK_SNAPSHOT.name, BAR.name, METRIC.name, SIGNAL.name, PREDICTION.name)
_RAW = frozenset(ALL_RECORDS) - set(DERIVED) - set(PASS_THROUGH)
_BOOK_INPUTS = (ORDER_EVENT.name, BOOK_DELTA.name)
# not feed events: their times say nothing of the feed's latency (tapeflow.live.health)
_NOT_EVENTS = frozenset({*PASS_THROUGH, *DERIVED})
# Built once: a RecordType.empty_table() costs 0.02-1 ms, and a small batch asks for several.
_EMPTY = {r.name: r.empty_table() for r in (BOOK_SNAPSHOT, QUOTE, TRADE)}


def split_by_instrument(batch: Batch) -> list[tuple[str, RoutedBatch]]:
    """One batch per instrument (first-seen order, row order kept), as the flow routes it."""
    return list(route(batch).instruments.items())


class InstrumentPipeline:
    """One instrument's book -> degraded windows -> bars -> metrics, one call per micro-batch.

    Feeding an instrument's batches (from :func:`tapeflow.live.routing.route`, or plain batches
    of one instrument) and then calling :meth:`close` gives the rows the stages give one after the
    other: ``book_snapshot`` (grid snapshots, flagged inside degraded windows), ``bar`` (+
    ``rejected`` trades too late for the bar policy), ``metric``, the rebuilt BBO as ``quote``
    when asked, and the decoded input rows when ``raw``.

    Args:
        book: the book stage (``BookStage(kind, levels, interval_ns)``).
        bars: a ``tapeflow.derived.LiveBars`` (or anything with ``add``, ``drain_rejected``,
            ``close``), or None.
        metrics: a ``tapeflow.derived.LiveMetrics`` (or anything with ``add``, ``close``), or None.
        raw: also send the decoded input records (as ``tapeflow ingest`` stores them).
        bbo_as_quote: also send the rebuilt best bid/offer as ``quote`` rows.
        signals: a ``tapeflow.signals.stream.LiveSignals`` (or anything with ``apply(venue, symbol,
            tables)`` and ``close()`` giving ``signal`` rows), or None.
        predictor: a ``tapeflow.ml.live.LivePredictor`` (``apply(venue, symbol, snapshots, trades)``
            giving ``(prediction, rejected)`` rows), or None.
    """

    def __init__(self, book: BookStage, bars: Any | None = None, metrics: Any | None = None, *,
                 raw: bool = True, bbo_as_quote: bool = False, signals: Any | None = None,
                 predictor: Any | None = None) -> None:
        self.book = book
        self.bars = bars
        self.metrics = metrics
        self.signals = signals
        self.predictor = predictor
        self.windows = DegradedWindows()
        self.raw = raw
        self.bbo_as_quote = bbo_as_quote
        self.instrument: tuple[str, str] | None = None  # learnt from the first batch (keyed by it)

    def apply(self, batch: Batch) -> list[Item]:
        """Run one instrument batch through every stage.

        Returns:
            ``(table_name, table)`` items for the sinks, empty tables left out (often none at all).

        Raises:
            TapeflowError: the batch holds rows of several instruments.
        """
        part = routed_one(batch)
        if part is None:
            return []
        self.instrument = (part.venue, part.symbol)
        changes = part.get(DEGRADED)
        if changes is not None and changes.num_rows:
            self.windows.merge(changes)
        quotes, snaps = self._book(part)
        marks = part.get(WATERMARK)
        if marks is not None and marks.num_rows:
            snaps = self._advance(marks, snaps)
        if snaps is not None and self.windows:
            # a snapshot shows the book at its grid instant: flagged when the instant is in a window
            snaps = self.windows.flag(snaps, "ts_event_ns")
        items = [(n, t) for n, t in part.items() if n in _RAW and t.num_rows] if self.raw else []
        jumps = self.book.drain_status()
        if jumps.num_rows:
            items.append((STATUS.name, jumps))  # time jumps the book's grid did not span
        if snaps is not None:
            items.append((BOOK_SNAPSHOT.name, snaps))
        if quotes and self.bbo_as_quote:
            items.append((QUOTE.name, _one([q.table() for q in quotes])))
        trades = part.get(TRADE.name)
        if trades is not None and not trades.num_rows:
            trades = None
        if trades is not None and self.bars is not None:
            self._bars(part, trades, items)
        if self.metrics is not None and (snaps is not None or quotes or trades is not None):
            metric = self._metrics(part, snaps, quotes, trades)
            if metric.num_rows:
                items.append((METRIC.name, metric))
        if self.signals is not None:
            tables = {n: t for n, t in part.items() if n[0] != "_"}
            found = self.signals.apply(part.venue, part.symbol, tables)
            if found.num_rows:
                items.append((SIGNAL.name, found))
        if self.predictor is not None:
            self._predict(part.venue, part.symbol, snaps, trades, items)
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
                items.append((METRIC.name, _one(parts)))
        if self.signals is not None:
            found = self.signals.close()
            if found.num_rows:
                items.append((SIGNAL.name, found))
        if self.predictor is not None and self.instrument is not None:
            self._predict(*self.instrument, snaps, None, items)
        return items

    def _predict(self, venue: str, symbol: str, snaps: pa.Table | None, trades: pa.Table | None,
                 items: list[Item]) -> None:
        found, bad = self.predictor.apply(venue, symbol, snaps, trades)  # type: ignore[union-attr]
        if found.num_rows:
            items.append((PREDICTION.name, found))
        if bad.num_rows:
            items.append((REJECTED.name, bad))

    def _book(self, part: RoutedBatch) -> tuple[list[QuoteRows], pa.Table | None]:
        present = [name for name in _BOOK_INPUTS if name in part]
        # the vendor's own book (LOBSTER's orderbook file) anchors the rebuilt L3 book
        vendor = part.get(BOOK_SNAPSHOT.name)
        if not present and vendor is None:
            return [], None
        if all(name in part.columns for name in present):
            quotes, snaps = self.book.apply_columns(part.venue, part.symbol, part.columns, part.order_ids,
                                                    anchors=vendor)
            return quotes, _one(snaps) if snaps else None
        # a book table without a column of its layout: the table path says which is missing
        out = self.book.apply({name: part[name] for name in [*present, BOOK_SNAPSHOT.name] if name in part})
        quote = _rows(out[QUOTE.name])
        rows = [] if quote is None else [_quote_rows(quote)]
        return rows, _rows(out[BOOK_SNAPSHOT.name])

    def _advance(self, marks: pa.Table, snaps: pa.Table | None) -> pa.Table | None:
        # the partition's capture clock (tapeflow.live.batching.Heartbeat), after this batch's rows
        parts = [] if snaps is None else [snaps]
        columns = (marks.column(c).to_pylist() for c in ("venue", "symbol", "ts_recv_ns"))
        for venue, symbol, ns in zip(*columns, strict=True):  # one row per heartbeat, not per event
            more = _rows(self.book.advance(venue, symbol, ns)[BOOK_SNAPSHOT.name])
            if more is not None:
                parts.append(more)
        return _one(parts) if parts else None

    def _bars(self, part: RoutedBatch, trades: pa.Table, items: list[Item]) -> None:
        assert self.bars is not None
        x = part.columns.get(TRADE.name)
        if isinstance(self.bars, LiveBars):
            if x is not None:
                bars = self.bars.add_arrays(part.venue, part.symbol, trades, x[EVENT], x[T_PRICE], x[T_SIZE],
                                            x[T_SIDE], x[FLAGS], x[RECV])
            else:
                bars = self.bars.add(trades, instrument=(part.venue, part.symbol))
        else:
            bars = self.bars.add(trades)
        if bars.num_rows:
            items.append((BAR.name, bars))
        drain = getattr(self.bars, "drain_rejected", None)
        if drain is not None:
            late = drain()
            if late.num_rows:
                items.append((REJECTED.name, late))

    def _metrics(self, part: RoutedBatch, snaps: pa.Table | None, quotes: list[QuoteRows],
                 trades: pa.Table | None) -> pa.Table:
        assert self.metrics is not None
        if not isinstance(self.metrics, LiveMetrics):
            return self.metrics.add(snaps if snaps is not None else _EMPTY[BOOK_SNAPSHOT.name],
                                    _one([q.table() for q in quotes]) if quotes else _EMPTY[QUOTE.name],
                                    trades if trades is not None else _EMPTY[TRADE.name])
        x = part.columns.get(TRADE.name)
        if trades is None:
            flow = None
        elif x is not None:
            flow = TradeArrays(x[RECV], x[T_SIDE], x[T_SIZE])
        else:
            flow = TradeArrays(*(trades.column(c).to_numpy() for c in ("ts_recv_ns", "aggressor_side",
                                                                        "size_nanos")))
        bbo = [QuoteArrays(q.bbo[0], q.bbo[1], q.bbo[2], q.bbo[3], q.ts_recv_ns, q.status != VALID)
               for q in quotes]
        return self.metrics.add_arrays(part.venue, part.symbol, snapshots=snaps, quotes=bbo, trades=flow)


def _rows(table: pa.Table | None) -> pa.Table | None:
    return table if table is not None and table.num_rows else None


def _one(tables: list[pa.Table]) -> pa.Table:
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _quote_rows(quote: pa.Table) -> QuoteRows:
    venue, symbol = quote.column("venue")[0].as_py(), quote.column("symbol")[0].as_py()
    col = {n: quote.column(n).to_numpy() for n in quote.column_names if n not in ("venue", "symbol")}
    bbo = np.stack([col[c] for c in QUOTE_COLS])
    status = np.where(col["flags"] & F_MAYBE_BAD_BOOK, 1, VALID).astype(np.uint8)
    return QuoteRows(venue, symbol, col["ts_event_ns"], col["ts_recv_ns"], col["sequence"], bbo, status)


class VenueHealth:
    """The health stage's state for one venue: the feed-health object and the windows it opened.

    Args:
        health: ``tapeflow.live.health.FeedHealth`` or ``tapeflow.live.relative.RelativeHealth``
            (anything with ``observe_latencies(summaries, now_ns) -> status rows``, or
            ``observe(records, now_ns)``).
    """

    def __init__(self, health: Any) -> None:
        self.health = health
        self.windows = DegradedWindows()
        self.high_water_ns = -1  # running max of the capture times seen (see DegradedWindows.from_status)

    def apply(self, batch: Routed | Batch, now_ns: int | None) -> Routed:
        """Judge one routed batch (a plain batch is routed first); returns it with the health rows
        added to ``status``, the rows captured inside a degraded window flagged ``F_MAYBE_BAD_BOOK``
        and window changes under ``_degraded`` of each instrument they concern."""
        routed = batch if isinstance(batch, Routed) else route(batch)
        summaries, first_ns = latencies(routed)
        observe = getattr(self.health, "observe_latencies", None)
        if observe is not None:
            rows = observe(summaries, now_ns)
        else:
            rows = self.health.observe({f"{k}:{n}": t for k, part in routed.instruments.items()
                                        for n, t in part.items() if n not in _NOT_EVENTS and n[0] != "_"},
                                       now_ns)
        if summaries:
            self.high_water_ns = max(self.high_water_ns, max(b.last_recv_ns for b in summaries))
        if rows.num_rows:
            status = routed.passthrough.get(STATUS.name)
            routed.passthrough[STATUS.name] = concat(STATUS, [status, rows]) if status is not None else rows
            changed = self.windows.from_status(rows, self.high_water_ns)
            if changed.num_rows:
                _put_changes(routed, changed)
        if self.windows and first_ns < self.windows.latest_end_ns():
            for part in routed.instruments.values():
                self._flag(part)
        return routed

    def _flag(self, part: RoutedBatch) -> None:
        for name, table in list(part.items()):
            if name[0] == "_" or "flags" not in table.schema.names:
                continue
            x = part.columns.get(name)
            recv = x[RECV] if x is not None else table.column("ts_recv_ns").to_numpy()
            hit = self.windows.mask_of(part.venue, part.symbol, recv)
            if hit is None or not hit.any():
                continue
            flags = table.column("flags").to_numpy() | np.where(hit, F_MAYBE_BAD_BOOK, 0).astype(np.uint8)
            index = table.schema.get_field_index("flags")
            part[name] = table.set_column(index, table.schema.field(index), pa.array(flags, pa.uint8()))
            if x is not None:
                x[FLAGS] = flags


def _put_changes(routed: Routed, changed: pa.Table) -> None:
    # window changes travel to each instrument they concern, present in the batch or not
    for venue, symbol, rows in instrument_rows(changed):
        key = instrument_key(venue, symbol)
        part = routed.instruments.get(key)
        if part is None:
            part = routed.instruments[key] = RoutedBatch(venue, symbol)
        part[DEGRADED] = changed if rows is None else changed.take(pa.array(rows))


def latencies(routed: Routed) -> tuple[list[BatchLatency], int]:
    """Per instrument latency summaries of a routed batch's feed events, sorted by venue and symbol
    (``tapeflow.live.health.batch_latencies`` over its matrices), and its earliest capture time
    over every table that has one (``OPEN_NS`` if none)."""
    out = []
    first_ns = OPEN_NS
    keys = list(routed.instruments)
    if len(keys) > 1:
        keys.sort(key=lambda k: (routed.instruments[k].venue, routed.instruments[k].symbol))
    for key in keys:
        part = routed.instruments[key]
        if len(part) == 1 and part.columns:
            # one feed table, converted (the common case): its rows in one call
            x = next(iter(part.columns.values()))
            if x.shape[1] <= SMALL:
                rcl, sql, evl = x[RECV:].tolist()
                out.append(summarize_lists(part.venue, part.symbol, evl, rcl, max(sql)))
                first_ns = min(first_ns, out[-1].first_recv_ns)
                continue
        ev: list[np.ndarray] = []
        rc: list[np.ndarray] = []
        seqs: list[np.ndarray] = []
        for name, table in part.items():
            if name[0] == "_" or name in PASS_THROUGH:
                continue
            x = part.columns.get(name)
            if x is not None:
                e, r, q = x[EVENT], x[RECV], x[SEQUENCE]
            elif "ts_recv_ns" in table.schema.names:
                r = table.column("ts_recv_ns").to_numpy()
                if name in _NOT_EVENTS:  # the vendor's derived rows: their capture times only
                    first_ns = min(first_ns, int(r.min()))
                    continue
                e = table.column("ts_event_ns").to_numpy()
                q = table.column("sequence").to_numpy() if "sequence" in table.schema.names else None
            else:
                continue
            ev.append(e)
            rc.append(r)
            if q is not None:
                seqs.append(q)
        if not ev:
            continue
        summary = summarize(part.venue, part.symbol, ev[0] if len(ev) == 1 else np.concatenate(ev),
                            rc[0] if len(rc) == 1 else np.concatenate(rc), seqs)
        first_ns = min(first_ns, summary.first_recv_ns)
        out.append(summary)
    return out, first_ns


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
                     new_metrics: Callable[[], Any] | None, raw: bool, bbo_as_quote: bool,
                     new_signals: Callable[[], Any] | None = None,
                     new_predictor: Callable[[], Any] | None = None) -> Callable[[], InstrumentPipeline]:
    """A factory of fresh :class:`InstrumentPipeline` s (one per instrument, built on its first batch)."""
    BookStage(kind, levels, interval_ns)  # a bad kind, depth or interval fails here, at build time

    def new() -> InstrumentPipeline:
        return InstrumentPipeline(BookStage(kind, levels, interval_ns), new_bars() if new_bars else None,
                                  new_metrics() if new_metrics else None, raw=raw, bbo_as_quote=bbo_as_quote,
                                  signals=new_signals() if new_signals else None,
                                  predictor=new_predictor() if new_predictor else None)

    return new


__all__ = ["BBO", "DERIVED", "PASS_THROUGH", "InstrumentPipeline", "Item", "VenueHealth", "latencies",
           "new_health", "pipeline_factory", "split_by_instrument"]
