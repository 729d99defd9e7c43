"""Sequence-chain synchronisation of L2 diff streams with REST snapshots (Binance, KuCoin style).

Venues that publish an L2 diff stream plus a REST snapshot carrying an update id share one
procedure: buffer the diffs, take the snapshot (id ``L``), skip the diffs it already contains,
apply the first diff that bridges ``L``, then check that every diff links to the previous one.
Two link styles exist:

* ``prev_id`` given (Binance futures ``pu``): a diff links when ``prev_id == previous last_id``;
  it is contained in the snapshot when ``last_id < L``, and bridges when ``first <= L <= last``.
* ``prev_id`` None (Binance spot, KuCoin): a diff links when ``first_id == previous last_id + 1``;
  contained when ``last_id <= L``, bridges when ``first <= L + 1 <= last``.

Rows leave in *book order*: a snapshot that arrived after the diffs that bridge it is written
before them (every row keeps its own ``ts_recv_ns``), because that is the order a book must
apply them in. Diffs of an unsynced instrument wait in a bounded buffer for that reason.
Contained diffs are kept with ``F_SUPERSEDED``; the first row of a diff that breaks the chain
carries ``F_GAP`` and the instrument waits for its next snapshot.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from tapeflow.schemas.records import (
    F_GAP,
    F_LAST,
    F_SNAPSHOT,
    F_SUPERSEDED,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    NO_SIDE,
    UNDEF_PRICE,
)
from tapeflow.venues.columns import Columns

MAX_PENDING_MESSAGES = 4096


@dataclass(slots=True)
class L2Message:
    """One venue diff message of one instrument (levels already parsed to 1e-9 units).

    Attributes:
        first_id, last_id: the update-id range the message covers (Binance ``U``/``u``).
        prev_id: the previous message's ``last_id`` as the venue states it (Binance futures
            ``pu``), or None when ids are contiguous.
        sides, prices, sizes: one entry per level change; size 0 deletes the level.
        row_ids: per-level update ids (KuCoin change sequence) or None: rows then take
            ``last_id`` as their sequence.
        flags: message flags set by the chain (``F_GAP``, ``F_SUPERSEDED``).
        supersede_upto: rows whose ``row_ids`` are <= this are inside the snapshot.
    """

    venue: str
    symbol: str
    first_id: int
    last_id: int
    prev_id: int | None
    ts_event_ns: int
    ts_recv_ns: int
    sides: list[int]
    prices: list[int]
    sizes: list[int]
    row_ids: list[int] | None = None
    flags: int = 0
    supersede_upto: int | None = None


@dataclass(slots=True)
class L2Snapshot:
    """A full-depth snapshot of one instrument as of update id ``last_id``."""

    venue: str
    symbol: str
    last_id: int
    ts_event_ns: int
    ts_recv_ns: int
    sides: list[int]
    prices: list[int]
    sizes: list[int]


@dataclass
class ChainStats:
    """What the chains saw: the oracle counts of a decode pass.

    ``checked`` counts the diffs that had to link (after a snapshot, not contained in it);
    ``chained`` those that did; ``gaps`` names each break.
    """

    checked: int = 0
    chained: int = 0
    superseded: int = 0
    snapshots: int = 0
    stale_snapshots: int = 0
    unsynced: int = 0
    gaps: list[str] = field(default_factory=list)


def add_message(out: Columns, m: L2Message) -> None:
    """Write one diff's rows to ``out``: ``F_GAP`` on its first row, ``F_LAST`` on its last."""
    k = len(m.prices)
    if not k:
        return
    base = m.flags & F_SUPERSEDED
    flags = [base] * k
    if m.row_ids is not None and m.supersede_upto is not None:
        upto = m.supersede_upto
        flags = [base | (F_SUPERSEDED if rid <= upto else 0) for rid in m.row_ids]
    flags[0] |= m.flags & F_GAP
    flags[-1] |= F_LAST
    out.extend(k, ts_event_ns=m.ts_event_ns, ts_recv_ns=m.ts_recv_ns, venue=m.venue, symbol=m.symbol,
               sequence=m.row_ids if m.row_ids is not None else m.last_id, side=m.sides,
               action=[L2_DELETE if s == 0 else L2_SET for s in m.sizes], price_nanos=m.prices,
               size_nanos=m.sizes, flags=flags)


def add_snapshot(out: Columns, s: L2Snapshot, *, extra_flags: int = 0) -> None:
    """Write a clear row then every level with ``F_SNAPSHOT``; the last row ends it with ``F_LAST``."""
    k = len(s.prices) + 1
    flags = [F_SNAPSHOT | extra_flags] * k
    flags[-1] |= F_LAST
    out.extend(k, ts_event_ns=s.ts_event_ns, ts_recv_ns=s.ts_recv_ns, venue=s.venue, symbol=s.symbol,
               sequence=s.last_id, side=[NO_SIDE, *s.sides],
               action=[L2_CLEAR, *(L2_DELETE if z == 0 else L2_SET for z in s.sizes)],
               price_nanos=[UNDEF_PRICE, *s.prices], size_nanos=[0, *s.sizes], flags=flags)


WAIT_SNAPSHOT, WAIT_BRIDGE, SYNCED = 0, 1, 2  # SeqChain.state


class SeqChain:
    """The sync state of one instrument's diff stream (see the module docstring)."""

    def __init__(self, stats: ChainStats, *, max_pending: int = MAX_PENDING_MESSAGES) -> None:
        self.stats = stats
        self.max_pending = max_pending
        self.state = WAIT_SNAPSHOT
        self.snapshot_id = 0
        self.prev_last = 0
        self.pending: deque[L2Message] = deque()
        self._carry_gap = 0

    @property
    def synced(self) -> bool:
        return self.state == SYNCED

    def update(self, m: L2Message, out: Columns) -> None:
        """Take one diff: buffer it, or flag it and write it to ``out``."""
        if self.state == WAIT_SNAPSHOT:
            self.pending.append(m)
            if len(self.pending) > self.max_pending:
                # No snapshot came in time: the oldest diff can no longer be bridged; the
                # book stays in RESYNC for it anyway.
                self._emit(self.pending.popleft(), out, counted=False)
            return
        if self.state == WAIT_BRIDGE:
            self._after_snapshot(m, out)
            return
        self.stats.checked += 1
        links = (m.prev_id == self.prev_last) if m.prev_id is not None else (m.first_id == self.prev_last + 1)
        if links:
            self.stats.chained += 1
            self.prev_last = m.last_id
        else:
            self._gap(m, f"expected the diff after id {self.prev_last}")
        self._emit(m, out)

    def snapshot(self, s: L2Snapshot, out: Columns) -> None:
        """Take a snapshot: write the buffered diffs it contains, itself, then the rest."""
        if self.state == SYNCED and s.last_id <= self.prev_last:
            # Older than the book we already hold: keep the rows, apply none of them.
            self.stats.stale_snapshots += 1
            add_snapshot(out, s, extra_flags=F_SUPERSEDED)
            return
        later: list[L2Message] = []
        for m in self.pending:
            if m.last_id < s.last_id + (0 if m.prev_id is not None else 1):
                self._emit(m, out, counted=False)
            else:
                later.append(m)
        self.pending.clear()
        self.stats.snapshots += 1
        add_snapshot(out, s)
        self.state = WAIT_BRIDGE
        self.snapshot_id = s.last_id
        for m in later:
            self.update(m, out)  # a gap among them sends the rest back to the buffer

    def flush(self, out: Columns) -> None:
        """Write whatever still waits for a snapshot (end of input)."""
        while self.pending:
            self._emit(self.pending.popleft(), out, counted=False)

    def _after_snapshot(self, m: L2Message, out: Columns) -> None:
        target = self.snapshot_id + (0 if m.prev_id is not None else 1)
        if m.last_id < target:
            m.flags |= F_SUPERSEDED
            self.stats.superseded += 1
        else:
            self.stats.checked += 1
            if m.first_id <= target:
                self.stats.chained += 1
                self.state = SYNCED
                self.prev_last = m.last_id
                m.supersede_upto = self.snapshot_id
            else:
                self._gap(m, f"no diff bridges snapshot id {self.snapshot_id}")
        self._emit(m, out)

    def _gap(self, m: L2Message, why: str) -> None:
        m.flags |= F_GAP
        self.stats.gaps.append(
            f"{m.venue} {m.symbol}: {why}, got first={m.first_id} last={m.last_id} prev={m.prev_id}"
        )
        self.state = WAIT_SNAPSHOT

    def _emit(self, m: L2Message, out: Columns, *, counted: bool = True) -> None:
        if not counted:
            self.stats.unsynced += 1
        if self._carry_gap:
            m.flags |= self._carry_gap
        # A diff without levels writes no row, so its gap flag rides on the next row written.
        self._carry_gap = (m.flags & F_GAP) if not m.prices else 0
        add_message(out, m)
