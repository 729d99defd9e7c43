"""The market dataflow: source -> key by instrument -> book -> bars -> metrics -> sinks.

Run it with ``python -m bytewax.run "flows.market:flow_from_env()" [-w N] [-i I -a ADDRS]
[-r DIR -s S -b B]`` or through ``tapeflow live``. The graph, per micro-batch item:

* ``source``: a :class:`flows.sources.CaptureSource` (capture, journal or simulator files) or a
  :class:`flows.sources.LiveSource` (a venue connector, which journals every frame before it is
  decoded); items are micro-batches of decoded records;
* ``health`` (optional): ``tapeflow.live.health.FeedHealth`` per venue adds ``skew``,
  ``degraded`` and ``recovered`` STATUS rows (clock skew, latency circuit breaker);
* ``route``: dead letters and STATUS rows go straight to their sinks; the rest is keyed by
  instrument (``venue/symbol``) so each instrument's state lives on one worker;
* ``book``: :class:`tapeflow.book.stage.BookStage` -> ``book_snapshot`` on the capture-time
  grid of ``tapeflow book`` and the rebuilt best bid/offer;
* ``bars``: ``tapeflow.derived.LiveBars`` -> ``bar`` rows on every interval, late trades restate
  their bar, trades too late for the policy become ``rejected`` rows (reason ``too_late``);
* ``metrics``: ``tapeflow.derived.LiveMetrics`` -> ``metric`` rows (spread, depth, imbalance,
  microprice, OFI, CVD) on the same grid;
* sinks: items ``(table_name, pa.Table)``; ``rejected`` to the dead-letter sink, ``status`` to
  the status sink, everything else to the table sink (see :class:`MarketSinks`).

The output depends only on the input rows and their order per instrument, never on how they are
cut into micro-batches or spread over workers, so ``-w 2`` gives the rows of one worker.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows import operators as ops
from flows.sources import DEFAULT_BATCH_EVENTS, DEFAULT_BATCH_NS, CaptureSource, LiveSource
from tapeflow.derived.bars import STANDARD_INTERVALS
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import REJECTED, STATUS
from tapeflow.settings import Settings
from tapeflow.timeutil import parse_duration_ns

CLOCKS = ("auto", "wall", "relative", "none")  # TAPEFLOW_LIVE_CLOCK (see LiveConfig.health_clock)


@dataclass(frozen=True)
class MarketSinks:
    """Where the flow's ``(table_name, pa.Table)`` items go.

    Attributes:
        tables: every table (``book_snapshot``, ``bar``, ``metric``, the decoded records...) and
            also dead letters and STATUS rows when their own sink is None.
        dead_letters: ``rejected`` rows (bad frames, trades too late for the bar policy).
        status: STATUS rows (connected, resyncing, stale, degraded...).
        extra: sinks that get every item (progress counters, test collectors).
    """

    tables: Sink | None = None
    dead_letters: Sink | None = None
    status: Sink | None = None
    extra: tuple[Sink, ...] = ()


def build_market_flow(source: Source, sinks: MarketSinks, *, levels: int = 10,
                      snapshot_interval_ns: int | None = 1_000_000_000,
                      intervals: Sequence[str] = STANDARD_INTERVALS, book_kind: str = "auto",
                      bbo_as_quote: bool = False, raw: bool = True,
                      new_bars: Callable[[], Any] | None = None,
                      new_metrics: Callable[[], Any] | None = None,
                      new_health: Callable[[], Any] | None = None,
                      health_clock: Callable[[], int | None] | None = None,
                      flow_id: str = "market") -> Dataflow:
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
        health_clock: processing time in ns for the health lag check (``time.time_ns`` live; None
            for replays, which judge feed latency only).
        flow_id: the Dataflow id (recovery stores are per flow id).

    Returns:
        The Dataflow, ready for ``run_main``, ``cluster_main`` or ``python -m bytewax.run``.
    """
    flow = Dataflow(flow_id)
    batches = op.input("source", flow, source)
    if new_health is not None:
        clock = health_clock or _no_clock
        batches = ops.health("health", batches, new_health, clock)
    routed = ops.route("route", batches)
    keyed = ops.book("book", routed.instruments, book_kind, levels, snapshot_interval_ns)
    if new_health is not None:
        keyed = ops.degraded("degraded", keyed)
    if intervals:
        keyed = ops.bars("bars", keyed, new_bars or _live_bars(tuple(intervals)))
    metric_factory = new_metrics or _live_metrics(levels, snapshot_interval_ns)
    if metric_factory is not None:
        keyed = ops.metrics("metrics", keyed, metric_factory)

    def to_items(key_batch: tuple[str, ops.Batch]) -> list[ops.Item]:
        return ops.explode(key_batch[1], bbo_as_quote=bbo_as_quote, raw=raw)

    items = op.merge("all", op.flat_map("tables", keyed, to_items), routed.passthrough)
    _outputs(items, sinks)
    return flow


def _outputs(items: op.Stream, sinks: MarketSinks) -> None:
    def named(name: str) -> Callable[[ops.Item], bool]:
        return lambda item: item[0] == name

    rest = items
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


def _no_clock() -> int | None:
    return None


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


@dataclass(frozen=True)
class LiveConfig:
    """The ``TAPEFLOW_LIVE_*`` variables (see ``docs/live.md``), read once by :func:`flow_from_env`."""

    venue: str = ""
    format_name: str = ""
    symbols: tuple[str, ...] = ()
    endpoint: str | None = None
    rest_endpoint: str | None = None
    capture: tuple[Path, ...] = ()
    journal: Path | None = Path("journal")
    duration_ns: int | None = None
    idle_stop_ns: int | None = None
    levels: int = 10
    snapshot_interval_ns: int = 1_000_000_000
    intervals: tuple[str, ...] = STANDARD_INTERVALS
    batch_events: int = DEFAULT_BATCH_EVENTS
    batch_ns: int = DEFAULT_BATCH_NS
    outputs: tuple[str, ...] = ("lake", "clickhouse")
    bbo_as_quote: bool = False
    raw: bool = True
    degraded_ns: int = 1_000_000_000
    client_options: tuple[tuple[str, Any], ...] = ()
    progress_s: float = 2.0
    clock: str = "auto"
    metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiveConfig:
        """Read the configuration.

        Raises:
            ConfigError: a value that does not parse, or neither a capture nor a venue + symbols.
        """
        env = os.environ if env is None else env
        get = env.get
        venue = get("TAPEFLOW_LIVE_VENUE", "")
        capture = tuple(Path(p) for p in get("TAPEFLOW_LIVE_CAPTURE", "").split(os.pathsep) if p)
        symbols = tuple(s.strip() for s in get("TAPEFLOW_LIVE_SYMBOLS", "").split(",") if s.strip())
        if not capture and not (venue and symbols):
            raise ConfigError("set TAPEFLOW_LIVE_CAPTURE (files to replay) or TAPEFLOW_LIVE_VENUE and "
                              "TAPEFLOW_LIVE_SYMBOLS (a live feed)")
        outputs = tuple(o.strip() for o in get("TAPEFLOW_LIVE_OUTPUTS", "lake,clickhouse").split(",")
                        if o.strip())
        unknown = set(outputs) - {"lake", "clickhouse", "none"}
        if unknown:
            raise ConfigError(f"TAPEFLOW_LIVE_OUTPUTS takes lake, clickhouse or none, got {sorted(unknown)}")
        journal = get("TAPEFLOW_LIVE_JOURNAL", "journal")
        duration = get("TAPEFLOW_LIVE_DURATION", "")
        idle = get("TAPEFLOW_LIVE_IDLE_EXIT", "")
        bars = get("TAPEFLOW_LIVE_BARS", ",".join(STANDARD_INTERVALS))
        clock = get("TAPEFLOW_LIVE_CLOCK") or "auto"
        if clock not in CLOCKS:
            raise ConfigError(f"TAPEFLOW_LIVE_CLOCK takes {', '.join(CLOCKS)}, got {clock!r}")
        return cls(
            venue=venue, format_name=get("TAPEFLOW_LIVE_FORMAT", venue), symbols=symbols,
            endpoint=get("TAPEFLOW_LIVE_ENDPOINT") or None,
            rest_endpoint=get("TAPEFLOW_LIVE_REST_ENDPOINT") or None,
            capture=capture, journal=Path(journal) if journal and journal != "none" else None,
            duration_ns=parse_duration_ns(duration) if duration else None,
            idle_stop_ns=parse_duration_ns(idle) if idle else None,
            levels=_int(get, "TAPEFLOW_LIVE_LEVELS", 10),
            snapshot_interval_ns=parse_duration_ns(get("TAPEFLOW_LIVE_INTERVAL", "1s")),
            intervals=tuple(b.strip() for b in bars.split(",") if b.strip()),
            batch_events=_int(get, "TAPEFLOW_LIVE_BATCH_EVENTS", DEFAULT_BATCH_EVENTS),
            batch_ns=parse_duration_ns(get("TAPEFLOW_LIVE_BATCH_TIME", "1s")),
            outputs=tuple(o for o in outputs if o != "none"),
            bbo_as_quote=get("TAPEFLOW_LIVE_BBO_AS_QUOTE", "0") in ("1", "true", "yes"),
            raw=get("TAPEFLOW_LIVE_RAW", "1") not in ("0", "false", "no"),
            degraded_ns=_int(get, "TAPEFLOW_LIVE_DEGRADED_MS", 1000) * 1_000_000,
            client_options=tuple(sorted(_json_object(get, "TAPEFLOW_LIVE_CLIENT_OPTIONS").items())),
            progress_s=float(_int(get, "TAPEFLOW_LIVE_PROGRESS_S", 2)),
            clock=clock,
            metrics_port=(_int(get, "TAPEFLOW_LIVE_METRICS_PORT", 0)
                          if get("TAPEFLOW_LIVE_METRICS_PORT") else None),
        )

    def health_clock(self) -> str:
        """``wall``, ``relative`` or ``none``: ``auto`` is ``wall`` for a live feed, ``none`` for files."""
        if self.clock != "auto":
            return self.clock
        return "none" if self.capture else "wall"

    def new_health(self) -> Any:
        """A fresh health stage: ``FeedHealth`` (wall / none) or ``RelativeHealth`` (relative)."""
        from tapeflow.live.health import FeedHealth, LatencyBreaker

        breaker = LatencyBreaker(self.degraded_ns)
        if self.health_clock() == "relative":
            from tapeflow.live.relative import RelativeHealth

            return RelativeHealth(breaker)
        return FeedHealth(breaker)

    def source(self) -> Source:
        """The capture source when capture files are given, else the live connector; both send
        heartbeats on the snapshot grid, so quiet instruments' snapshots follow the feed's clock."""
        if self.capture:
            if not self.format_name:
                raise ConfigError("TAPEFLOW_LIVE_FORMAT (or TAPEFLOW_LIVE_VENUE) names the capture's format")
            return CaptureSource(self.format_name, self.capture, batch_events=self.batch_events,
                                 batch_ns=self.batch_ns, heartbeat_ns=self.snapshot_interval_ns)
        return LiveSource(self.venue, self.symbols, endpoint=self.endpoint, rest_endpoint=self.rest_endpoint,
                          journal=self.journal, duration_ns=self.duration_ns, idle_stop_ns=self.idle_stop_ns,
                          client_options=dict(self.client_options), heartbeat_ns=self.snapshot_interval_ns)


def _json_object(get: Callable[..., str | None], name: str) -> dict[str, Any]:
    text = get(name) or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON object, got {text!r}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {text!r}")
    return value


def _int(get: Callable[..., str | None], name: str, default: int) -> int:
    text = get(name)
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from exc


def flow_from_env() -> Dataflow:
    """The market flow configured by ``Settings.from_env()`` and the ``TAPEFLOW_LIVE_*`` variables.

    This is what ``python -m bytewax.run "flows.market:flow_from_env()"`` and ``tapeflow live`` start.
    """
    from flows.progress import ProgressSink

    settings, config = Settings.from_env(), LiveConfig.from_env()
    tables = None
    if config.outputs:
        from flows.sinks import TableSink

        tables = TableSink(dsn=settings.clickhouse_dsn if "clickhouse" in config.outputs else None,
                           lake_root=settings.lake_dir if "lake" in config.outputs else None)
    extra: list[Any] = [ProgressSink(config.progress_s)]
    # a live feed's lag is judged against the wall clock (``relative``: against its recent level);
    # capture files replay at their own pace, so only their feed latency is judged
    clock = None if config.health_clock() == "none" else time.time_ns
    if config.metrics_port is not None:
        from flows.sinks import MetricsSink
        from tapeflow.live.prom import FlowMetrics, start_metrics_server

        metrics = FlowMetrics()
        server = start_metrics_server(config.metrics_port, metrics=metrics)
        print(f"live: Prometheus metrics at {server.url}", flush=True)
        extra.append(MetricsSink(metrics, latency=clock is not None))
    sinks = MarketSinks(tables=tables, extra=tuple(extra))
    source = config.source()
    return build_market_flow(source, sinks, levels=config.levels,
                             snapshot_interval_ns=config.snapshot_interval_ns, intervals=config.intervals,
                             bbo_as_quote=config.bbo_as_quote, raw=config.raw, new_health=config.new_health,
                             health_clock=clock)
