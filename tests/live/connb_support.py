"""Helpers shared by the connectors-B tests (Kraken, Coinbase, OKX live sync and clients)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernels.reference import VALID
from tapeflow.book.l2 import replay_l2
from tapeflow.schemas.records import F_LAST
from tapeflow.venues.base import Rejects
from tapeflow.venues.livesync import LiveSync, SyncEvent
from tapeflow.wire.capture import RECV, CaptureLine, read_capture


def received(path: Path) -> list[CaptureLine]:
    """The received websocket frames of a capture file, in order."""
    return [ln for ln in read_capture(path, Rejects("test")) if ln.kind == RECV]


def feed(sync: LiveSync, lines: Sequence[CaptureLine]) -> list[SyncEvent]:
    """Feed frames to a live sync; every event it reported, in order."""
    events: list[SyncEvent] = []
    for ln in lines:
        events += sync.feed(ln.recv_ns, ln.payload, ln.location)
    return events


def of_symbol(table: pa.Table, symbol: str) -> pa.Table:
    return table.filter(pc.equal(table.column("symbol"), symbol))


def valid_message_ends(deltas: pa.Table, symbol: str) -> dict[int, tuple[int, int, int, int, int]]:
    """``ts_recv_ns -> (status, bid, bid size, ask, ask size)`` at each message end (F_LAST) of one symbol."""
    rows = of_symbol(deltas, symbol)
    rep = replay_l2(rows, levels=1).bbo
    ends = np.flatnonzero(rows.column("flags").to_numpy() & F_LAST)
    recv = rows.column("ts_recv_ns").to_numpy()
    return {int(recv[i]): (int(rep["status"][i]), int(rep["bid_px"][i]), int(rep["bid_sz"][i]),
                           int(rep["ask_px"][i]), int(rep["ask_sz"][i])) for i in ends}


def published_valid_is_true(faulty: pa.Table, clean: pa.Table, symbol: str) -> tuple[int, list[int]]:
    """Compare a faulted stream's book with the clean stream's at every message end.

    Returns:
        ``(valid, wrong)``: how many message ends the faulted book published as VALID, and the
        capture times of those whose top of book differs from the clean book at the same frame
        (a broken book published as valid).
    """
    truth = valid_message_ends(clean, symbol)
    got = valid_message_ends(faulty, symbol)
    valid = [t for t, v in got.items() if v[0] == VALID]
    wrong = [t for t in valid if t in truth and got[t][1:] != truth[t][1:]]
    return len(valid), wrong
