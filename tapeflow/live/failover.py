"""Multi-source failover: per logical instrument, forward the rows of the best healthy source.

The :class:`FailoverStage` gets every source's micro-batches in arrival order, each with the time
it arrived (``arrival_ns``), and decides from those alone, so a run replays exactly from its inputs:

* the **active** source of an instrument starts as its primary (the first leg of the config);
  its data rows are forwarded, every other source's rows are kept (the *standby* buffer, bounded
  by the frontier of the output and by ``lookback_ns``);
* a source is **healthy** when its last sync STATUS row is ``synced``, no ``degraded`` row is
  open (the connector's, or the stage's own latency circuit breaker's: :class:`SourceLatency`, one
  per source, ``degraded_after_ns`` above the source's baseline feed latency), and it is not
  silent: silent is no data row of it for ``stale_after_ns`` before the newest data row of any
  source of the instrument (silence counts only against a source while another one delivers)
  *and* before its connector's latest awake stamp (``awake_ns``: it read its socket and saw
  nothing; a connector that did not run, a starved process, is never silent; a client without
  awake stamps is judged on the first alone): :class:`tapeflow.live.failover_legs.Leg`;
* the active source turning unhealthy switches the instrument to the first healthy leg in
  priority order at once (a STATUS row: at its arrival; silence: once both another source's row
  and its connector's awake stamp came more than ``stale_after_ns`` after its last row),
  ``reason`` = ``stale``, ``gap``, ``degraded`` or ``disconnected``; a leg of higher priority than
  the active one that stayed healthy for ``hold_ns`` takes it back (``recovered``). At start, the primary gets
  ``start_grace_ns`` to become healthy before it can be left;
* **the splice**: a switch keeps the output's frontier, the position ``(venue time, index among
  equal times)`` after the last forwarded row of each table; the new source's rows before it are
  dropped (the output has them), the rest forwarded, its kept rows first. Two sources serving one
  market therefore give exactly the rows of one uninterrupted source;
* each switch is a ``source_switch`` row; taking the primary back also writes the primary's hole
  (capture time of its last row in the output before the switch .. of its newest row when taken
  back) as a closed ``gap`` STATUS row of the primary's venue and symbol, which the gap-repair
  sensor rebuilds like any other gap (``tapeflow.batch.repairs``).

STATUS and dead-letter rows of every source always pass (each keeps its venue: the provenance).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import ConfigError
from tapeflow.live.batching import Batch
from tapeflow.live.failover_config import FailoverConfig, InstrumentSpec
from tapeflow.live.failover_legs import Chunk, Leg
from tapeflow.live.health import BatchLatency, LatencyBreaker, summarize
from tapeflow.live.medians import median_int
from tapeflow.schemas import ALL_RECORDS, concat
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT, REJECTED, SOURCE_SWITCH, STATUS

_ALWAYS = (STATUS.name, REJECTED.name)
# the batches of a source whose median feed latency sets its baseline: the first 10, or fewer when
# they hold 1,000 rows (a busy flow gets big batches: a replay under load gave 8 before its 4th second)
LATENCY_WARMUP_BATCHES = 10
LATENCY_WARMUP_ROWS = 1_000
_BOOKS = (BOOK_DELTA.name, ORDER_EVENT.name)
# not feed events: their times say nothing of a source's latency (as tapeflow.live.health)
_NOT_FEED = frozenset({"bar", "metric", "book_snapshot"})
AWAKE_MAX_NS = 100_000_000  # the connectors' awake stamps: at most this far apart (flows.failover)


def awake_interval_ns(stale_after_ns: int) -> int:
    """How often each source's connector stamps that it read its socket: ``stale_after`` / 20, at
    most :data:`AWAKE_MAX_NS` (so a silence is seen within ``stale_after`` + one stamp)."""
    return min(AWAKE_MAX_NS, stale_after_ns // 20)


@dataclass
class FailoverStats:
    """Row counts of a stage.

    Attributes:
        forwarded: data rows sent on.
        covered: rows of a source the output already had from another one (at a splice, or kept
            while standby and passed by the output's frontier).
        expired: standby rows older than ``lookback_ns`` (a switch could no longer use them), or
            still kept at :meth:`FailoverStage.close`.
        unrouted: data rows of a symbol no instrument of the config names (sent on as they are).
        switches: ``source_switch`` rows written.
    """

    forwarded: int = 0
    covered: int = 0
    expired: int = 0
    unrouted: int = 0
    switches: int = 0


@dataclass
class _Instrument:
    spec: InstrumentSpec
    legs: list[Leg]
    active: int = 0
    frontier: dict[str, tuple[int, int]] = field(default_factory=dict)
    joined: set[str] | None = None  # tables spliced since the last switch (None: no switch yet)
    top_ts: int | None = None
    primary_recv_ns: int = -1  # capture time of the primary's last row in the output
    hole_from_ns: int | None = None


@dataclass
class SourceLatency:
    """The stage's latency circuit breaker for one source: ``degraded`` / ``recovered`` STATUS rows
    of the source's instruments, which the stage applies to the source's legs and sends on.

    The flow's health stage (``FeedHealth``, docs/live.md) runs downstream of the source, on the
    forwarded rows only, so its rows can never reach the stage (and a standby source's rows never
    reach it). This one judges every source's rows as they arrive: the batch median of
    ``ts_recv - ts_event`` per instrument (``tapeflow.live.health.summarize``), net of the
    source's baseline, through a :class:`~tapeflow.live.health.LatencyBreaker` (degraded above the
    threshold, recovered after 3 batches in a row at or under it). The baseline is the median of
    the source's first :data:`LATENCY_WARMUP_BATCHES` batch medians, or of fewer that hold
    :data:`LATENCY_WARMUP_ROWS` rows: a venue's usual latency, its clock's offset from ours, a
    replay's recorded latency; nothing is judged before it. No processing lag: that is the flow's,
    the same for every source. Unlike ``FeedHealth`` a jump is not taken for a clock move: a move
    of our own clock moves every source, so each degrades (the stage may switch once to a source
    that degrades a moment later, and back after the hold).

    **Our starvation is not the venue's latency.** A source whose connector gives awake stamps
    (:meth:`awake`) stamps at least every awake interval while its loop runs (a data batch's stamp
    is its last frame's read time); a gap of more than ``slack_ns`` between two stamps is a time it
    did not run (a starved process, a long decode holding the GIL): the frames read after it may
    have reached the socket at any time in that **blind** window, and their capture times carry our
    lag. So a row read after the window began that the source would have delivered before it ended
    (venue time + baseline at or before its end) is judged as captured at the earliest it can have
    arrived: not before the window's start (the socket was read then) + ``slack_ns``, nor before
    its own venue time + baseline; never later than its capture time. A venue already late when the
    starvation began stays late; a connector that ran and read late frames (a congested path) has no
    blind window and is judged on its capture times. A source without stamps, rows on a recorded
    clock (captured before the window) and the warm-up are judged on capture times alone.

    Attributes:
        source: the config's source name.
        breaker: the breaker (threshold: the config's ``degraded_after_ns``).
        baseline_ns: the baseline (None while warming up: nothing is judged yet).
        slack_ns: a gap between the connector's stamps up to this long is no starvation (twice the
            awake interval; 0: every gap is one).
        awake_ns: the connector's latest awake stamp (None: it gave none).
        blind_ns: the latest window ``(from, to)`` the connector did not run (None: none seen).
    """

    source: str
    breaker: LatencyBreaker
    baseline_ns: int | None = None
    _medians: list[int] = field(default_factory=list)
    _rows: int = 0
    slack_ns: int = 0
    awake_ns: int | None = None
    blind_ns: tuple[int, int] | None = None

    def awake(self, awake_ns: int) -> None:
        """A batch of the source arrived with its connector's stamp ``awake_ns`` (its last frame's
        read time, or the ticker's later stamp). Call before :meth:`judged_recv` of its rows."""
        if self.awake_ns is not None and awake_ns - self.awake_ns > self.slack_ns:
            self.blind_ns = (self.awake_ns, awake_ns)
        self.awake_ns = awake_ns if self.awake_ns is None else max(self.awake_ns, awake_ns)

    def judged_recv(self, ts_event: np.ndarray, ts_recv: np.ndarray) -> np.ndarray:
        """The capture times the breaker judges: ``ts_recv`` less the connector's blind window's
        lag for the rows it may have held (see the class docstring)."""
        if self.blind_ns is None or self.baseline_ns is None:
            return ts_recv
        start, end = self.blind_ns
        due = ts_event + self.baseline_ns
        # read after the connector went blind (a row carrying a recorded capture time, the sim
        # client's feed clock or a journal replay, is on another clock than the stamps: never),
        # and due before it could read again
        held = (ts_event >= 0) & (due <= end) & (ts_recv > start + self.slack_ns)
        if not held.any():
            return ts_recv
        earliest = np.maximum(start + self.slack_ns, due)
        return np.where(held, np.minimum(ts_recv, earliest), ts_recv)

    def observe(self, summaries: list[BatchLatency]) -> pa.Table | None:
        """One batch of the source, summarized per instrument; its ``degraded`` / ``recovered`` rows
        (None: none)."""
        if self.baseline_ns is None:
            timed = [b for b in summaries if b.median_latency_ns is not None]
            if timed:
                self._medians.append(median_int([b.median_latency_ns for b in timed]))
                self._rows += sum(b.rows for b in timed)
            if len(self._medians) < LATENCY_WARMUP_BATCHES and self._rows < LATENCY_WARMUP_ROWS:
                return None
            self.baseline_ns = self.breaker.clock_offset_ns = median_int(self._medians)
            self._medians = []
        # only what can change the breaker: an instrument over the threshold, or one degraded now
        # (the breaker builds a table per call: most batches of a healthy feed need none)
        over = self.baseline_ns + self.breaker.threshold_ns
        hot = [b for b in summaries if b.median_latency_ns is not None and b.median_latency_ns > over
               or self.breaker.degraded(b.venue, b.symbol)]
        if not hot:
            return None
        rows = self.breaker.observe_latencies(hot)
        if not rows.num_rows:
            return None
        detail = [f"failover {self.source}: {d} (baseline {self.baseline_ns / 1e6:.1f} ms)"
                  for d in rows.column("detail").to_pylist()]
        i = rows.column_names.index("detail")
        return rows.set_column(i, rows.schema.field(i), pa.array(detail, pa.string()))


class _Out:
    def __init__(self) -> None:
        self.parts: dict[str, list[pa.Table]] = {}
        self.switches: list[dict] = []
        self.gaps: list[dict] = []

    def add(self, name: str, table: pa.Table) -> None:
        if table.num_rows:
            self.parts.setdefault(name, []).append(table)

    def batch(self) -> Batch:
        if self.gaps:
            self.add(STATUS.name, STATUS.table({n: [r[n] for r in self.gaps] for n in STATUS.column_names}))
        if self.switches:
            self.add(SOURCE_SWITCH.name, SOURCE_SWITCH.table(
                {n: [r[n] for r in self.switches] for n in SOURCE_SWITCH.column_names}))
        return {name: (concat(ALL_RECORDS[name], ts) if name in ALL_RECORDS else pa.concat_tables(ts))
                for name, ts in self.parts.items()}


class FailoverStage:
    """The failover decisions and the splice (see the module docstring).

    Args:
        config: sources, instruments and knobs (:func:`tapeflow.live.failover_config.load_failover`).

    Raises:
        ConfigError: one source symbol in two instruments.
    """

    def __init__(self, config: FailoverConfig) -> None:
        self.config = config
        self.stats = FailoverStats()
        self._legs: dict[tuple[str, str], tuple[_Instrument, Leg]] = {}
        self._by_source: dict[str, list[Leg]] = {}
        self._instruments: list[_Instrument] = []
        for spec in config.instruments:
            legs = [Leg(src, config.source(src).venue, sym, i, config.stale_after_ns)
                    for i, (src, sym) in enumerate(spec.legs)]
            inst = _Instrument(spec, legs)
            self._instruments.append(inst)
            for leg in legs:
                if (leg.source, leg.symbol) in self._legs:
                    raise ConfigError(f"failover: {leg.source}:{leg.symbol} is a leg of two instruments")
                self._legs[(leg.source, leg.symbol)] = (inst, leg)
                self._by_source.setdefault(leg.source, []).append(leg)
        self._start_ns: int | None = None
        slack_ns = 2 * awake_interval_ns(config.stale_after_ns)
        self.latency = {spec.name: SourceLatency(spec.name, LatencyBreaker(config.degraded_after_ns),
                                                 slack_ns=slack_ns)
                        for spec in config.sources}

    def active(self, instrument: str) -> str:
        """The source name ``instrument``'s rows come from now."""
        inst = next(i for i in self._instruments if i.spec.instrument == instrument)
        return inst.legs[inst.active].source

    def feed(self, source: str, arrival_ns: int, batch: Batch, *, awake_ns: int | None = None) -> Batch:
        """One micro-batch of ``source`` that arrived at ``arrival_ns``; returns what goes on.

        Args:
            source: the config's source name of the connection that delivered it.
            arrival_ns: the arrival clock (non-decreasing over all calls).
            batch: record name -> table, as a live source emits it (STATUS rows under ``status``);
                empty for a quiet connection's awake stamp.
            awake_ns: the source's connector read its socket up to then, every frame received
                before it in this batch or an earlier one (``LiveBatch.awake_ns``; None: it does
                not say). Once a source gives one, its silence is judged on these alone.
        """
        out = _Out()
        self._clock(arrival_ns)
        for name in _ALWAYS:
            table = batch.get(name)
            if table is not None and table.num_rows:
                out.add(name, table)
        status = batch.get(STATUS.name)
        if status is not None and status.num_rows:
            self._status(source, arrival_ns, status)
        timed: dict[tuple[str, str], list[pa.Table]] = {}
        for name, table in batch.items():
            if name in _ALWAYS or name.startswith("_") or not table.num_rows:
                continue
            for symbol, part in _by_symbol(table):
                if name not in _NOT_FEED:
                    timed.setdefault((part.column("venue")[0].as_py(), symbol), []).append(part)
                hit = self._legs.get((source, symbol))
                if hit is None:
                    self.stats.unrouted += part.num_rows
                    out.add(name, part)
                    continue
                chunk = hit[1].data(arrival_ns, name, part)
                if self.config.warm_books and name in _BOOKS:
                    self.stats.forwarded += part.num_rows
                    out.add(name, part)
                else:
                    hit[1].buffer.append(chunk)
        if awake_ns is not None:  # after the rows: their arrival is judged on the stamp before it
            for leg in self._by_source.get(source, ()):
                leg.awake_ns = awake_ns if leg.awake_ns is None else max(leg.awake_ns, awake_ns)
        latency = self.latency.get(source)
        if latency is not None and awake_ns is not None:  # (a source without stamps: capture times)
            latency.awake(awake_ns)
        if timed and latency is not None:  # judged before any of these rows is forwarded
            judged = latency.observe([_latency(v, s, ts, latency) for (v, s), ts in timed.items()])
            if judged is not None:
                out.add(STATUS.name, judged)
                self._status(source, arrival_ns, judged)
        self._step(arrival_ns, out)
        return out.batch()

    def tick(self, now_ns: int) -> Batch:
        """Re-judge every instrument at ``now_ns`` with no new rows (how silence is noticed)."""
        out = _Out()
        self._clock(now_ns)
        self._step(now_ns, out)
        return out.batch()

    def close(self) -> Batch:
        """End of the run: an instrument away from its primary gets its open hole as a ``gap`` row;
        standby rows still kept are counted as ``expired`` (each source's journal holds them)."""
        out = _Out()
        for inst in self._instruments:
            for leg in inst.legs:
                self.stats.expired += sum(c.table.num_rows for c in leg.buffer)
                leg.buffer = []
            primary = inst.legs[0]
            hole = inst.hole_from_ns
            if inst.active != 0 and hole is not None and primary.last_recv_ns >= hole:
                out.gaps.append(_gap_row(primary, inst.hole_from_ns, primary.last_recv_ns,
                                         f"failover: {primary.source} rows not in the output, the run ended "
                                         f"on {inst.legs[inst.active].source}"))
        return out.batch()

    # -- decisions --------------------------------------------------------------------------

    def _clock(self, now_ns: int) -> None:
        if self._start_ns is None:
            self._start_ns = now_ns

    def _status(self, source: str, now_ns: int, status: pa.Table) -> None:
        for symbol, state in zip(status.column("symbol").to_pylist(), status.column("state").to_pylist(),
                                 strict=True):
            for inst in self._instruments:
                for leg in inst.legs:
                    if leg.source == source and (not symbol or leg.symbol == symbol):
                        leg.status(state)

    def _step(self, now_ns: int, out: _Out) -> None:
        for inst in self._instruments:
            self._decide(inst, now_ns, out)
            self._drain(inst, now_ns, out)

    def _decide(self, inst: _Instrument, now_ns: int, out: _Out) -> None:
        ref = max((leg.last_data_ns for leg in inst.legs if leg.last_data_ns is not None), default=now_ns)
        for leg in inst.legs:
            leg.update(now_ns, ref)
        active = inst.legs[inst.active]
        best = next((leg for leg in inst.legs if leg.healthy(ref)), None)
        if best is None or best is active:
            return
        assert self._start_ns is not None
        if not active.healthy(ref):
            if active.ever_healthy or now_ns - self._start_ns >= self.config.start_grace_ns:
                self._switch(inst, best, active.reason(ref), active.why(ref), now_ns, out)
        elif best.priority < active.priority:
            assert best.healthy_since is not None
            held_ns = now_ns - best.healthy_since
            if held_ns >= self.config.hold_ns:
                self._switch(inst, best, "recovered",
                             f"{best.source} healthy for {held_ns / 1e6:.0f} ms", now_ns, out)

    def _switch(self, inst: _Instrument, to: Leg, reason: str, detail: str, now_ns: int, out: _Out) -> None:
        frm = inst.legs[inst.active]
        if frm.priority == 0:
            inst.hole_from_ns = inst.primary_recv_ns if inst.primary_recv_ns >= 0 else None
        hole_from = -1 if inst.hole_from_ns is None else inst.hole_from_ns
        hole_to = -1
        if to.priority == 0:
            hole_to = to.last_recv_ns
            if inst.hole_from_ns is not None and hole_to >= inst.hole_from_ns:
                out.gaps.append(_gap_row(to, inst.hole_from_ns, hole_to,
                                         f"failover: {to.source} rows not in the output, served by "
                                         f"{frm.source} meanwhile"))
            inst.hole_from_ns = None
        out.switches.append(dict(
            ts_event_ns=-1 if inst.top_ts is None else inst.top_ts, ts_recv_ns=now_ns, venue=to.venue,
            symbol=to.symbol, instrument=inst.spec.instrument, from_source=frm.source, to_source=to.source,
            reason=reason, primary_hole_from_ns=hole_from, primary_hole_to_ns=hole_to, detail=detail))
        self.stats.switches += 1
        inst.active = to.priority
        inst.joined = set()

    # -- the splice -------------------------------------------------------------------------

    def _drain(self, inst: _Instrument, now_ns: int, out: _Out) -> None:
        active = inst.legs[inst.active]
        for chunk in active.buffer:
            self._forward(inst, active, chunk, out)
        active.buffer = []
        for leg in inst.legs:
            if leg is not active and leg.buffer:
                covered, expired = leg.trim(now_ns, self.config.lookback_ns, inst.frontier)
                self.stats.covered += covered
                self.stats.expired += expired

    def _forward(self, inst: _Instrument, leg: Leg, chunk: Chunk, out: _Out) -> None:
        if inst.joined is not None and chunk.name not in inst.joined:
            frontier = inst.frontier.get(chunk.name)
            if frontier is None and inst.top_ts is not None:
                frontier = (inst.top_ts + 1, 0)  # a table the output never had: strictly after its rows
            if frontier is not None:
                keep = chunk.after(frontier)
                if not keep.any():
                    self.stats.covered += chunk.table.num_rows
                    return
                first = int(np.argmax(keep))
                self.stats.covered += first
                chunk = chunk.since(first)
            inst.joined.add(chunk.name)
        out.add(chunk.name, chunk.table)
        self.stats.forwarded += chunk.table.num_rows
        inst.frontier[chunk.name] = (int(chunk.ts[-1]), int(chunk.k[-1]) + 1)
        top = int(chunk.ts.max())
        inst.top_ts = top if inst.top_ts is None else max(inst.top_ts, top)
        if leg.priority == 0:
            recv_ns = int(pc.max(chunk.table.column("ts_recv_ns")).as_py())
            inst.primary_recv_ns = max(inst.primary_recv_ns, recv_ns)


def _latency(venue: str, symbol: str, tables: list[pa.Table], source: SourceLatency) -> BatchLatency:
    def column(name: str) -> np.ndarray:
        parts = [t.column(name).to_numpy() for t in tables]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    seqs = [t.column("sequence").to_numpy() for t in tables if "sequence" in t.column_names]
    ts_event = column("ts_event_ns")
    return summarize(venue, symbol, ts_event, source.judged_recv(ts_event, column("ts_recv_ns")), seqs)


def _by_symbol(table: pa.Table) -> Iterable[tuple[str, pa.Table]]:
    symbols = table.column("symbol")
    unique = pc.unique(symbols).to_pylist()
    if len(unique) == 1:
        return [(unique[0], table)]
    return [(s, table.filter(pc.equal(symbols, s))) for s in unique]


def _gap_row(leg: Leg, from_ns: int, to_ns: int, detail: str) -> dict:
    return dict(ts_event_ns=-1, ts_recv_ns=from_ns, venue=leg.venue, symbol=leg.symbol, state="gap",
                sequence=-1, until_ns=to_ns, detail=detail)
