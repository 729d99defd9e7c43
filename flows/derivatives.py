"""The derivatives inputs of the market flow (docs/derivatives.md): the REST pollers
(:class:`PollSource`) and the websocket channels (:class:`DerivativesFeedSource`, with the live stage
of the derived metrics: :func:`derivatives_stream`).

Its items are ``(record name, table)`` as the flow's sinks take them (``funding_rate``,
``mark_price``, ``index_price``, ``open_interest``, ``insurance_fund``, ``rejected``): the flow
merges them with the instruments' outputs, so they reach the same lake and warehouse sinks (with
their batch tokens) and the dead-letter sink.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, Source, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic

from flows.sources import LiveSource
from tapeflow.derivatives.derived_signals import LiveDerivedSignals
from tapeflow.derivatives.live_clusters import ClusterConfig, LiveClusters
from tapeflow.derivatives.live_derived import DerivedConfig, LiveDerived
from tapeflow.derivatives.poll_config import VenuePoll
from tapeflow.derivatives.stream import Item, PollFeed
from tapeflow.errors import ConfigError
from tapeflow.live.shutdown import stop_requested
from tapeflow.signals.config import DEFAULT_PATH, Thresholds, load

Batch = dict[str, pa.Table]
IDLE_WAKE_MS = 50  # polls come every few seconds: an idle source looks again this often


class _PollPartition(StatefulSourcePartition[Item, None]):
    def __init__(self, source: PollSource) -> None:
        self._feed = PollFeed(source.venues)
        self._deadline = (time.monotonic() + source.duration_ns / 1e9) if source.duration_ns else None
        self._idle = False

    def next_batch(self) -> list[Item]:
        if stop_requested() or (self._deadline is not None and time.monotonic() >= self._deadline):
            items = self._feed.take()  # what was answered before the stop still goes out
            self.close()
            if items:
                return items
            raise StopIteration
        items = self._feed.take()
        self._idle = not items
        return items

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(milliseconds=IDLE_WAKE_MS) if self._idle else None

    def snapshot(self) -> None:
        # a poll cannot be rewound: after a resume the next answers are new ones
        return None

    def close(self) -> None:
        self._feed.close()


class PollSource(FixedPartitionedSource[Item, None]):
    """REST polls of funding, mark, index, open interest and insurance funds (one partition).

    Args:
        venues: what to poll (``tapeflow.derivatives.stream.parse_polls``).
        duration_ns: stop after this long; None: until the flow is stopped. A flow ends when all
            its sources have, so a poll source beside a capture replay needs one.

    Raises:
        ConfigError: no venue.
    """

    def __init__(self, venues: Sequence[VenuePoll], *, duration_ns: int | None = None) -> None:
        if not venues:
            raise ConfigError("PollSource needs at least one venue to poll")
        self.venues = tuple(venues)
        self.duration_ns = duration_ns

    def list_parts(self) -> list[str]:
        return ["derivatives-polls"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PollPartition:
        return _PollPartition(self)


class DerivativesFeedSource(LiveSource):
    """A venue's derivatives websocket channels (``tapeflow.derivatives.clients``) as micro-batches
    of the derivatives records (and STATUS rows, dead letters): :class:`flows.sources.LiveSource`
    on the venue's derivatives connector."""

    def client_class(self) -> type:
        """The venue's derivatives connector class."""
        from tapeflow.derivatives.clients import client_class

        return client_class(self.venue)

    def list_parts(self) -> list[str]:
        return [f"{self.venue}-derivatives:{','.join(self.symbols)}"]


class _DerivedLogic(StatefulBatchLogic[Batch, Item, bytes]):
    """The feed's tables on as items, and the derived metrics of each micro-batch after them."""

    def __init__(self, stages: tuple[LiveDerived, LiveClusters], signals: LiveDerivedSignals) -> None:
        self.stages = stages
        self.signals = signals

    def on_batch(self, values: list[Batch]) -> tuple[Iterable[Item], bool]:
        out: list[Item] = []
        for batch in values:
            out += [(name, table) for name, table in batch.items() if table.num_rows]
            derived: list[Item] = []
            for stage in self.stages:
                derived += stage.update(batch)
            out += derived + self.signals.update(derived)
        return out, False

    def on_eof(self) -> tuple[Iterable[Item], bool]:
        derived = [item for stage in self.stages for item in stage.flush()]
        return derived + self.signals.update(derived), False

    def snapshot(self) -> bytes:
        return pickle.dumps((self.stages, self.signals), protocol=pickle.HIGHEST_PROTOCOL)


def derivatives_stream(flow: Dataflow, source: Source, config: DerivedConfig | None = None,
                       clusters: ClusterConfig | None = None,
                       thresholds: Thresholds | None = None) -> Stream[Item]:
    """The ``(record name, table)`` items of a derivatives feed followed by their derived metrics
    (``derivative_basis``, ``open_interest_change``: :class:`tapeflow.derivatives.live_derived.LiveDerived`;
    ``liquidation_cluster``: :class:`tapeflow.derivatives.live_clusters.LiveClusters`) in one stateful
    step (the feed is one connection, so one key), then the ``signal`` rows of those metrics
    (:class:`tapeflow.derivatives.derived_signals.LiveDerivedSignals`; ``thresholds``: the
    ``derivatives`` section of the signals thresholds, None: the shipped file)."""
    batches = op.input("derivatives", flow, source)
    keyed = op.key_on("derivatives_key", batches, lambda _batch: "derivatives")
    limits = thresholds or load(DEFAULT_PATH)

    def build(resume: bytes | None) -> _DerivedLogic:
        if resume is not None:
            state = pickle.loads(resume)
            if isinstance(state[0], LiveDerived):  # a snapshot from before the signals stage
                return _DerivedLogic(state, LiveDerivedSignals(limits))
            return _DerivedLogic(*state)
        return _DerivedLogic((LiveDerived(config), LiveClusters(clusters)), LiveDerivedSignals(limits))

    derived = op.stateful_batch("derived", keyed, build)
    return op.map("derivatives_items", derived, _value)


def _value(key_value: tuple[str, Item]) -> Item:
    return key_value[1]
