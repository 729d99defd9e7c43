"""One source's view of one logical instrument in the failover stage: its health, judged from its
STATUS rows and the arrival of its data rows, and its rows not yet forwarded with their positions.

A row's *position* is ``(ts, k)``: ``ts`` its venue time (capture time where the venue gave none)
and ``k`` its index in the run of rows of equal ``ts`` the source delivered in a row, so two
sources serving the same market give the same row the same position, and a splice at a position
neither loses nor repeats a row (docs/failover.md, "The splice").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

SYNCED = "synced"
# connector STATUS state -> the reason a switch away from a source in that state gives
_BAD_STATES = {"stale": "stale", "disconnected": "disconnected", "connected": "disconnected",
               "syncing": "disconnected", "resyncing": "gap", "gap": "gap", "checksum_mismatch": "gap"}


@dataclass
class Chunk:
    """Rows of one table of one source for one instrument, with their positions.

    Attributes:
        arrival_ns: when the stage got them (its arrival clock).
        name: the record name.
        table: the rows, in arrival order.
        ts: int64 venue time of each row (capture time where the venue time is -1).
        k: int64 index of each row in its run of equal ``ts``.
    """

    arrival_ns: int
    name: str
    table: pa.Table
    ts: np.ndarray
    k: np.ndarray

    def since(self, start: int) -> Chunk:
        """The rows from ``start`` on."""
        return Chunk(self.arrival_ns, self.name, self.table.slice(start), self.ts[start:], self.k[start:])

    def after(self, frontier: tuple[int, int]) -> np.ndarray:
        """Which rows lie at or after ``frontier`` (``(ts, k)`` of the next row the output wants)."""
        f_ts, f_k = frontier
        return (self.ts > f_ts) | ((self.ts == f_ts) & (self.k >= f_k))


def positions(table: pa.Table, last: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """``(ts, k)`` of each row of ``table``, continuing the run that ended at ``last``.

    Args:
        table: rows with ``ts_event_ns`` and ``ts_recv_ns``.
        last: ``(ts, k)`` of the source's previous row of this table (None: none yet).
    """
    event = table.column("ts_event_ns").to_numpy()
    ts = np.where(event >= 0, event, table.column("ts_recv_ns").to_numpy()).astype(np.int64)
    n = len(ts)
    if n == 1:  # a quiet feed's usual batch
        same = last is not None and int(ts[0]) == last[0]
        return ts, np.array([last[1] + 1 if same else 0], dtype=np.int64)
    idx = np.arange(n, dtype=np.int64)
    change = np.empty(n, dtype=bool)
    change[0] = last is None or ts[0] != last[0]
    change[1:] = ts[1:] != ts[:-1]
    start = np.maximum.accumulate(np.where(change, idx, -1))
    k = np.where(start < 0, idx + (last[1] + 1 if last is not None else 0), idx - start)
    return ts, k


@dataclass
class Leg:
    """One source of one logical instrument.

    Healthy means: its last sync state is ``synced``, it is not degraded, and it is not silent.
    Silent: a data row of another source of the instrument arrived more than ``stale_ns`` after this
    leg's last one (the reference: silence counts only against a source while another one delivers,
    so a quiet market switches nothing) and, when its source's connector gives awake stamps
    (``awake_ns``, the source's latest), that connector was awake (read its socket) more than
    ``stale_ns`` after it too, so it watched and saw nothing: a connector that did not run (a starved
    process) never makes its legs silent. ``healthy_since`` is when it last became healthy.

    Attributes:
        source: the source name.
        venue: the venue code of its rows (the config's connector name until a row says).
        symbol: the venue symbol.
        priority: 0 for the primary, 1 for the first fallback...
        stale_ns: the staleness bound.
        awake_ns: the latest awake stamp of its source's connector (None: it gives none).
    """

    source: str
    venue: str
    symbol: str
    priority: int
    stale_ns: int
    state: str = "disconnected"
    degraded: bool = False
    last_data_ns: int | None = None
    awake_ns: int | None = None
    last_recv_ns: int = -1
    healthy_since: int | None = None
    ever_healthy: bool = False
    venue_seen: bool = False
    buffer: list[Chunk] = field(default_factory=list)
    runs: dict[str, tuple[int, int]] = field(default_factory=dict)

    def quiet_ns(self, ref_ns: int) -> int | None:
        """How long it has been silent: from its last data row's arrival to the reference ``ref_ns``,
        or to its connector's last awake stamp where that is sooner (None: no data row yet)."""
        if self.last_data_ns is None:
            return None
        quiet = ref_ns - self.last_data_ns
        return quiet if self.awake_ns is None else min(quiet, self.awake_ns - self.last_data_ns)

    def healthy(self, ref_ns: int) -> bool:
        """Whether the source may serve the instrument (``ref_ns``: the reference, for a source
        with no awake stamps)."""
        quiet = self.quiet_ns(ref_ns)
        return self.state == SYNCED and not self.degraded and quiet is not None and quiet <= self.stale_ns

    def reason(self, ref_ns: int) -> str:
        """Why it is not healthy: ``stale``, ``gap``, ``degraded`` or ``disconnected``."""
        if self.state != SYNCED:
            return _BAD_STATES.get(self.state, "disconnected")
        return "degraded" if self.degraded else "stale"

    def why(self, ref_ns: int) -> str:
        """The evidence of :meth:`reason`, for a switch's ``detail``."""
        quiet = "no data row yet" if self.last_data_ns is None else (
            f"last data row {(ref_ns - self.last_data_ns) / 1e6:.0f} ms before the newest of any source")
        if self.last_data_ns is not None and self.awake_ns is not None:
            quiet += f", none in {(self.awake_ns - self.last_data_ns) / 1e6:.0f} ms its connection was read"
        return f"{self.source} {self.symbol}: state {self.state}, degraded {self.degraded}, {quiet}"

    def update(self, now_ns: int, ref_ns: int) -> None:
        """Re-judge health against ``ref_ns``; ``now_ns`` stamps a return to health."""
        if not self.healthy(ref_ns):
            self.healthy_since = None
        elif self.healthy_since is None:
            self.healthy_since = now_ns
            self.ever_healthy = True

    def status(self, state: str) -> None:
        """A STATUS row of this source about this instrument (or the whole connection)."""
        if state == SYNCED:
            self.state, self.degraded = SYNCED, False
        elif state in _BAD_STATES:
            self.state = state
        elif state == "degraded":
            self.degraded = True
        elif state == "recovered":
            self.degraded = False

    def data(self, now_ns: int, name: str, table: pa.Table) -> Chunk:
        """Data rows arrived: they count for freshness and are kept as a :class:`Chunk`."""
        quiet = self.quiet_ns(now_ns)
        if quiet is not None and quiet > self.stale_ns:
            self.healthy_since = None  # it went quiet between two looks: its healthy time restarts
        self.last_data_ns = now_ns
        if not self.venue_seen:  # the rows' own venue code (binance-usdm for the binance connector)
            self.venue, self.venue_seen = str(table.column("venue")[0].as_py()), True
        recv = table.column("ts_recv_ns").to_numpy()
        self.last_recv_ns = max(self.last_recv_ns, int(recv[-1] if len(recv) == 1 else recv.max()))
        ts, k = positions(table, self.runs.get(name))
        self.runs[name] = (int(ts[-1]), int(k[-1]))
        return Chunk(now_ns, name, table, ts, k)

    def trim(self, now_ns: int, lookback_ns: int, frontier: dict[str, tuple[int, int]]) -> tuple[int, int]:
        """Drop kept rows the output already has (before its frontier) or older than the lookback.

        Returns:
            ``(covered, expired)`` row counts dropped.
        """
        covered = expired = 0
        kept = []
        for chunk in self.buffer:
            if now_ns - chunk.arrival_ns > lookback_ns:
                expired += chunk.table.num_rows
                continue
            f = frontier.get(chunk.name)
            if f is not None:
                keep = chunk.after(f)
                if not keep.all():
                    covered += int((~keep).sum())
                    if not keep.any():
                        continue
                    rows = np.flatnonzero(keep)
                    chunk = Chunk(chunk.arrival_ns, chunk.name, chunk.table.take(pa.array(rows)),
                                  chunk.ts[rows], chunk.k[rows])
            kept.append(chunk)
        self.buffer = kept
        return covered, expired
