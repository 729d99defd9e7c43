"""The market dataflow: source (routed, feed health judged) -> instrument pipeline -> sinks.

Run it with ``python -m bytewax.run "flows.market:flow_from_env()" [-w N] [-i I -a ADDRS]
[-r DIR -s S -b B]`` or through ``tapeflow live``. The graph, per micro-batch item:

* ``source``: a :class:`flows.sources.CaptureSource` (capture, journal or simulator files) or a
  :class:`flows.sources.LiveSource` (a venue connector, which journals every frame before it is
  decoded) emits micro-batches of decoded records; :func:`flows.operators.routed` cuts each one
  per instrument where it is read (``tapeflow.live.routing.route``: each table's numeric columns
  converted once), keyed ``venue/symbol`` so each instrument's state lives on one worker, and,
  with a health factory, first judges its feed health (``tapeflow.live.pipeline.VenueHealth``
  per venue of the partition: ``skew``, ``degraded`` and ``recovered`` STATUS rows from clock
  skew and a latency circuit breaker); dead letters and STATUS rows travel on as one list of items;
* ``instruments`` (keyed by instrument): ``tapeflow.live.pipeline.InstrumentPipeline`` runs the
  book (``BookStage``: grid snapshots, rebuilt BBO), the degraded windows, the bars (``LiveBars``,
  late trades restate their bar, too-late ones become ``rejected`` rows) and the metrics
  (``LiveMetrics``) and, with a signals factory, the detectors (``tapeflow.signals.stream.LiveSignals``:
  ``signal`` rows, thresholds file polled per batch) in one stateful step, and hands on the
  ``(table_name, pa.Table)`` items for the sinks (dead letters and STATUS rows pass through it unchanged);
* sinks: ``rejected`` to the dead-letter sink, ``status`` to the status sink, everything else to
  the table sink (``signal`` rows too); ``signal`` rows also to the signals sink, the output that
  alerting and the dashboard consume (see :class:`MarketSinks`).

The output depends only on the input rows and their order per instrument, never on how they are
cut into micro-batches or spread over workers, so ``-w 2`` gives the rows of one worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows import operators as ops
from flows.sources import CaptureSource, LiveSource
from tapeflow.derived.bars import STANDARD_INTERVALS
from tapeflow.errors import ConfigError
from tapeflow.live.pipeline import new_health, pipeline_factory
from tapeflow.options import LIVE_FORMAT
from tapeflow.schemas.records import REJECTED, SIGNAL, STATUS
from tapeflow.settings import LiveSettings, Settings


@dataclass(frozen=True)
class MarketSinks:
    """Where the flow's ``(table_name, pa.Table)`` items go.

    Attributes:
        tables: every table (``book_snapshot``, ``bar``, ``metric``, the decoded records...) and
            also dead letters and STATUS rows when their own sink is None.
        dead_letters: ``rejected`` rows (bad frames, trades too late for the bar policy).
        status: STATUS rows (connected, resyncing, stale, degraded...).
        extra: sinks that get every item (progress counters, test collectors).
        signals: ``signal`` rows (also written by ``tables``): the output alerting and the
            dashboard consume.
        alerts: ``signal`` and ``status`` rows, for the alerts engine (:class:`flows.alerts.AlertSink`).
    """

    tables: Sink | None = None
    dead_letters: Sink | None = None
    status: Sink | None = None
    extra: tuple[Sink, ...] = ()
    signals: Sink | None = None
    alerts: Sink | None = None


def build_market_flow(source: Source | None, sinks: MarketSinks, *, levels: int = 10,
                      snapshot_interval_ns: int | None = 1_000_000_000,
                      intervals: Sequence[str] = STANDARD_INTERVALS, book_kind: str = "auto",
                      bbo_as_quote: bool = False, raw: bool = True,
                      new_bars: Callable[[], Any] | None = None,
                      new_metrics: Callable[[], Any] | None = None,
                      new_health: Callable[[], Any] | None = None,
                      new_signals: Callable[[], Any] | None = None,
                      new_predictor: Callable[[], Any] | None = None,
                      health_clock: Callable[[], int | None] | None = None,
                      flow_id: str = "market", polls: Source | None = None,
                      derivatives: Source | None = None, derived: Any = None,
                      stream_silence_ns: int | None = None,
                      derived_thresholds: Any = None) -> Dataflow:
    """Build the market dataflow over ``source``.

    Args:
        source: a Bytewax source of micro-batches (``dict[str, pa.Table]``), e.g.
            :class:`flows.sources.CaptureSource` or :class:`flows.sources.LiveSource`.
        sinks: where the items go.
        levels: depth per side of the book snapshots (and of the depth metrics).
        snapshot_interval_ns: snapshot grid spacing (None: one snapshot per venue event).
        intervals: bar intervals (``tapeflow.derived.bars.STANDARD_INTERVALS`` by default; empty: no bars).
        book_kind: ``l2``, ``l3`` or ``auto`` (per instrument: L3 when it has order events).
        bbo_as_quote: also store the rebuilt best bid/offer as ``quote`` rows (by default it only
            feeds the metrics: ``quote`` holds the venue's own quote stream where it has one).
        raw: also store the decoded input records (``book_delta``, ``trade``... as ``ingest`` does).
        new_bars: factory of the bar state (default ``tapeflow.derived.LiveBars(intervals)``).
        new_metrics: factory of the metric state (default ``tapeflow.derived.LiveMetrics`` on the
            snapshot grid; no metrics when the grid is not a whole number of seconds).
        new_health: factory of a feed-health stage (``tapeflow.live.health.FeedHealth``): its
            ``skew`` / ``degraded`` / ``recovered`` rows join the STATUS rows. None: no health stage.
        new_signals: factory of the signals stage (``signals_stage(path)``), or None: no signals.
        new_predictor: factory of the live scorer (``prediction_stage(lake)``: the registry's
            champion over the 1 s snapshots, ``prediction`` rows), or None: no predictions.
        health_clock: processing time in ns for the health lag check (``time.time_ns`` live; None
            for replays, which judge feed latency only).
        flow_id: the Dataflow id (recovery stores are per flow id).
        polls: a source of ready ``(record name, table)`` items merged into the outputs, e.g.
            :class:`flows.derivatives.PollSource` (funding, mark, open interest...). With it,
            ``source`` may be None (a flow of polls alone).
        derivatives: a source of derivatives websocket micro-batches
            (:class:`flows.derivatives.DerivativesFeedSource`): its records, and their derived
            metrics, merged into the outputs; ``source`` may be None.
        derived_thresholds: the signals thresholds file's contents for the derivatives steps
            (``tapeflow.signals.config.Thresholds``; None: the shipped file).
        derived: the derived metrics' settings (``tapeflow.derivatives.live_derived.DerivedConfig``;
            None: its defaults).
        stream_silence_ns: with ``polls`` and ``derivatives``, the feed's silence (event time) that
            hands an instrument's derived rows to the polls (None: the 10 s default;
            ``tapeflow.derivatives.sources.StreamOwner``).

    Returns:
        The Dataflow, ready for ``run_main``, ``cluster_main`` or ``python -m bytewax.run``.
    """
    new_pipeline = pipeline_factory(
        book_kind, levels, snapshot_interval_ns,
        new_bars=new_bars or (_live_bars(tuple(intervals)) if intervals else None),
        new_metrics=new_metrics or _live_metrics(levels, snapshot_interval_ns),
        raw=raw, bbo_as_quote=bbo_as_quote, new_signals=new_signals, new_predictor=new_predictor)
    flow = Dataflow(flow_id)
    streams = []
    if source is not None:
        routed = op.input("source", flow, ops.routed(source, new_health, health_clock))
        streams.append(ops.instruments("instruments", routed, new_pipeline))
    if polls is not None and derivatives is not None:  # one source per derived row: the feed wins
        from flows.derivatives import feed_and_polls_stream

        silence = {} if stream_silence_ns is None else {"silence_ns": stream_silence_ns}
        streams.append(feed_and_polls_stream(flow, derivatives, polls, derived,
                                             thresholds=derived_thresholds, **silence))
    elif polls is not None:
        from flows.derivatives import polls_stream

        streams.append(polls_stream(flow, polls, thresholds=derived_thresholds))
    elif derivatives is not None:
        from flows.derivatives import derivatives_stream

        streams.append(derivatives_stream(flow, derivatives, derived, thresholds=derived_thresholds))
    if not streams:
        raise ConfigError("the market flow needs a source, derivatives polls or feed, or both")
    _outputs(streams[0] if len(streams) == 1 else op.merge("with_polls", *streams), sinks)
    return flow


def _outputs(items: op.Stream, sinks: MarketSinks) -> None:
    def named(name: str) -> Callable[[ops.Item], bool]:
        return lambda item: item[0] == name

    rest = items
    if sinks.signals is not None:
        op.output("signals_sink", op.filter("signals", items, named(SIGNAL.name)), sinks.signals)
    if sinks.alerts is not None:
        watched = op.filter("alert_rows", items, lambda item: item[0] in (SIGNAL.name, STATUS.name))
        op.output("alerts_sink", watched, sinks.alerts)
    if sinks.dead_letters is not None:
        split = op.branch("dead_letters", rest, named(REJECTED.name))
        op.output("dead_letter_sink", split.trues, sinks.dead_letters)
        rest = split.falses
    if sinks.status is not None:
        split = op.branch("status", rest, named(STATUS.name))
        op.output("status_sink", split.trues, sinks.status)
        rest = split.falses
    if sinks.tables is not None:
        op.output("table_sink", rest, sinks.tables)
    for i, sink in enumerate(sinks.extra):
        op.output(f"extra_sink_{i}", items, sink)


def _live_bars(intervals: tuple[str, ...]) -> Callable[[], Any]:
    from tapeflow.derived import LiveBars

    def new() -> Any:
        return LiveBars(intervals)

    return new


def _live_metrics(levels: int, grid_ns: int | None) -> Callable[[], Any] | None:
    # metrics sample the snapshot grid, so they need one spelled <n>s (no grid: no metrics)
    if grid_ns is None or grid_ns % 1_000_000_000:
        return None
    from tapeflow.derived import LiveMetrics

    def new() -> Any:
        return LiveMetrics(interval=f"{grid_ns // 1_000_000_000}s", levels=levels)

    return new


def signals_stage(path: Path, preset: str | None = None, *, min_interval_s: float = 1.0,
                  baselines: Path | None = None) -> Callable[[], Any]:
    """Factory of the per-instrument signals stage over the thresholds file ``path``; ``baselines``:
    where baselines that outlive a restart live (``<lake>/_baselines``; None: in memory only).

    Raises:
        ConfigError: the thresholds file is bad (checked here, at build time).
    """
    from tapeflow.signals.config import load
    from tapeflow.signals.stream import LiveSignals

    load(path)

    def new() -> Any:
        return LiveSignals(path, preset, min_interval_s=min_interval_s, baselines=baselines)

    return new


def prediction_stage(registry_root: Path, horizon_s: int = 10, *, min_interval_s: float = 1.0
                     ) -> Callable[[], Any]:
    """Factory of the per-instrument live scorer over the model registry at ``registry_root``
    (``tapeflow.ml.registry.default_root(lake)``); the champion is re-checked every ``min_interval_s``."""
    from tapeflow.ml.live import LivePredictor, RegistryChampion

    def new() -> Any:
        return LivePredictor(RegistryChampion(registry_root, horizon_s, min_interval_s=min_interval_s))

    return new


def flow_from_env() -> Dataflow:
    """The market flow configured by ``Settings.from_env()`` and ``LiveSettings.from_env()`` (the
    ``TAPEFLOW_LIVE_*`` variables), read once here.

    This is what ``python -m bytewax.run "flows.market:flow_from_env()"`` and ``tapeflow live`` start.
    """
    from flows.progress import ProgressSink

    settings, live = Settings.from_env(), LiveSettings.from_env()
    tables = None
    if live.outputs:
        from flows.sinks import TableSink

        tables = TableSink(dsn=settings.clickhouse_dsn if "clickhouse" in live.outputs else None,
                           lake_root=settings.lake_dir if "lake" in live.outputs else None)
    extra: list[Any] = [ProgressSink(live.progress_s)]
    # a live feed's lag is judged against the wall clock (``relative``: against its recent level);
    # capture files replay at their own pace, so only their feed latency is judged
    clock = None if live.health_clock() == "none" else time.time_ns
    if live.metrics_port is not None:
        from flows.sinks import MetricsSink
        from tapeflow.live.prom import FlowMetrics, start_metrics_server

        metrics = FlowMetrics()
        server = start_metrics_server(live.metrics_port, metrics=metrics)
        print(f"live: Prometheus metrics at {server.url}", flush=True)
        extra.append(MetricsSink(metrics, latency=clock is not None))
    if live.publish is not None:
        from flows.publish import PublishSink

        extra.append(PublishSink(live.publish))
    alerts = None
    if settings.alerts_config is not None:
        from flows.alerts import AlertSink

        alerts = AlertSink(settings.alerts_config, settings.lake_dir / "_alerts" / "live.jsonl",
                           settings.lake_dir if "lake" in live.outputs else None, publish=live.publish)
    from tapeflow.bus import BusSettings

    bus = BusSettings.from_env(settings.lake_dir)
    if bus is not None:
        from flows.bus import BusSink, KafkaBusSink

        if bus.url:
            extra.append(BusSink.from_settings(bus))
        if bus.kafka_brokers:
            extra.append(KafkaBusSink(bus.kafka_brokers, bus.dead_letters, tables=bus.tables,
                                      prefix=bus.prefix, retry_s=bus.retry_s))
    sinks = MarketSinks(tables=tables, extra=tuple(extra), alerts=alerts)
    if live.format_name == LIVE_FORMAT:  # option tickers: their own flow
        from flows.options import OptionCaptureSource, OptionLiveSource, build_options_flow

        if live.capture:
            source = OptionCaptureSource(live.capture, batch_events=live.batch_events)
            return build_options_flow(source, sinks)
        return build_options_flow(OptionLiveSource(
            live.symbols, endpoint=live.endpoint, journal=live.journal, duration_ns=live.duration_ns,
            idle_stop_ns=live.idle_stop_ns, client_options=dict(live.client_options)), sinks)
    health_clock, degraded_ns = live.health_clock(), live.degraded_ns

    def health() -> Any:
        return new_health(health_clock, degraded_ns)

    from tapeflow.signals.config import config_path
    from tapeflow.signals.config import load as load_thresholds
    from tapeflow.signals.stream_institutional import STORE_DIR

    new_predictor = None
    if live.predict:
        from tapeflow.ml.registry import default_root

        new_predictor = prediction_stage(default_root(settings.lake_dir))

    return build_market_flow(source_from(live), sinks, levels=live.levels,
                             snapshot_interval_ns=live.snapshot_interval_ns,
                             intervals=STANDARD_INTERVALS if live.intervals is None else live.intervals,
                             bbo_as_quote=live.bbo_as_quote, raw=live.raw, new_health=health,
                             new_signals=(signals_stage(config_path(settings),
                                                        baselines=settings.lake_dir / STORE_DIR)
                                          if live.signals else None),
                             new_predictor=new_predictor,
                             health_clock=clock, polls=polls_from(live),
                             derivatives=derivatives_from(live), derived=derived_from(live),
                             stream_silence_ns=live.stream_silence_ns,
                             derived_thresholds=(load_thresholds(config_path(settings))
                                                 if live.derivatives or live.polls else None))


def derivatives_from(live: LiveSettings) -> Source | None:
    """The derivatives websocket feed ``TAPEFLOW_LIVE_DERIVATIVES`` asks for (None: none)."""
    if not live.derivatives:
        return None
    from flows.derivatives import DerivativesFeedSource

    return DerivativesFeedSource(live.venue, live.symbols, endpoint=live.endpoint, journal=live.journal,
                                 duration_ns=live.duration_ns, idle_stop_ns=live.idle_stop_ns,
                                 client_options=dict(live.derivatives_options))


def derived_from(live: LiveSettings) -> Any:
    """The derived metrics on the snapshot grid (when it is one: None takes the defaults)."""
    if not live.derivatives:
        return None
    from tapeflow.derivatives.live_derived import DerivedConfig

    return DerivedConfig(interval_ns=live.snapshot_interval_ns)


def polls_from(live: LiveSettings) -> Source | None:
    """The derivatives poll source ``TAPEFLOW_LIVE_POLL`` asks for (None: no polls)."""
    if not live.polls:
        return None
    from flows.derivatives import PollSource
    from tapeflow.derivatives.stream import parse_polls

    return PollSource(parse_polls(live.polls, live.poll_url), duration_ns=live.duration_ns)


def source_from(live: LiveSettings) -> Source | None:
    """The capture source when capture files are given, the failover source when a failover config
    is, else the live connector (None when only derivatives polls are asked for); all send
    heartbeats on the snapshot grid, so quiet instruments' snapshots follow the feed's clock.

    Raises:
        ConfigError: capture files without a format.
    """
    if live.capture:
        if not live.format_name:
            raise ConfigError("TAPEFLOW_LIVE_FORMAT (or TAPEFLOW_LIVE_VENUE) names the capture's format")
        return CaptureSource(live.format_name, live.capture, batch_events=live.batch_events,
                             batch_ns=live.batch_ns, heartbeat_ns=live.snapshot_interval_ns)
    if live.failover is not None:
        from flows.failover import FailoverSource
        from tapeflow.live.failover_config import load_failover

        return FailoverSource(load_failover(live.failover), journal=live.journal,
                              duration_ns=live.duration_ns, idle_stop_ns=live.idle_stop_ns,
                              heartbeat_ns=live.snapshot_interval_ns)
    if not (live.venue and live.symbols) or live.derivatives == "only":
        return None  # derivatives polls or websocket channels alone
    return LiveSource(live.venue, live.symbols, endpoint=live.endpoint, rest_endpoint=live.rest_endpoint,
                      journal=live.journal, duration_ns=live.duration_ns, idle_stop_ns=live.idle_stop_ns,
                      client_options=dict(live.client_options), heartbeat_ns=live.snapshot_interval_ns)
