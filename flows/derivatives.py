"""The derivatives inputs of the market flow (docs/derivatives.md): the REST pollers
(:class:`PollSource`, with the live derived stage of the polled rows: :func:`polls_stream`) and the
websocket channels (:class:`DerivativesFeedSource`, with the live stage of the derived metrics:
:func:`derivatives_stream`).

Its items are ``(record name, table)`` as the flow's sinks take them (``funding_rate``,
``mark_price``, ``index_price``, ``open_interest``, ``insurance_fund``, ``rejected``): the flow
merges them with the instruments' outputs, so they reach the same lake and warehouse sinks (with
their batch tokens) and the dead-letter sink.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, Source, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic

from flows.sources import LiveSource
from tapeflow.derivatives.derived import InsuranceStressConfig
from tapeflow.derivatives.derived_config import StageThresholds
from tapeflow.derivatives.derived_signals import STRESS, LiveDerivedSignals
from tapeflow.derivatives.live_clusters import ClusterConfig, LiveClusters
from tapeflow.derivatives.live_derived import DerivedConfig, LiveDerived
from tapeflow.derivatives.live_stress import LiveStress, stress_record
from tapeflow.derivatives.poll_config import VenuePoll
from tapeflow.derivatives.sources import STREAM_SILENCE_NS, StreamOwner
from tapeflow.derivatives.stream import Item, PollFeed
from tapeflow.errors import ConfigError
from tapeflow.live.shutdown import stop_requested
from tapeflow.pullcache import cache_from_env
from tapeflow.signals.config import DEFAULT_PATH, Thresholds, load

Batch = dict[str, pa.Table]
_FEED, _POLLS = "feed", "polls"  # the tags of the batches in the step of both
IDLE_WAKE_MS = 50  # polls come every few seconds: an idle source looks again this often
# The polled rows' derived stage (its own state: a poll's event time is its answer's, seconds behind a
# websocket's, so in one watermark with the feed most polled rows would be too late). Two open-interest
# polls (15 s) must be fresh at once, and answers of the endpoints polled together may come out of order.
POLL_DERIVED = DerivedConfig(interval_ns=1_000_000_000, max_staleness_ns=30_000_000_000,
                             window_ns=300_000_000_000, lateness_ns=2_000_000_000)


class _PollPartition(StatefulSourcePartition[Item, None]):
    def __init__(self, source: PollSource) -> None:
        # the venues' answers kept in the pull cache where TAPEFLOW_PULL_CACHE names one
        self._feed = PollFeed(source.venues, cache=cache_from_env("crypto"))
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
    """The feed's tables on as items, and the derived metrics of each micro-batch after them
    (the insurance-fund stress rows as the ``insurance_stress`` record), then their signals."""

    def __init__(self, stages: tuple[LiveDerived | LiveClusters | LiveStress, ...],
                 signals: LiveDerivedSignals) -> None:
        self.stages = stages
        self.signals = signals

    def on_batch(self, values: list[Batch]) -> tuple[Iterable[Item], bool]:
        out: list[Item] = []
        for batch in values:
            out += self.step(batch)
        return out, False

    def step(self, batch: Batch, keep: Keep | None = None) -> list[Item]:
        """A micro-batch's tables and their derived items (those ``keep`` keeps: one source per row)."""
        out = [(name, table) for name, table in batch.items() if table.num_rows]
        derived: list[Item] = []
        for stage in self.stages:
            derived += stage.update(batch)
        if keep is not None:
            derived = keep(derived)
        return out + _records(derived) + self.signals.update(derived)

    def on_eof(self) -> tuple[Iterable[Item], bool]:
        return self.eof(), False

    def eof(self, keep: Keep | None = None) -> list[Item]:
        """The stages' last derived items (those ``keep`` keeps) and their signals."""
        derived = [item for stage in self.stages for item in stage.flush()]
        if keep is not None:
            derived = keep(derived)
        return _records(derived) + self.signals.update(derived)

    def snapshot(self) -> bytes:
        return pickle.dumps((self.stages, self.signals), protocol=pickle.HIGHEST_PROTOCOL)


class _OneSourceLogic(StatefulBatchLogic[tuple[str, Batch], Item, bytes]):
    """The feed's and the polls' derived stages in one step, so that each derived row of an instrument
    and input has one source: the feed's while it carries the input, the polls' in its silences
    (:class:`tapeflow.derivatives.sources.StreamOwner`, whose ``source_switch`` rows go on too)."""

    def __init__(self, feed: _DerivedLogic, polls: _DerivedLogic, owner: StreamOwner) -> None:
        self.feed, self.polls, self.owner = feed, polls, owner

    def on_batch(self, values: list[tuple[str, Batch]]) -> tuple[Iterable[Item], bool]:
        out: list[Item] = []
        for tag, batch in values:
            if tag == _FEED:
                self.owner.saw(batch)
                out += self.feed.step(batch, self.owner.keep_stream)
            else:
                self.owner.polled(batch)
                out += self.polls.step(batch, self.owner.keep)
            out += self.owner.switches()
        return out, False

    def on_eof(self) -> tuple[Iterable[Item], bool]:
        out = self.feed.eof(self.owner.keep_stream) + self.polls.eof(self.owner.keep)
        return out + self.owner.end(), False

    def snapshot(self) -> bytes:
        return pickle.dumps((self.feed.stages, self.feed.signals, self.polls.stages, self.polls.signals,
                             self.owner), protocol=pickle.HIGHEST_PROTOCOL)


Keep = Callable[[list[Item]], list[Item]]


def _records(items: list[Item]) -> list[Item]:
    # the stress rows go on as the insurance_stress record (the signals took them as they came)
    return [(name, stress_record(table)) if name == STRESS else (name, table) for name, table in items]


def derivatives_stream(flow: Dataflow, source: Source, config: DerivedConfig | None = None,
                       clusters: ClusterConfig | None = None,
                       thresholds: Thresholds | None = None,
                       stress: InsuranceStressConfig | None = None) -> Stream[Item]:
    """The ``(record name, table)`` items of a derivatives feed followed by their derived metrics
    (``derivative_basis``, ``open_interest_change``: :class:`tapeflow.derivatives.live_derived.LiveDerived`;
    ``liquidation_cluster``: :class:`tapeflow.derivatives.live_clusters.LiveClusters`; insurance-fund
    stress: :class:`tapeflow.derivatives.live_stress.LiveStress`) in one stateful step (the feed is
    one connection, so one key), then the ``signal`` rows of those metrics
    (:class:`tapeflow.derivatives.derived_signals.LiveDerivedSignals`; ``thresholds``: the
    ``derivatives`` section of the signals thresholds, None: the shipped file)."""
    batches = op.input("derivatives", flow, source)
    return _derived_step(flow, "derived", batches, config, clusters, thresholds, stress)


def polls_stream(flow: Dataflow, source: Source, config: DerivedConfig | None = None,
                 clusters: ClusterConfig | None = None, thresholds: Thresholds | None = None,
                 stress: InsuranceStressConfig | None = None) -> Stream[Item]:
    """The ``(record name, table)`` items of the REST polls (:class:`PollSource`) followed by their
    derived metrics and signals: the stages of :func:`derivatives_stream` (open-interest change and
    ``oi_surge`` from polled open interest, basis from polled marks and indexes, ``insurance_stress``
    from polled funds) in a stateful step of their own (``config`` None: ``POLL_DERIVED``)."""
    items = op.input("polls", flow, source)
    batches = op.map("poll_batches", items, lambda item: {item[0]: item[1]})
    return _derived_step(flow, "poll_derived", batches, config or POLL_DERIVED, clusters, thresholds, stress)


def feed_and_polls_stream(flow: Dataflow, feed: Source, polls: Source, config: DerivedConfig | None = None,
                          poll_config: DerivedConfig | None = None, clusters: ClusterConfig | None = None,
                          thresholds: Thresholds | None = None,
                          stress: InsuranceStressConfig | None = None,
                          silence_ns: int | None = STREAM_SILENCE_NS) -> Stream[Item]:
    """:func:`derivatives_stream` and :func:`polls_stream` together, one source per derived row:
    their stages are kept apart (the polls' with ``poll_config``, None: ``POLL_DERIVED``) in one
    stateful step; a derived row the polls make of an input the feed carries for the same
    instrument is not written while the feed carries it, nor one of the feed's while the feed has
    been silent for ``silence_ns`` of event time (None: the feed owns it from its first row on),
    nor their signals: the stream wins, the polls are the fallback, and each hand-over the polls
    carried is a ``source_switch`` row and the feed's hole a closed ``gap`` STATUS row for the gap
    repair (:mod:`tapeflow.derivatives.sources`). All input rows are written."""
    fed = op.map("feed_tag", op.input("derivatives", flow, feed), lambda batch: (_FEED, batch))
    items = op.input("polls", flow, polls)
    polled = op.map("poll_tag", items, lambda item: (_POLLS, {item[0]: item[1]}))
    keyed = op.key_on("one_source_key", op.merge("feed_and_polls", fed, polled), lambda _v: "derivatives")
    limits = thresholds or load(DEFAULT_PATH)
    StageThresholds(limits).check()  # a bad stress / cluster threshold fails here, not mid-run

    def build(resume: bytes | None) -> _OneSourceLogic:
        if resume is not None:
            f_stages, f_signals, p_stages, p_signals, owner = pickle.loads(resume)
            return _OneSourceLogic(_DerivedLogic(f_stages, f_signals), _DerivedLogic(p_stages, p_signals),
                                   owner)
        return _OneSourceLogic(_new_logic(config, clusters, limits, stress),
                               _new_logic(poll_config or POLL_DERIVED, clusters, limits, stress),
                               StreamOwner(silence_ns))

    derived = op.stateful_batch("one_source", keyed, build)
    return op.map("one_source_items", derived, _value)


def _new_logic(config: DerivedConfig | None, clusters: ClusterConfig | None, limits: Thresholds,
               stress: InsuranceStressConfig | None) -> _DerivedLogic:
    # no explicit config: the thresholds file's, per instrument (the derivatives_derived asset's too)
    stages = StageThresholds(limits)
    return _DerivedLogic((LiveDerived(config), LiveClusters(clusters or stages.clusters),
                          LiveStress(stress or stages.stress)), LiveDerivedSignals(limits))


def _derived_step(flow: Dataflow, step_id: str, batches: Stream[Batch], config: DerivedConfig | None,
                  clusters: ClusterConfig | None, thresholds: Thresholds | None,
                  stress: InsuranceStressConfig | None) -> Stream[Item]:
    keyed = op.key_on(f"{step_id}_key", batches, lambda _batch: "derivatives")
    limits = thresholds or load(DEFAULT_PATH)
    StageThresholds(limits).check()  # a bad stress / cluster threshold fails here, not mid-run

    def build(resume: bytes | None) -> _DerivedLogic:
        if resume is not None:
            state = pickle.loads(resume)
            if isinstance(state[0], LiveDerived):  # a snapshot from before the signals stage
                return _DerivedLogic(state, LiveDerivedSignals(limits))
            return _DerivedLogic(*state)
        return _new_logic(config, clusters, limits, stress)

    derived = op.stateful_batch(step_id, keyed, build)
    return op.map(f"{step_id}_items", derived, _value)


def _value(key_value: tuple[str, Item]) -> Item:
    return key_value[1]
