"""Reusable sub-graphs of the market flow (Bytewax ``@operator`` functions over micro-batches).

Items are micro-batches ``dict[str, pa.Table]`` keyed by record name. After :func:`route` they are
keyed by instrument (``"<venue>/<symbol>"``), so each instrument's book, bars and metrics state
lives on one worker and sees its rows in arrival order; every stage adds its output tables to the
batch it passes on. The domain logic is in ``tapeflow`` (``BookStage``, ``LiveBars``,
``LiveMetrics``); the logic classes here only hold it as Bytewax state and flush it at the end.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulLogic

from flows.sources import WATERMARK
from tapeflow.book.l2 import instrument_groups
from tapeflow.book.stage import BookStage
from tapeflow.derived.metrics import single_value
from tapeflow.live.windows import DEGRADED, DegradedWindows
from tapeflow.schemas import ALL_RECORDS, concat
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, METRIC, QUOTE, REJECTED, STATUS, TRADE

Batch = dict[str, pa.Table]
Item = tuple[str, pa.Table]
# The rebuilt best bid/offer travels under its own key: ``quote`` in a batch is the venue's own
# quote stream (e.g. Binance bookTicker), a different thing with the same record type.
BBO = "bbo"
# Tables with no per-instrument state: they bypass the keyed stages.
PASS_THROUGH = (REJECTED.name, STATUS.name)


@dataclass(frozen=True)
class Routed:
    """Streams out of :func:`route`.

    Attributes:
        instruments: ``(venue/symbol, batch)`` with that instrument's rows only.
        passthrough: ``(table_name, table)`` for dead letters and STATUS rows.
    """

    instruments: KeyedStream[Batch]
    passthrough: Stream[Item]


def instrument_key(venue: str, symbol: str) -> str:
    """The routing key of one instrument."""
    return f"{venue}/{symbol}"


def split_by_instrument(batch: Batch) -> list[tuple[str, Batch]]:
    """Split a micro-batch into one batch per instrument (first-seen order, row order kept)."""
    out: dict[str, Batch] = {}
    for name, table in batch.items():
        if name in PASS_THROUGH or not table.num_rows:
            continue
        venue, symbol = single_value(table.column("venue")), single_value(table.column("symbol"))
        if venue is not None and symbol is not None:
            out.setdefault(instrument_key(venue, symbol), {})[name] = table
            continue
        for v, s, rows in instrument_groups(table):
            out.setdefault(instrument_key(v, s), {})[name] = table.take(pa.array(rows))
    return list(out.items())


def _passthrough(batch: Batch) -> list[Item]:
    return [(name, batch[name]) for name in PASS_THROUGH if name in batch and batch[name].num_rows]


@operator
def route(step_id: str, up: Stream[Batch]) -> Routed:
    """Key micro-batches by instrument; dead letters and STATUS rows go straight on."""
    return Routed(instruments=op.flat_map("by_instrument", up, split_by_instrument),
                  passthrough=op.flat_map("passthrough", up, _passthrough))


class _StageLogic(StatefulLogic[Batch, Batch, Any]):
    """Holds one instrument's state object; ``step`` adds tables to each batch, ``flush`` ends."""

    def __init__(self, state: Any, step: Callable[[Any, Batch], Batch],
                 flush: Callable[[Any], Batch]) -> None:
        self.state, self._step, self._flush = state, step, flush

    def on_item(self, value: Batch) -> tuple[Iterable[Batch], bool]:
        return [self._step(self.state, value)], StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Batch], bool]:
        tail = {k: t for k, t in self._flush(self.state).items() if t.num_rows}
        return ([tail] if tail else []), StatefulLogic.RETAIN

    def snapshot(self) -> Any:
        # the kernels mutate their arrays in place, so the runtime must get a copy; a pickle is
        # one (2-4x cheaper than deepcopy of the bar state) and the form Bytewax stores anyway
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


def _stage(step_id: str, up: KeyedStream[Batch], new: Callable[[], Any], step: Callable[[Any, Batch], Batch],
           flush: Callable[[Any], Batch]) -> KeyedStream[Batch]:
    def build(resume: Any) -> _StageLogic:
        return _StageLogic(new() if resume is None else pickle.loads(resume), step, flush)

    return op.stateful(step_id, up, build)


def _venue_of(batch: Batch) -> str:
    for table in batch.values():
        if table.num_rows:
            return str(table.column("venue")[0].as_py())
    return ""


class HealthState:
    """The health stage's state: the feed-health object and the degraded windows it opened."""

    def __init__(self, health: Any) -> None:
        self.health = health
        self.windows = DegradedWindows()
        self.high_water_ns = -1  # running max of the capture times seen (see DegradedWindows.from_status)

    def see(self, events: Batch) -> None:
        """Move the high-water mark over a batch's event rows."""
        for table in events.values():
            if table.num_rows and "ts_recv_ns" in table.column_names:
                self.high_water_ns = max(self.high_water_ns, pc.max(table.column("ts_recv_ns")).as_py())


def _internal(name: str) -> bool:
    # batch keys the flow adds for its own stages (``_degraded``, ``_watermark``): never records
    return name.startswith("_")


@operator
def health(step_id: str, up: Stream[Batch], new_health: Callable[[], Any],
           clock: Callable[[], int | None]) -> Stream[Batch]:
    """Feed health per venue (``tapeflow.live.health.FeedHealth`` from ``new_health()``): adds its
    ``skew`` / ``degraded`` / ``recovered`` rows to the batch's ``status`` table. ``clock()`` gives
    the processing time for the lag check (None for a replay: feed latency only).

    Rows captured inside a degraded window get ``F_MAYBE_BAD_BOOK`` (so bars built from them do),
    and window changes ride to the instrument's keyed stages under ``tapeflow.live.windows.DEGRADED``
    (the book stage flags the grid snapshots inside a window, the metrics follow the snapshots)."""

    def step(state: HealthState, batch: Batch) -> Batch:
        events = {k: t for k, t in batch.items() if k not in PASS_THROUGH and not _internal(k)}
        rows = state.health.observe(events, now_ns=clock())
        state.see(events)
        out = dict(batch)
        if rows.num_rows:
            out[STATUS.name] = concat(STATUS, [batch.get(STATUS.name, STATUS.empty_table()), rows])
            changed = state.windows.from_status(rows, state.high_water_ns)
            if changed.num_rows:
                out[DEGRADED] = changed
        if state.windows:
            out.update({k: state.windows.flag(t) for k, t in events.items()})
        return out

    keyed = op.key_on("by_venue", up, _venue_of)
    checked = _stage("stage", keyed, lambda: HealthState(new_health()), step, lambda state: {})
    return op.map("unkey", checked, lambda key_batch: key_batch[1])


def _degraded_step(windows: DegradedWindows, batch: Batch) -> Batch:
    changes = batch.get(DEGRADED)
    if changes is not None:
        windows.merge(changes)
    snaps = batch.get(BOOK_SNAPSHOT.name)
    if not windows or snaps is None or not snaps.num_rows:
        return batch
    # a snapshot shows the book at its grid instant: flagged when the instant is in a window
    return {**batch, BOOK_SNAPSHOT.name: windows.flag(snaps, "ts_event_ns")}


@operator
def degraded(step_id: str, up: KeyedStream[Batch]) -> KeyedStream[Batch]:
    """Per-instrument degraded windows (from the health stage's ``_degraded`` rows): flags the
    ``book_snapshot`` rows whose grid instant lies in a window, before bars and metrics see them."""
    return _stage("stage", up, DegradedWindows, _degraded_step, lambda windows: {})


def _book_step(stage: BookStage, batch: Batch) -> Batch:
    out = stage.apply(batch)
    snaps = out[BOOK_SNAPSHOT.name]
    marks = batch.get(WATERMARK)
    if marks is not None:
        # the partition's capture clock (flows.sources.Heartbeat), after this batch's own rows
        snaps = concat(BOOK_SNAPSHOT, [snaps, stage.advance_all(marks)])
    return {**batch, BOOK_SNAPSHOT.name: snaps, BBO: out[QUOTE.name]}


def _book_flush(stage: BookStage) -> Batch:
    return {BOOK_SNAPSHOT.name: stage.close()[BOOK_SNAPSHOT.name]}


@operator
def book(step_id: str, up: KeyedStream[Batch], kind: str = "auto", levels: int = 10,
         interval_ns: int | None = 1_000_000_000) -> KeyedStream[Batch]:
    """Per-instrument book (:class:`tapeflow.book.stage.BookStage`): adds ``book_snapshot``
    (grid snapshots made final, by the instrument's own rows or by a heartbeat's watermark) and
    ``bbo`` (best bid/offer changes) to each batch."""
    return _stage("stage", up, lambda: BookStage(kind, levels, interval_ns), _book_step, _book_flush)


def _bars_step(bars: Any, batch: Batch) -> Batch:
    trades = batch.get(TRADE.name)
    out = dict(batch)
    if trades is not None and trades.num_rows:
        out[BAR.name] = bars.add(trades)
    drain = getattr(bars, "drain_rejected", None)
    if drain is not None:
        late = drain()
        if late.num_rows:
            out[REJECTED.name] = concat(REJECTED, [out.get(REJECTED.name, REJECTED.empty_table()), late])
    return out


def _bars_flush(bars: Any) -> Batch:
    return {BAR.name: bars.close()}


@operator
def bars(step_id: str, up: KeyedStream[Batch], new_bars: Callable[[], Any]) -> KeyedStream[Batch]:
    """Per-instrument time bars (``tapeflow.derived.LiveBars`` from ``new_bars()``): adds ``bar``
    rows (first emissions and restatements) and ``rejected`` rows for trades too late to place."""
    return _stage("stage", up, new_bars, _bars_step, _bars_flush)


def _metrics_step(metrics: Any, batch: Batch) -> Batch:
    snaps = batch.get(BOOK_SNAPSHOT.name, BOOK_SNAPSHOT.empty_table())
    quotes = batch.get(BBO, QUOTE.empty_table())
    trades = batch.get(TRADE.name, TRADE.empty_table())
    if not (snaps.num_rows or quotes.num_rows or trades.num_rows):
        return batch
    return {**batch, METRIC.name: metrics.add(snaps, quotes, trades)}


def _metrics_flush(metrics: Any) -> Batch:
    close = getattr(metrics, "close", None)
    return {METRIC.name: close()} if close is not None else {}


@operator
def metrics(step_id: str, up: KeyedStream[Batch], new_metrics: Callable[[], Any]) -> KeyedStream[Batch]:
    """Per-instrument book and flow metrics (``tapeflow.derived.LiveMetrics`` from ``new_metrics()``)
    over the batch's snapshots, rebuilt BBO and trades: adds ``metric`` rows."""
    return _stage("stage", up, new_metrics, _metrics_step, _metrics_flush)


def explode(batch: Batch, *, bbo_as_quote: bool, raw: bool) -> list[Item]:
    """``(table_name, table)`` items of a batch, for the sinks.

    Args:
        batch: an instrument batch after the keyed stages.
        bbo_as_quote: send the rebuilt BBO as ``quote`` rows (else it only feeds the metrics).
        raw: send the decoded input records too (as ``tapeflow ingest`` would store them).
    """
    derived = {BOOK_SNAPSHOT.name, BAR.name, METRIC.name, REJECTED.name}
    items = []
    for name, table in batch.items():
        if not table.num_rows:
            continue
        if name == BBO:
            if bbo_as_quote:
                items.append((QUOTE.name, table))
        elif name in derived or (raw and name in ALL_RECORDS):
            items.append((name, table))
    return items


def table_names(items: Iterable[Item]) -> dict[str, int]:
    """Rows per table name over ``items`` (for summaries and tests)."""
    counts: dict[str, int] = {}
    for name, table in items:
        counts[name] = counts.get(name, 0) + table.num_rows
    return counts


def gather(items: Iterable[Item]) -> dict[str, pa.Table]:
    """Concatenate ``(table_name, table)`` items per table name."""
    parts: dict[str, list[pa.Table]] = {}
    for name, table in items:
        parts.setdefault(name, []).append(table)
    return {n: concat(ALL_RECORDS[n], ts) if n in ALL_RECORDS else pa.concat_tables(ts)
            for n, ts in parts.items()}


__all__ = ["BBO", "PASS_THROUGH", "HealthState", "Routed", "bars", "book", "degraded", "explode", "gather",
           "health", "instrument_key", "metrics", "route", "split_by_instrument", "table_names"]
