"""Feed health judged relative to the feed's own estimated clock: for replays of old captures.

``tapeflow.live.health.FeedHealth`` judges feed latency (``ts_recv - ts_event``, net of a clock
skew it detects) and processing lag (``now - ts_recv``) in absolute terms. A 2024 capture replayed
today breaks both: the capture's ``ts_recv`` (kept by the ``sim`` client's feed clock, or a
journal replayed through ``CaptureSource`` with a wall clock) is years behind ``now``, and a replay
at a speed other than 1 makes ``ts_recv - ts_event`` drift, so every instrument would be
``degraded`` and the venue ``skew`` for the whole run.

:class:`RelativeHealth` keeps the latency circuit breaker and changes what it measures against:
per venue, the offsets are the median of the last :data:`WINDOW_BATCHES` batch medians of
``ts_recv - ts_event`` (the venue's estimated clock offset plus its usual latency) and of
``now - max(ts_recv)`` (the replay's distance from today). The breaker then sees only how far a
batch is *above its recent level*: a latency spike or a stalled flow still trips it, a constant or
slowly drifting clock does not. There is no skew detection in this mode (the offset is expected).
It has the ``observe`` / ``flag`` interface of ``FeedHealth``, so the flow's health stage takes it
unchanged (``flows.market.flow_from_env`` with ``TAPEFLOW_LIVE_CLOCK=relative``).

Spikes longer than about half the window become the new level and stop counting; the window is a
number of batches, so its span in time follows the batch rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from tapeflow.live.health import BatchLatency, LatencyBreaker, batch_latencies
from tapeflow.live.medians import RollingMedian, median_int

WINDOW_BATCHES = 64


@dataclass
class _Level:
    # recent batch medians of ts_recv - ts_event, and recent now - max(ts_recv)
    feed: RollingMedian = field(default_factory=lambda: RollingMedian(WINDOW_BATCHES))
    lag: RollingMedian = field(default_factory=lambda: RollingMedian(WINDOW_BATCHES))


@dataclass
class RelativeHealth:
    """A latency breaker over latencies relative to their recent per-venue level (picklable).

    Attributes:
        breaker: the latency circuit breaker (its ``venue_offsets_ns`` are set here each batch).
    """

    breaker: LatencyBreaker
    _levels: dict[str, _Level] = field(default_factory=dict)

    def offsets_ns(self, venue: str) -> tuple[int, int]:
        """The current (feed latency, processing lag) levels of ``venue`` (0, 0 before any batch)."""
        level = self._levels.get(venue)
        if level is None:
            return 0, 0
        return level.feed.median() or 0, level.lag.median() or 0

    def observe(self, records: Mapping[str, pa.Table] | pa.Table, now_ns: int | None = None) -> pa.Table:
        """Feed one micro-batch (one venue, as the flow's health stage keys it); return its
        ``degraded`` / ``recovered`` status rows."""
        return self.observe_latencies(batch_latencies(records), now_ns)

    def observe_latencies(self, summaries: list[BatchLatency], now_ns: int | None = None) -> pa.Table:
        """:meth:`observe` on a batch already summarized by ``batch_latencies``."""
        if not summaries:
            return self.breaker.observe_latencies(summaries, now_ns)
        venue = summaries[0].venue
        level = self._levels.get(venue)
        if level is None:
            level = self._levels[venue] = _Level()
        medians = [b.median_latency_ns for b in summaries if b.median_latency_ns is not None]
        if medians:
            self.breaker.venue_offsets_ns[venue] = level.feed.push(median_int(medians))
        if now_ns is not None:
            now_ns -= level.lag.push(now_ns - max(b.last_recv_ns for b in summaries))
        return self.breaker.observe_latencies(summaries, now_ns)

    def flag(self, table: pa.Table, *, time_column: str = "ts_recv_ns") -> pa.Table:
        """Rows with ``F_MAYBE_BAD_BOOK`` inside degraded windows (as ``FeedHealth.flag``)."""
        return self.breaker.flag(table, time_column=time_column)


__all__ = ["WINDOW_BATCHES", "RelativeHealth"]
