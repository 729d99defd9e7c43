"""Synthetic inputs for the failover stage: one market served by two sources, STATUS rows, a config."""

from __future__ import annotations

import pyarrow as pa

from tapeflow.live.failover_config import FailoverConfig, InstrumentSpec, SourceSpec
from tapeflow.schemas.records import STATUS, TRADE

MS = 1_000_000
SECOND = 1_000 * MS
VENUES = {"pri": "venue-a", "sec": "venue-b"}


def config(*, stale_ms: int = 500, hold_ms: int = 2_000, lookback_ms: int = 60_000,
           warm_books: bool = False, grace_ms: int = 500) -> FailoverConfig:
    """Primary ``pri`` (venue-a X), fallback ``sec`` (venue-b X) for the instrument ``X-PERP``."""
    return FailoverConfig(
        (SourceSpec("pri", "venue-a"), SourceSpec("sec", "venue-b")),
        (InstrumentSpec("X-PERP", (("pri", "X"), ("sec", "X"))),),
        stale_after_ns=stale_ms * MS, hold_ns=hold_ms * MS, lookback_ns=lookback_ms * MS,
        warm_books=warm_books, start_grace_ns=grace_ms * MS)


def market(n: int, *, ties_every: int = 5) -> list[tuple[int, int]]:
    """``n`` trades as ``(ts_event_ns, price)``: 10 ms apart, every ``ties_every``-th one sharing the
    previous one's venue time (several prints of one aggressive order)."""
    out, ts = [], 1_700_000_000 * SECOND
    for i in range(n):
        if i % ties_every:
            ts += 10 * MS
        out.append((ts, 100_000 + i))
    return out


def trades(source: str, rows: list[tuple[int, int]], *, recv_offset_ns: int = 0) -> pa.Table:
    """The ``trade`` rows of ``rows`` as ``source`` delivers them (its venue code, its capture time)."""
    return TRADE.table({
        "ts_event_ns": [t for t, _ in rows], "ts_recv_ns": [t + recv_offset_ns for t, _ in rows],
        "sequence": list(range(len(rows))), "trade_id": [str(p) for _, p in rows],
        "price_nanos": [p for _, p in rows], "size_nanos": [1] * len(rows),
        "aggressor_side": [ord("B")] * len(rows), "flags": [0] * len(rows),
    }, constants={"venue": VENUES[source], "symbol": "X"})


def status(source: str, *states: str, symbol: str = "X") -> pa.Table:
    """STATUS rows of ``source`` in these states."""
    n = len(states)
    return STATUS.table({"ts_event_ns": [-1] * n, "ts_recv_ns": [0] * n, "state": list(states),
                         "sequence": [-1] * n, "until_ns": [-1] * n, "detail": [""] * n},
                        constants={"venue": VENUES[source], "symbol": symbol})
