"""Running a connectors-B live client against the replay server until the tape is served."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from tapeflow.live.frames import LiveBatch
from tapeflow.replay import ReplayServer
from tapeflow.replay.protocol import Frame
from tapeflow.schemas import ALL_RECORDS, concat
from tapeflow.schemas.records import STATUS
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.livesync import LIVE_FLAGS
from tapeflow.venues.resubscribe import ResubscribingClient


async def _drive(client: ResubscribingClient, srv: ReplayServer, idle_s: float, limit_s: float
                 ) -> list[LiveBatch]:
    batches: list[LiveBatch] = []

    async def consume() -> None:
        async for batch in client.batches():
            batches.append(batch)

    task = asyncio.get_running_loop().create_task(consume())
    start = seen_at = time.monotonic()
    seen = 0
    while time.monotonic() - start < limit_s and not task.done():
        await asyncio.sleep(0.05)
        if len(batches) != seen:
            seen, seen_at = len(batches), time.monotonic()
        elif srv.finished and time.monotonic() - seen_at > idle_s and not client.live_sync.broken():
            break
    client.close()
    await asyncio.wait_for(task, 10)
    return batches


Faults = Callable[[list[Frame]], list[str]] | Sequence[str]


def run_against_replay(make_client: Callable[[ReplayServer], ResubscribingClient], fmt: str,
                       paths: Sequence[Path], *, faults: Faults = (), speed: float | None = None,
                       idle_s: float = 0.5, limit_s: float = 40.0
                       ) -> tuple[ResubscribingClient, ReplayServer, list[LiveBatch]]:
    """Serve ``paths`` with the replay server (in its own thread, as a remote venue would be), run
    ``make_client(srv)`` until the whole tape was served, nothing arrived for ``idle_s`` and no
    book waits for a resync; then close the client.

    Args:
        faults: fault specs, or a function of the server's tape returning them.
        speed: replay speed (None: as fast as the client reads). Paced replay lets every
            subscription of the handshake land before the first frame it covers is due.

    Returns:
        the client (its ``stats``), the server (``injected``) and every batch it yielded.
    """
    server = ReplayServer(fmt, paths, speed=speed)
    for spec in faults(server.tape) if callable(faults) else faults:
        server.add_fault(spec)
    with server.run_in_thread() as srv:
        client = make_client(srv)
        batches = asyncio.run(_drive(client, srv, idle_s, limit_s))
    return client, srv, batches


def records(batches: Sequence[LiveBatch]) -> dict[str, pa.Table]:
    """Every batch's records concatenated per record type."""
    names = sorted({n for b in batches for n in b.records})
    return {n: concat(ALL_RECORDS[n], [b.records[n] for b in batches if n in b.records]) for n in names}


def status(batches: Sequence[LiveBatch]) -> pa.Table:
    """Every batch's STATUS rows."""
    return concat(STATUS, [b.status for b in batches])


def journal_matches_live(journal: Path, venue: str, live: dict[str, pa.Table]) -> dict[str, int]:
    """Decode the journal with the venue's batch decoder and compare with the live records.

    Rows must be equal column by column, except the ``F_GAP``/``F_MAYBE_BAD_BOOK`` bits the live
    sync adds on a broken book. Returns the row counts compared per record type.
    """
    files = sorted((journal / venue).glob("*.jsonl"))
    assert files, f"no journal files under {journal / venue}"
    batch = merge(list(get_format(venue).decode(files)))
    assert sorted(batch) == sorted(live)
    for name, table in live.items():
        want = batch[name]
        if "flags" in table.schema.names:
            mask = ~np.uint8(LIVE_FLAGS)
            table = table.set_column(table.schema.get_field_index("flags"), "flags",
                                     pa.array(table.column("flags").to_numpy() & mask, pa.uint8()))
            want = want.set_column(want.schema.get_field_index("flags"), "flags",
                                   pa.array(want.column("flags").to_numpy() & mask, pa.uint8()))
        assert table.to_pylist() == want.to_pylist(), name
    return {n: t.num_rows for n, t in live.items()}
