"""The market flow's pieces in Bytewax terms: a routing source wrapper and the instrument step.

Items are micro-batches ``dict[str, pa.Table]`` keyed by record name. The logic is in
``tapeflow.live``; this module only holds it where Bytewax runs it, in as few steps as it can,
because each step costs microseconds per item whatever the item holds (a stateful one about four
times a stateless one), which is what a live flow of small batches pays on every batch:

* :func:`routed` wraps the flow's source: each partition routes every micro-batch it emits
  (``tapeflow.live.routing.route``: one batch per instrument, each table's numeric columns
  converted once) and, with a health factory, judges its feed health first
  (``tapeflow.live.pipeline.VenueHealth``, one per venue of the partition, part of the
  partition's resume state); it emits ``(venue/symbol, RoutedBatch)`` items, and the dead letters
  and STATUS rows as one list of items under the venue's key;
* :func:`instruments` (keyed by instrument): ``InstrumentPipeline``, book -> degraded -> bars ->
  metrics in one stateful step; out of it the ``(table_name, table)`` items for the sinks, dead
  letters and STATUS rows included.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Stream, operator
from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    Source,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from bytewax.operators import KeyedStream, StatefulBatchLogic

from tapeflow.errors import ConfigError
from tapeflow.live.batching import Batch
from tapeflow.live.pipeline import InstrumentPipeline, Item, VenueHealth
from tapeflow.live.routing import RoutedBatch, route
from tapeflow.schemas import ALL_RECORDS, concat

Keyed = tuple[str, RoutedBatch | list[Item]]


class _Gate:
    """Routes a partition's batches; with ``new_health``, judges each venue's feed health first."""

    def __init__(self, new_health: Callable[[], Any] | None, clock: Callable[[], int | None],
                 venues: dict[str, VenueHealth] | None) -> None:
        self.new_health, self.clock = new_health, clock
        self.venues = venues if venues is not None else {}

    def keyed(self, batches: Iterable[Batch]) -> list[Keyed]:
        out: list[Keyed] = []
        for batch in batches:
            routed = route(batch)
            if self.new_health is not None:
                health = self.venues.get(routed.venue)
                if health is None:
                    health = self.venues[routed.venue] = VenueHealth(self.new_health())
                health.apply(routed, self.clock())
            out.extend(routed.keyed())
        return out


class _RoutedPartition(StatefulSourcePartition[Keyed, tuple[Any, bytes]]):
    def __init__(self, inner: StatefulSourcePartition[Batch, Any], gate: _Gate) -> None:
        self._inner, self._gate = inner, gate

    def next_batch(self) -> list[Keyed]:
        return self._gate.keyed(self._inner.next_batch())

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> tuple[Any, bytes]:
        # the feed-health state resumes with the partition it judged
        return self._inner.snapshot(), pickle.dumps(self._gate.venues, protocol=pickle.HIGHEST_PROTOCOL)

    def close(self) -> None:
        self._inner.close()


class _RoutedFixed(FixedPartitionedSource[Keyed, tuple[Any, bytes]]):
    def __init__(self, inner: FixedPartitionedSource[Batch, Any], new_health: Callable[[], Any] | None,
                 clock: Callable[[], int | None]) -> None:
        self.inner, self.new_health, self.clock = inner, new_health, clock

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: tuple[Any, bytes] | None
                   ) -> _RoutedPartition:
        inner_state, venues = resume_state if resume_state is not None else (None, None)
        part = self.inner.build_part(step_id, for_part, inner_state)
        return _RoutedPartition(part, _Gate(self.new_health, self.clock,
                                            None if venues is None else pickle.loads(venues)))


class _RoutedStatelessPartition(StatelessSourcePartition[Keyed]):
    def __init__(self, inner: StatelessSourcePartition[Batch], gate: _Gate) -> None:
        self._inner, self._gate = inner, gate

    def next_batch(self) -> list[Keyed]:
        return self._gate.keyed(self._inner.next_batch())

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def close(self) -> None:
        self._inner.close()


class _RoutedDynamic(DynamicSource[Keyed]):
    def __init__(self, inner: DynamicSource[Batch], new_health: Callable[[], Any] | None,
                 clock: Callable[[], int | None]) -> None:
        self.inner, self.new_health, self.clock = inner, new_health, clock

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RoutedStatelessPartition:
        return _RoutedStatelessPartition(self.inner.build(step_id, worker_index, worker_count),
                                         _Gate(self.new_health, self.clock, None))


def routed(source: Source, new_health: Callable[[], Any] | None = None,
           clock: Callable[[], int | None] | None = None) -> Source:
    """``source`` with its micro-batches routed per instrument where they are read.

    Each partition hands on ``(venue/symbol, RoutedBatch)`` per instrument of a batch, then the
    batch's dead letters and STATUS rows as one list of items under its venue's key. With
    ``new_health``, each venue of the partition (one connection, one capture stream) gets a
    :class:`tapeflow.live.pipeline.VenueHealth`, which judges every batch before it is handed on
    (its ``skew`` / ``degraded`` / ``recovered`` rows join the STATUS rows, rows captured in a
    degraded window are flagged, window changes go to their instruments), and whose state is part
    of the partition's resume state. ``clock()`` gives the processing time for the lag check (None:
    feed latency only, as for a replay).

    Raises:
        ConfigError: ``source`` is neither a ``FixedPartitionedSource`` nor a ``DynamicSource``.
    """
    clock = clock or _no_clock
    if isinstance(source, FixedPartitionedSource):
        return _RoutedFixed(source, new_health, clock)
    if isinstance(source, DynamicSource):
        return _RoutedDynamic(source, new_health, clock)
    raise ConfigError("the market flow reads a FixedPartitionedSource or a DynamicSource, got "
                      f"{type(source).__name__}")


def _no_clock() -> int | None:
    return None


class _Logic(StatefulBatchLogic[Any, Any, bytes]):
    """One key's state object: ``step`` per item (its output, if any, is one downstream item),
    ``flush`` at the end; a pickle snapshots it. The state is built on the first item ``step``
    takes (``new``), so a key that only carries dead letters and STATUS rows holds none."""

    def __init__(self, state: Any, new: Callable[[], Any], step: Callable[[Any, Any], Any],
                 flush: Callable[[Any], Any]) -> None:
        self.state, self._new, self._step, self._flush = state, new, step, flush

    def on_batch(self, values: list[Any]) -> tuple[Iterable[Any], bool]:
        outs = []
        for value in values:
            if type(value) is list:  # dead letters and STATUS rows: on unchanged
                outs.append(value)
                continue
            if self.state is None:
                self.state = self._new()
            out = self._step(self.state, value)
            if out:
                outs.append(out)
        return outs, False

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        out = self._flush(self.state) if self.state is not None else None
        return ([out] if out else []), False

    def snapshot(self) -> bytes:
        # the kernels mutate their arrays in place, so the runtime must get a copy; a pickle is
        # one (2-4x cheaper than deepcopy of the bar state) and the form Bytewax stores anyway
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


def _unkey(key_value: tuple[str, Any]) -> Any:
    return key_value[1]


@operator
def instruments(step_id: str, up: KeyedStream[RoutedBatch | list[Item]],
                new_pipeline: Callable[[], InstrumentPipeline]) -> Stream[Item]:
    """Per-instrument book -> degraded -> bars -> metrics (:class:`InstrumentPipeline`) in one
    stateful step over :func:`routed` items; returns the ``(table_name, table)`` items, dead
    letters and STATUS rows included."""

    def build(resume: bytes | None) -> _Logic:
        state = None if resume is None else pickle.loads(resume)
        return _Logic(state, new_pipeline, InstrumentPipeline.apply, InstrumentPipeline.close)

    outputs = op.stateful_batch("pipeline", up, build)
    return op.flat_map_batch("items", outputs, _unkey_all)


def _unkey_all(keyed: list[tuple[str, list[Item]]]) -> list[Item]:
    # every (key, items) of a Bytewax batch flattened in C: no Python frame per item
    return list(chain.from_iterable(map(_VALUE, keyed)))


_VALUE = itemgetter(1)


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


__all__ = ["gather", "instruments", "routed", "table_names"]
