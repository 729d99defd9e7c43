"""Feed health over micro-batches: a latency circuit breaker per instrument, clock skew per venue.

Both are pure, picklable state machines (Bytewax recovery snapshots them): they take a batch's
tables and the processing time as arguments, never read a clock, and return ``status`` rows.

Latency of a batch, per instrument:

- feed latency: the median over the batch's rows of ``ts_recv_ns - ts_event_ns - clock_offset_ns``
  (rows without a venue time, ``ts_event_ns < 0``, do not count). The median, because one late
  message is noise, while a congested or stalled connection delays every message behind it.
- processing lag: ``now_ns - max(ts_recv_ns)``, how long ago the freshest row of the batch was
  captured when the flow got to it (skipped when ``now_ns`` is None, e.g. replays at full speed).

When either passes ``threshold_ns`` the instrument is *degraded*: one ``degraded`` status row
(``until_ns`` -1). It *recovers* after ``recover_batches`` batches in a row with both at or under
``recover_ns`` (hysteresis, so a latency hovering at the threshold does not flap): one ``recovered``
row whose ``until_ns`` closes the window. Rows captured inside a window (the recovering batch
included) get ``F_MAYBE_BAD_BOOK`` through :meth:`LatencyBreaker.flag`.

Clock skew, per venue: latency cannot be negative, so a median ``ts_recv - ts_event`` below
``-negative_tolerance_ns`` means our clock is behind the venue's; a median that moves more than
``drift_ns`` away from its level over the first ``warmup_batches`` batches means one of the clocks
jumped. Either opens a ``skew`` status row (symbol "", venue-wide); ``recover_batches`` clean
batches close it with a second ``skew`` row that carries ``until_ns``. The measured offset is
``offset_ns``: feed it to the breaker's ``clock_offset_ns`` so a skewed clock does not trip it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import ConfigError
from tapeflow.live.batching import instrument_rows
from tapeflow.live.medians import RollingMedian, median_int
from tapeflow.schemas import concat
from tapeflow.schemas.records import F_MAYBE_BAD_BOOK, STATUS

_NOT_EVENTS = frozenset({"status", "rejected", "bar", "metric", "book_snapshot"})
MAX_WINDOWS = 256  # per instrument: enough to flag rows that close late, bounded for long runs
_OPEN = np.iinfo(np.int64).max
OFFSET_BATCHES = 64  # batch medians the skew offset is the median of


class BatchLatency(NamedTuple):
    """One instrument's rows in one batch, reduced to what the breaker and the skew detector need."""

    venue: str
    symbol: str
    rows: int
    median_latency_ns: int | None  # None when no row has a venue time
    first_recv_ns: int
    last_recv_ns: int
    last_event_ns: int
    last_sequence: int


def batch_latencies(records: Mapping[str, pa.Table] | pa.Table) -> list[BatchLatency]:
    """Per (venue, symbol) latency summary of a batch's event tables, sorted by venue and symbol.

    Vectorized: a one-instrument table (the live flow's common case) is recognized from its
    string buffers; a mixed one is grouped once (no Python object per row).

    Args:
        records: one table, or tables by record name (``status``, ``rejected`` and derived tables
            are left out: their times are not feed times).
    """
    tables = [records] if isinstance(records, pa.Table) else [
        t for name, t in records.items() if name not in _NOT_EVENTS]
    parts: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = {}
    for t in tables:
        if t.num_rows == 0:
            continue
        event, recv = t.column("ts_event_ns").to_numpy(), t.column("ts_recv_ns").to_numpy()
        seq = t.column("sequence").to_numpy() if "sequence" in t.column_names else None
        for venue, symbol, rows in instrument_rows(t):
            if rows is None:
                parts.setdefault((venue, symbol), []).append((event, recv, seq))
            else:
                parts.setdefault((venue, symbol), []).append(
                    (event[rows], recv[rows], None if seq is None else seq[rows]))
    out = []
    for (v, s), arrays in sorted(parts.items()):
        ev = arrays[0][0] if len(arrays) == 1 else np.concatenate([a[0] for a in arrays])
        rc = arrays[0][1] if len(arrays) == 1 else np.concatenate([a[1] for a in arrays])
        seqs = [a[2] for a in arrays if a[2] is not None]
        out.append(summarize(v, s, ev, rc, seqs))
    return out


def summarize(venue: str, symbol: str, ev: np.ndarray, rc: np.ndarray,
              seqs: list[np.ndarray]) -> BatchLatency:
    """One instrument's :class:`BatchLatency` from its rows' venue times, capture times and sequences
    (``seqs``: one array per table that has a ``sequence`` column)."""
    if len(ev) <= SMALL:
        # a few rows (a quiet feed, a small batch): Python lists beat numpy's per-call overhead
        top = [max(q.tolist()) for q in seqs]
        return summarize_lists(venue, symbol, ev.tolist(), rc.tolist(), max(top) if top else -1)
    timed = ev >= 0
    median = median_int(rc[timed] - ev[timed]) if timed.any() else None
    top = [int(q.max()) for q in seqs]
    return BatchLatency(venue, symbol, len(ev), median, int(rc.min()), int(rc.max()), int(ev.max()),
                        max(top) if top else -1)


def summarize_lists(venue: str, symbol: str, ev: list[int], rc: list[int],
                    last_sequence: int) -> BatchLatency:
    """:func:`summarize` of a few rows given as Python lists (and their largest sequence, -1: none)."""
    lat = [r - e for r, e in zip(rc, ev, strict=True) if e >= 0]
    return BatchLatency(venue, symbol, len(ev), median_int(lat) if lat else None, min(rc), max(rc), max(ev),
                        last_sequence)


SMALL = 32  # rows up to which a summary works on Python lists


_EMPTY_STATUS = STATUS.empty_table()


def _status(rows: list[dict[str, object]]) -> pa.Table:
    if not rows:
        return _EMPTY_STATUS
    return STATUS.table({name: [r[name] for r in rows] for name in STATUS.column_names})


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms"


def _why(b: BatchLatency, feed: int | None, lag: int | None) -> str:
    # only for the rows written: a transition, not every batch
    return (f"feed latency {_ms(feed) if feed is not None else 'n/a'} (median of {b.rows} rows), "
            f"processing lag {_ms(lag) if lag is not None else 'n/a'}")


@dataclass
class _Instrument:
    degraded: bool = False
    since_ns: int = -1
    good_streak: int = 0
    windows: list[tuple[int, int]] = field(default_factory=list)  # [start, end) capture times


@dataclass
class LatencyBreaker:
    """Latency circuit breaker per instrument (see the module docstring).

    Attributes:
        threshold_ns: feed latency or processing lag above which an instrument degrades.
        recover_ns: both must be at or under this to count a batch as good (default: threshold).
        recover_batches: good batches in a row that close a degraded window.
        clock_offset_ns: subtracted from every ``ts_recv - ts_event`` (a measured clock skew).
        venue_offsets_ns: per-venue offsets that override ``clock_offset_ns`` (see :class:`FeedHealth`).
        trips: how many times any instrument degraded.
    """

    threshold_ns: int
    recover_ns: int | None = None
    recover_batches: int = 3
    clock_offset_ns: int = 0
    venue_offsets_ns: dict[str, int] = field(default_factory=dict)
    trips: int = 0
    _instruments: dict[tuple[str, str], _Instrument] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recover_ns is None:
            self.recover_ns = self.threshold_ns
        if self.threshold_ns <= 0 or self.recover_ns > self.threshold_ns or self.recover_batches < 1:
            raise ConfigError(f"latency breaker needs 0 < recover_ns ({self.recover_ns}) <= threshold_ns "
                              f"({self.threshold_ns}) and recover_batches ({self.recover_batches}) >= 1")

    def observe(self, records: Mapping[str, pa.Table] | pa.Table, now_ns: int | None = None) -> pa.Table:
        """Feed one micro-batch; return the ``status`` rows it caused (``degraded`` / ``recovered``).

        Args:
            records: the batch's event tables by record name (or one table).
            now_ns: processing time of the batch, or None to judge feed latency only.
        """
        return self.observe_latencies(batch_latencies(records), now_ns)

    def observe_latencies(self, summaries: list[BatchLatency], now_ns: int | None = None) -> pa.Table:
        """:meth:`observe` on a batch already summarized by :func:`batch_latencies`."""
        rows = []
        for summary in summaries:
            row = self._step(summary, now_ns)
            if row is not None:
                rows.append(row)
        return _status(rows)

    def _step(self, b: BatchLatency, now_ns: int | None) -> dict[str, object] | None:
        inst = self._instruments.get((b.venue, b.symbol))
        if inst is None:
            inst = self._instruments[(b.venue, b.symbol)] = _Instrument()
        offset = self.venue_offsets_ns.get(b.venue, self.clock_offset_ns)
        feed = None if b.median_latency_ns is None else b.median_latency_ns - offset
        lag = None if now_ns is None else now_ns - b.last_recv_ns
        worst = feed if lag is None else lag if feed is None else max(feed, lag)
        if worst is None:
            return None
        if not inst.degraded:
            if worst <= self.threshold_ns:
                return None
            inst.degraded, inst.since_ns, inst.good_streak = True, b.first_recv_ns, 0
            inst.windows = [*inst.windows, (b.first_recv_ns, int(_OPEN))][-MAX_WINDOWS:]
            self.trips += 1
            return self._row(b, "degraded", -1, f"{_why(b, feed, lag)} > threshold {_ms(self.threshold_ns)}")
        assert self.recover_ns is not None
        inst.good_streak = inst.good_streak + 1 if worst <= self.recover_ns else 0
        if inst.good_streak < self.recover_batches:
            return None
        until = b.last_recv_ns + 1
        inst.degraded, inst.good_streak = False, 0
        inst.windows[-1] = (inst.windows[-1][0], until)
        return self._row(b, "recovered", until, f"{_why(b, feed, lag)} <= {_ms(self.recover_ns)} for "
                         f"{self.recover_batches} batches; degraded for {_ms(until - inst.since_ns)}")

    @staticmethod
    def _row(b: BatchLatency, state: str, until_ns: int, detail: str) -> dict[str, object]:
        return {"ts_event_ns": b.last_event_ns, "ts_recv_ns": b.first_recv_ns if until_ns < 0 else until_ns,
                "venue": b.venue, "symbol": b.symbol, "state": state, "sequence": b.last_sequence,
                "until_ns": until_ns, "detail": detail}

    def degraded(self, venue: str, symbol: str) -> bool:
        """Whether the instrument is degraded now."""
        inst = self._instruments.get((venue, symbol))
        return bool(inst and inst.degraded)

    def degraded_mask(self, table: pa.Table, *, time_column: str = "ts_recv_ns") -> np.ndarray:
        """Rows of ``table`` whose ``time_column`` falls inside a degraded window of their instrument."""
        mask = np.zeros(table.num_rows, dtype=bool)
        if table.num_rows == 0 or not any(inst.windows for inst in self._instruments.values()):
            return mask
        ts = table[time_column].to_numpy()
        for venue, symbol, rows in instrument_rows(table):
            inst = self._instruments.get((venue, symbol))
            if inst is None or not inst.windows:
                continue
            mine = ts if rows is None else ts[rows]
            hit = np.zeros(len(mine), dtype=bool)
            for start, end in inst.windows:
                hit |= (mine >= start) & (mine < end)
            if rows is None:
                mask |= hit
            else:
                mask[rows] |= hit
        return mask

    def flag(self, table: pa.Table, *, time_column: str = "ts_recv_ns") -> pa.Table:
        """``table`` with ``F_MAYBE_BAD_BOOK`` added to the ``flags`` of rows in a degraded window."""
        mask = self.degraded_mask(table, time_column=time_column)
        if not mask.any():
            return table
        flags = table["flags"].to_numpy() | np.where(mask, F_MAYBE_BAD_BOOK, 0).astype(np.uint8)
        index = table.column_names.index("flags")
        return table.set_column(index, table.schema.field("flags"), pa.array(flags, type=pa.uint8()))


@dataclass
class _Venue:
    medians: list[int] = field(default_factory=list)  # warm-up batch medians
    baseline_ns: int | None = None
    skewed: bool = False
    since_ns: int = -1
    good_streak: int = 0
    recent: RollingMedian = field(default_factory=lambda: RollingMedian(OFFSET_BATCHES))  # while skewed


@dataclass
class SkewDetector:
    """Clock skew per venue from the median ``ts_recv - ts_event`` of each batch.

    Attributes:
        negative_tolerance_ns: a median below minus this means our clock is behind the venue's.
        drift_ns: a median this far from the warm-up baseline means a clock moved.
        warmup_batches: batches whose medians set the baseline.
        recover_batches: clean batches in a row that close a skew window.
    """

    negative_tolerance_ns: int = 5_000_000
    drift_ns: int = 250_000_000
    warmup_batches: int = 10
    recover_batches: int = 3
    events: int = 0
    _venues: dict[str, _Venue] = field(default_factory=dict)

    def observe(self, records: Mapping[str, pa.Table] | pa.Table) -> pa.Table:
        """Feed one micro-batch; return ``skew`` status rows (an opening one, or one that closes)."""
        return self.observe_latencies(batch_latencies(records))

    def observe_latencies(self, summaries: list[BatchLatency]) -> pa.Table:
        """:meth:`observe` on a batch already summarized by :func:`batch_latencies`."""
        per_venue: dict[str, list[BatchLatency]] = {}
        for b in summaries:
            if b.median_latency_ns is not None:
                per_venue.setdefault(b.venue, []).append(b)
        rows = []
        for venue in sorted(per_venue) if len(per_venue) > 1 else per_venue:
            row = self._step(venue, per_venue[venue])
            if row is not None:
                rows.append(row)
        return _status(rows)

    def offset_ns(self, venue: str) -> int:
        """The clock offset of ``venue`` while skewed (else 0): the median of the last
        ``OFFSET_BATCHES`` batch medians, so a latency spike of a few batches does not move it."""
        state = self._venues.get(venue)
        return state.recent.median() or 0 if state and state.skewed else 0

    def _step(self, venue: str, summaries: list[BatchLatency]) -> dict[str, object] | None:
        state = self._venues.get(venue)
        if state is None:
            state = self._venues[venue] = _Venue()
        if len(summaries) == 1:
            median = int(float(summaries[0].median_latency_ns))  # as median_int gives one value
        else:
            median = median_int([b.median_latency_ns for b in summaries])
        if state.baseline_ns is None:
            state.medians.append(median)
            if len(state.medians) >= self.warmup_batches:
                state.baseline_ns = median_int(state.medians)
        behind = median < -self.negative_tolerance_ns
        moved = state.baseline_ns is not None and abs(median - state.baseline_ns) > self.drift_ns
        if behind or moved:
            state.good_streak = 0
            state.recent.push(median)
            if state.skewed:
                return None
            first = min(summaries, key=lambda b: b.first_recv_ns)
            state.skewed, state.since_ns = True, first.first_recv_ns
            self.events += 1
            # the text only for the row that opens the window, not for every skewed batch
            reasons = []
            if behind:
                reasons.append(f"median ts_recv - ts_event is {_ms(median)}: our clock is behind the venue's")
            if moved:
                assert state.baseline_ns is not None
                base = state.baseline_ns
                reasons.append(f"median ts_recv - ts_event {_ms(median)} moved {_ms(median - base)} "
                               f"from its baseline {_ms(base)}")
            return _skew_row(venue, first, -1, "; ".join(reasons))
        if not state.skewed:
            return None
        state.recent.push(median)
        state.good_streak += 1
        if state.good_streak < self.recover_batches:
            return None
        last = max(summaries, key=lambda b: b.last_recv_ns)
        state.skewed, state.good_streak = False, 0
        state.recent.clear()
        until = last.last_recv_ns + 1
        return _skew_row(venue, last, until, f"clock skew cleared: median {_ms(median)} for "
                         f"{self.recover_batches} batches; skewed for {_ms(until - state.since_ns)}")


def _skew_row(venue: str, b: BatchLatency, until_ns: int, detail: str) -> dict[str, object]:
    return {"ts_event_ns": b.last_event_ns, "ts_recv_ns": b.first_recv_ns if until_ns < 0 else until_ns,
            "venue": venue, "symbol": "", "state": "skew", "sequence": -1, "until_ns": until_ns,
            "detail": detail}


@dataclass
class FeedHealth:
    """The skew detector and the latency breaker as one stage: the breaker judges feed latency net
    of each venue's measured clock offset, so a skewed clock is reported once (``skew``) instead of
    degrading every instrument of the venue.

    Attributes:
        breaker: the latency circuit breaker.
        skew: the clock-skew detector.
    """

    breaker: LatencyBreaker
    skew: SkewDetector = field(default_factory=SkewDetector)

    def observe(self, records: Mapping[str, pa.Table] | pa.Table, now_ns: int | None = None) -> pa.Table:
        """Feed one micro-batch; return its ``skew``, ``degraded`` and ``recovered`` status rows."""
        return self.observe_latencies(batch_latencies(records), now_ns)

    def observe_latencies(self, summaries: list[BatchLatency], now_ns: int | None = None) -> pa.Table:
        """:meth:`observe` on a batch already summarized by :func:`batch_latencies` (summarized
        once for both the skew detector and the breaker)."""
        skew_rows = self.skew.observe_latencies(summaries)
        for venue in self.skew._venues:
            self.breaker.venue_offsets_ns[venue] = self.skew.offset_ns(venue)
        breaker_rows = self.breaker.observe_latencies(summaries, now_ns)
        if not skew_rows.num_rows:
            return breaker_rows
        return concat_status([skew_rows, breaker_rows])

    def flag(self, table: pa.Table, *, time_column: str = "ts_recv_ns") -> pa.Table:
        """Derived rows (bars, metrics, snapshots) with ``F_MAYBE_BAD_BOOK`` inside degraded windows."""
        return self.breaker.flag(table, time_column=time_column)


def concat_status(tables: Iterable[pa.Table]) -> pa.Table:
    """Concatenate ``status`` tables (the breaker's, the skew detector's, a connector's)."""
    return concat(STATUS, list(tables))


def latency_ns(table: pa.Table) -> np.ndarray:
    """``ts_recv_ns - ts_event_ns`` of the rows that have a venue time (for benchmarks and tests)."""
    ev = table["ts_event_ns"]
    timed = pc.greater_equal(ev, 0)
    return pc.subtract(table["ts_recv_ns"].filter(timed), ev.filter(timed)).to_numpy()
