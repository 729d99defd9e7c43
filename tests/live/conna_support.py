"""Helpers shared by the connectors-A live tests (Binance and Bybit clients against the replay server)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kernels.reference import RESYNC
from tapeflow.book.l2 import book_snapshots, replay_l2
from tapeflow.book.rebuild import snapshots_for_format
from tapeflow.live import Connector, LiveBatch, iterate_in_thread
from tapeflow.replay import ReplayServer
from tapeflow.schemas import concat
from tapeflow.schemas.records import (
    ALL_RECORDS,
    F_GAP,
    F_MAYBE_BAD_BOOK,
    F_SNAPSHOT,
    F_SUPERSEDED,
    L2_CLEAR,
)
from tapeflow.venues import get_format
from tapeflow.venues.base import merge

SECOND_NS = 1_000_000_000


def run_client(srv: ReplayServer, client: Connector, is_data: Callable[[bytes], bool],
               on_batch: Callable[[LiveBatch], None] | None = None, timeout_s: float = 90) -> list[LiveBatch]:
    """Pull batches until the tape is finished and every data frame served has arrived.

    ``is_data`` tells a tape frame from the handshake replies and pongs the server adds.
    """
    batches: list[LiveBatch] = []
    received = 0
    deadline = time.monotonic() + timeout_s
    it = iterate_in_thread(client)
    try:
        while time.monotonic() < deadline:
            b = it.poll(0.2)
            if b is not None:
                batches.append(b)
                received += sum(f.channel == "ws" and is_data(f.data) for f in b.frames)
                if on_batch is not None:
                    on_batch(b)
            st = srv.status()
            if st["finished"] and received >= st["frames_served"] and not client.rest_requests_in_flight:
                # Synthesized snapshots (mid-stream joins) count as received too: take whatever
                # is still on its way until the feed is quiet.
                while (b := it.poll(0.5)) is not None:
                    batches.append(b)
                    if on_batch is not None:
                        on_batch(b)
                break
        else:
            pytest.fail(f"replay not finished after {timeout_s} s: {srv.status()}")
    finally:
        it.close()
    return batches


def live_tables(batches: list[LiveBatch]) -> dict[str, pa.Table]:
    """Each record type's rows over all batches."""
    names = {n for b in batches for n in b.records}
    return {n: concat(ALL_RECORDS[n], [b.records[n] for b in batches if n in b.records]) for n in names}


def statuses(batches: list[LiveBatch]) -> list[dict]:
    """Every STATUS row, in order."""
    return [r for b in batches for r in b.status.to_pylist()]


def journal_file(root: Path, venue: str) -> Path:
    """The one journal file of ``venue`` under ``root``."""
    files = sorted((root / venue).glob("*.jsonl"))
    assert len(files) == 1, files
    return files[0]


def without_bits(t: pa.Table, bits: int) -> pa.Table:
    """``t`` with ``bits`` cleared in its flags."""
    i = t.schema.get_field_index("flags")
    flags = pc.bit_wise_and(t.column("flags"), pa.scalar(0xFF ^ bits, pa.uint8()))
    return t.set_column(i, t.schema.field(i), flags)


def assert_journal_equals_live(fmt: str, journal: Path, live: dict[str, pa.Table], *,
                               live_bits: int = F_MAYBE_BAD_BOOK) -> None:
    """The journal decoded as a batch equals the live rows (but ``live_bits``), and so do its books."""
    batch = merge(list(get_format(fmt).decode([journal])))
    for name in ("book_delta", "trade", "quote", "rejected"):
        want = batch.get(name, ALL_RECORDS[name].empty_table())
        got = live.get(name, ALL_RECORDS[name].empty_table())
        if name == "book_delta":
            assert got.num_rows == want.num_rows and got.num_rows > 0
            assert without_bits(got, live_bits).equals(without_bits(want, live_bits & ~F_MAYBE_BAD_BOOK)), \
                "live book rows differ from the batch decode"
        else:
            assert got.equals(want), f"live {name} rows differ from the batch decode"
    if live_bits == F_MAYBE_BAD_BOOK:  # the same book events: `tapeflow book` on the journal agrees
        snaps, _ = snapshots_for_format(fmt, [journal], levels=10, interval_ns=SECOND_NS)
        assert book_snapshots(live["book_delta"], levels=10, interval_ns=SECOND_NS).equals(snaps)


def assert_nothing_valid_while_broken(deltas: pa.Table) -> int:
    """From each F_GAP row to the next snapshot: the book is in RESYNC and every row is flagged
    maybe-bad or superseded. Returns the number of F_GAP rows."""
    gaps_seen = 0
    for sym in sorted(set(deltas.column("symbol").to_pylist())):
        d = deltas.filter(pc.equal(deltas.column("symbol"), sym))
        status = replay_l2(d, levels=1).bbo["status"]
        flags = d.column("flags").to_numpy()
        clears = np.flatnonzero((d.column("action").to_numpy() == L2_CLEAR) & (flags & F_SNAPSHOT != 0))
        for g in np.flatnonzero(flags & F_GAP):
            gaps_seen += 1
            nxt = clears[clears > g]
            end = int(nxt[0]) if len(nxt) else d.num_rows
            assert (status[g:end] == RESYNC).all(), f"{sym}: a row after the gap at {g} is not RESYNC"
            assert ((flags[g:end] & (F_MAYBE_BAD_BOOK | F_SUPERSEDED)) != 0).all()
    return gaps_seen
