"""Prometheus metrics of the live flow, on a registry of its own, served over HTTP.

Names (the ``_total`` suffix is added by the client library to counters):

- ``tapeflow_events_in_total{venue}``: normalized rows decoded from the feed (every record table
  except ``status`` and ``rejected``).
- ``tapeflow_events_out_total{venue,table}``: rows handed to a sink.
- ``tapeflow_lag_seconds{venue}``: processing lag of the latest batch, now - its newest capture time.
- ``tapeflow_gaps_total{venue}``, ``tapeflow_resyncs_total{venue}``: ``status`` rows ``gap`` /
  ``resyncing``.
- ``tapeflow_rejected_total{venue,reason}``: dead letters per reason code.
- ``tapeflow_degraded_total{venue}``: ``status`` rows ``degraded`` (latency circuit breaker trips).
- ``tapeflow_batch_latency_seconds``: histogram of the wall time from a batch entering the flow
  to its outputs leaving it.

Counting is per micro-batch (one ``value_counts`` per table), never per event.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tapeflow.errors import ConfigError

_NOT_EVENTS = frozenset({"status", "rejected"})
# 100 us .. 10 s: the p99 goal at 100k events/s is 5 ms, so the low buckets are dense.
LATENCY_BUCKETS_S = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5,
                     10.0)


class FlowMetrics:
    """The live flow's counters, gauges and histogram.

    Args:
        registry: where to register; a new private registry by default, so several flows (or
            tests) in one process never collide.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_in = Counter("tapeflow_events_in", "Normalized rows decoded from the feed",
                                 ["venue"], registry=r)
        self.events_out = Counter("tapeflow_events_out", "Rows handed to a sink", ["venue", "table"],
                                  registry=r)
        self.lag = Gauge("tapeflow_lag_seconds", "Processing lag: now minus the newest capture time",
                         ["venue"], registry=r)
        self.gaps = Counter("tapeflow_gaps", "Sequence gaps or checksum failures (status gap)", ["venue"],
                            registry=r)
        self.resyncs = Counter("tapeflow_resyncs", "Book resyncs started (status resyncing)", ["venue"],
                               registry=r)
        self.degraded = Counter("tapeflow_degraded", "Latency circuit breaker trips (status degraded)",
                                ["venue"], registry=r)
        self.rejected = Counter("tapeflow_rejected", "Dead letters per reason code", ["venue", "reason"],
                                registry=r)
        self.batch_latency = Histogram("tapeflow_batch_latency_seconds",
                                       "Wall time from a batch entering the flow to its outputs leaving",
                                       buckets=LATENCY_BUCKETS_S, registry=r)

    def observe_records(self, records: Mapping[str, pa.Table], *, now_ns: int | None = None) -> None:
        """Count one decoded micro-batch: events in, dead letters, gaps, resyncs, trips and lag.

        Args:
            records: tables by record name, as a ``LiveBatch`` carries them (``status`` included).
            now_ns: processing time (default: the wall clock), for the lag gauge.
        """
        now_ns = time.time_ns() if now_ns is None else now_ns
        newest: dict[str, int] = {}
        for name, table in records.items():
            if table.num_rows == 0:
                continue
            if name == "rejected":
                for (venue, reason), n in _counts(table, ("venue", "reason")).items():
                    self.rejected.labels(venue, reason).inc(n)
            elif name == "status":
                self._observe_status(table)
            else:
                for (venue,), n in _counts(table, ("venue",)).items():
                    self.events_in.labels(venue).inc(n)
                grouped = table.group_by("venue").aggregate([("ts_recv_ns", "max")])
                for venue, ts in zip(grouped["venue"].to_pylist(), grouped["ts_recv_ns_max"].to_pylist(),
                                     strict=True):
                    newest[venue] = max(newest.get(venue, ts), ts)
        for venue, ts in newest.items():
            self.lag.labels(venue).set((now_ns - ts) / 1e9)

    def _observe_status(self, table: pa.Table) -> None:
        counters = {"gap": self.gaps, "resyncing": self.resyncs, "degraded": self.degraded}
        for (venue, state), n in _counts(table, ("venue", "state")).items():
            if state in counters:
                counters[state].labels(venue).inc(n)

    def events_out_table(self, table_name: str, table: pa.Table) -> None:
        """Count rows of ``table`` handed to a sink as ``table_name``, per venue."""
        if table.num_rows == 0:
            return
        for (venue,), n in _counts(table, ("venue",)).items():
            self.events_out.labels(venue, table_name).inc(n)

    def observe_batch_latency(self, seconds: float) -> None:
        """One batch's latency through the flow, in seconds."""
        self.batch_latency.observe(seconds)


def _counts(table: pa.Table, keys: tuple[str, ...]) -> dict[tuple[str, ...], int]:
    grouped = table.group_by(list(keys)).aggregate([([], "count_all")])
    columns = [grouped[k].to_pylist() for k in keys]
    return {tuple(vals): n for *vals, n in zip(*columns, grouped["count_all"].to_pylist(), strict=True)}


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint; ``close()`` stops it."""

    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(port: int = 0, *, addr: str = "127.0.0.1",
                         metrics: FlowMetrics | None = None) -> MetricsServer:
    """Serve ``metrics`` (Prometheus text format) at ``http://addr:port/metrics`` from a daemon thread.

    Args:
        port: TCP port; 0 picks a free one (read it back from ``.port``).
        addr: interface to bind; ``0.0.0.0`` to be scraped from other hosts.
        metrics: the flow's metrics; a fresh :class:`FlowMetrics` when None.

    Raises:
        ConfigError: the port cannot be bound (names it).
    """
    registry = (metrics or FlowMetrics()).registry
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve Prometheus metrics on {addr}:{port}: {exc}") from exc
    return MetricsServer(server, thread)
