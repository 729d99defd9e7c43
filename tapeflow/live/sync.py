"""The per-instrument sync state machine of a live connector, writing a STATUS row per transition.

States: ``connected`` (socket open, subscribed) -> ``syncing`` (waiting for the first snapshot)
-> ``synced`` -> ``resyncing`` (a sequence gap or checksum mismatch: waiting for a fresh
snapshot) -> ``synced``; ``disconnected`` / ``stale`` from anywhere. Besides the state rows, a
gap writes a ``gap`` row and its end a ``recovered`` row whose ``ts_event_ns``..``until_ns`` is
the window the book could not be trusted (the gap-repair sensor reads those windows).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from tapeflow.live.frames import StatusLog

CONNECTED, SYNCING, SYNCED, RESYNCING = "connected", "syncing", "synced", "resyncing"
DISCONNECTED, STALE, GAP, RECOVERED = "disconnected", "stale", "gap", "recovered"


class SyncTracker:
    """Sync state of each subscribed instrument of one connector.

    Args:
        log: where the STATUS rows go.
        symbols: the instruments (venue spelling).
    """

    def __init__(self, log: StatusLog, symbols: Iterable[str]) -> None:
        self.log = log
        self.symbols = list(symbols)
        self.state = {s: DISCONNECTED for s in self.symbols}
        # Start of the window in which a symbol's book was not trustworthy (None: trusted).
        self.broken_since: dict[str, int | None] = {s: None for s in self.symbols}
        self.gaps = 0
        self.resyncs = 0

    def synced(self, symbol: str) -> bool:
        """Whether ``symbol``'s book is synced now."""
        return self.state.get(symbol) == SYNCED

    def connected(self, detail: str) -> None:
        """The socket is open and subscribed: every instrument starts syncing."""
        now = time.time_ns()
        for s in self.symbols:
            self._set(s, CONNECTED, detail, now=now)
            if self.broken_since[s] is None:
                self.broken_since[s] = now
            self._set(s, SYNCING, "waiting for the first snapshot", now=now)

    def lost(self, state: str, detail: str) -> None:
        """The connection ended (``disconnected``) or went quiet (``stale``)."""
        now = time.time_ns()
        for s in self.symbols:
            if self.broken_since[s] is None:
                self.broken_since[s] = now
            self._set(s, state, detail, now=now)

    def gap(self, symbol: str, detail: str, *, sequence: int = -1, reason: str = GAP) -> None:
        """A sequence gap (or ``checksum_mismatch``) on a synced book: it resyncs."""
        now = time.time_ns()
        self.gaps += 1
        if self.broken_since.get(symbol) is None:
            self.broken_since[symbol] = now
        self.log.add(symbol, reason, detail=detail, sequence=sequence, ts_recv_ns=now)
        self._set(symbol, RESYNCING, f"requesting a fresh snapshot after: {detail}", sequence=sequence,
                  now=now)

    def resyncing(self, symbol: str, detail: str, *, sequence: int = -1) -> None:
        """The book waits for a fresh snapshot for a reason that is not a gap (e.g. the venue said so)."""
        if self.broken_since.get(symbol) is None:
            self.broken_since[symbol] = time.time_ns()
        self._set(symbol, RESYNCING, detail, sequence=sequence)

    def sync_done(self, symbol: str, detail: str, *, sequence: int = -1) -> None:
        """The book is synced again; closes the untrusted window with a ``recovered`` row."""
        now = time.time_ns()
        was = self.state.get(symbol)
        self._set(symbol, SYNCED, detail, sequence=sequence, now=now)
        since = self.broken_since.get(symbol)
        self.broken_since[symbol] = None
        if was == RESYNCING and since is not None:
            self.resyncs += 1
            self.log.add(symbol, RECOVERED, detail=f"book untrusted for {(now - since) / 1e9:.3f} s",
                         sequence=sequence, ts_recv_ns=now, ts_event_ns=since, until_ns=now)

    def _set(self, symbol: str, state: str, detail: str, *, sequence: int = -1,
             now: int | None = None) -> None:
        self.state[symbol] = state
        self.log.add(symbol, state, detail=detail, sequence=sequence, ts_recv_ns=now)
