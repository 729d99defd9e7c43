"""Reusable sub-graphs of the market flow (Bytewax ``@operator`` functions over micro-batches).

Items are micro-batches ``dict[str, pa.Table]`` keyed by record name. The logic is in
``tapeflow.live.pipeline``; the operators here only hold it as Bytewax state, one stateful step
per key, because each Bytewax step costs microseconds per item whatever the item holds:

* :func:`health` (keyed by venue): ``VenueHealth``;
* :func:`route`: one batch per instrument (keyed ``venue/symbol``), dead letters and STATUS rows
  straight on;
* :func:`instruments` (keyed by instrument): ``InstrumentPipeline``, book -> degraded -> bars ->
  metrics in one call; one item (the list of ``(table_name, table)`` for the sinks) per batch.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulLogic

from tapeflow.live.batching import Batch
from tapeflow.live.pipeline import InstrumentPipeline, Item, VenueHealth, passthrough, split_by_instrument
from tapeflow.schemas import ALL_RECORDS, concat


@dataclass(frozen=True)
class Routed:
    """Streams out of :func:`route`.

    Attributes:
        instruments: ``(venue/symbol, batch)`` with that instrument's rows only.
        passthrough: ``(table_name, table)`` for dead letters and STATUS rows.
    """

    instruments: KeyedStream[Batch]
    passthrough: Stream[Item]


@operator
def route(step_id: str, up: Stream[Batch]) -> Routed:
    """Key micro-batches by instrument; dead letters and STATUS rows go straight on."""
    return Routed(instruments=op.flat_map("by_instrument", up, split_by_instrument),
                  passthrough=op.flat_map("passthrough", up, passthrough))


class _Logic(StatefulLogic[Any, Any, bytes]):
    """Holds one key's state object: ``step`` per item, ``flush`` at the end; a pickle snapshots it."""

    def __init__(self, state: Any, step: Callable[[Any, Any], Any], flush: Callable[[Any], Any]) -> None:
        self.state, self._step, self._flush = state, step, flush

    def on_item(self, value: Any) -> tuple[Iterable[Any], bool]:
        out = self._step(self.state, value)
        return ([out] if out else []), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        out = self._flush(self.state)
        return ([out] if out else []), StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        # the kernels mutate their arrays in place, so the runtime must get a copy; a pickle is
        # one (2-4x cheaper than deepcopy of the bar state) and the form Bytewax stores anyway
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


def _stateful(step_id: str, up: KeyedStream[Any], new: Callable[[], Any], step: Callable[[Any, Any], Any],
              flush: Callable[[Any], Any]) -> KeyedStream[Any]:
    def build(resume: bytes | None) -> _Logic:
        return _Logic(new() if resume is None else pickle.loads(resume), step, flush)

    return op.stateful(step_id, up, build)


def _venue_of(batch: Batch) -> str:
    for table in batch.values():
        if table.num_rows:
            return str(table.column("venue")[0].as_py())
    return ""


@operator
def health(step_id: str, up: Stream[Batch], new_health: Callable[[], Any],
           clock: Callable[[], int | None]) -> Stream[Batch]:
    """Feed health per venue (:class:`tapeflow.live.pipeline.VenueHealth` over ``new_health()``):
    adds ``skew`` / ``degraded`` / ``recovered`` rows to the batch's ``status`` table, flags the rows
    captured inside a degraded window and sends window changes on under ``_degraded``. ``clock()``
    gives the processing time for the lag check (None for a replay: feed latency only)."""

    def step(state: VenueHealth, batch: Batch) -> Batch:
        return state.apply(batch, clock())

    keyed = op.key_on("by_venue", up, _venue_of)
    checked = _stateful("stage", keyed, lambda: VenueHealth(new_health()), step, lambda state: None)
    return op.map("unkey", checked, lambda key_batch: key_batch[1])


@operator
def instruments(step_id: str, up: KeyedStream[Batch], new_pipeline: Callable[[], InstrumentPipeline]
                ) -> KeyedStream[list[Item]]:
    """Per-instrument book -> degraded -> bars -> metrics (:class:`InstrumentPipeline`): one
    stateful step, one item per batch that produced anything (the ``(table_name, table)`` list)."""
    return _stateful("pipeline", up, new_pipeline, InstrumentPipeline.apply, InstrumentPipeline.close)


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


__all__ = ["Routed", "gather", "health", "instruments", "route", "table_names"]
