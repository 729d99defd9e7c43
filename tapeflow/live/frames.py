"""What a live connector hands on: raw frames, micro-batches of decoded records, STATUS rows."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from tapeflow.schemas import RecordType
from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK, F_SNAPSHOT, L2_CLEAR, STATUS

WS, REST = "ws", "rest"
_EMPTY_STATUS = STATUS.empty_table()


class RawFrame(NamedTuple):
    """One frame as received (a named tuple: one is made per frame, at ~100k frames/s, and a frozen
    dataclass costs several times a tuple to build).

    Attributes:
        venue: the venue code the frame is journaled under (``binance-usdm``, ``bybit``...).
        ts_recv_ns: capture time, ns UTC (taken when the frame was read off the socket).
        data: the payload bytes exactly as received (a REST body may carry a prefix the venue's
            decoder needs, e.g. the symbol Binance leaves out; see the venue's client).
        channel: ``ws`` for a websocket frame, ``rest`` for a REST response.
    """

    venue: str
    ts_recv_ns: int
    data: bytes
    channel: str = WS


@dataclass
class LiveBatch:
    """One micro-batch of a live connector.

    Attributes:
        frames: the raw frames of the batch, in arrival order (already in the journal).
        records: the venue decoder's tables for these frames (``book_delta``, ``trade``,
            ``quote``, ``rejected``...), exactly what a batch decode of the journal gives.
        status: STATUS rows of the connection and sync transitions during the batch.
        locations: each frame's ``file:line`` in the journal (``live:<n>`` without a journal).
        awake_ns: when the connector last read its socket with every frame received before then
            in this batch or an earlier one (-1: the client does not say; a batch of no frames,
            no records and no STATUS rows says only this: the connection was read and was quiet).
            The failover stage judges silence on it (docs/failover.md).
    """

    frames: list[RawFrame]
    records: dict[str, pa.Table]
    status: pa.Table
    locations: list[str] = field(default_factory=list)
    awake_ns: int = -1

    @property
    def empty(self) -> bool:
        """Whether the batch carries nothing but its awake time (no frame, record or STATUS row)."""
        return not self.frames and not self.status.num_rows and \
            not any(t.num_rows for t in self.records.values())

    def get(self, record: RecordType) -> pa.Table:
        """The batch's rows of ``record`` (an empty table when there are none)."""
        return self.records.get(record.name, record.empty_table())

    def counts(self) -> dict[str, int]:
        """Rows per record type, STATUS included."""
        out = {k: t.num_rows for k, t in self.records.items() if t.num_rows}
        if self.status.num_rows:
            out["status"] = self.status.num_rows
        return out


class StatusLog:
    """Builder of STATUS rows for one venue; drained into each batch."""

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self._rows: list[dict[str, Any]] = []

    def add(self, symbol: str, state: str, *, detail: str = "", sequence: int = -1,
            ts_recv_ns: int | None = None, ts_event_ns: int = -1, until_ns: int = -1) -> None:
        """Record one transition (``ts_recv_ns`` defaults to now)."""
        now = time.time_ns() if ts_recv_ns is None else ts_recv_ns
        self._rows.append(dict(ts_event_ns=ts_event_ns, ts_recv_ns=now, venue=self.venue, symbol=symbol,
                               state=state, sequence=sequence, until_ns=until_ns, detail=detail))

    def __len__(self) -> int:
        return len(self._rows)

    def drain(self) -> pa.Table:
        """The rows so far as a STATUS table; the log is empty afterwards."""
        rows, self._rows = self._rows, []
        if not rows:
            return _EMPTY_STATUS
        return STATUS.table({n: [r[n] for r in rows] for n in STATUS.column_names})


def flag_rows(deltas: pa.Table, spans: list[tuple[int, int, set[str]]],
              gaps: list[tuple[int, int, str]],
              healed: Sequence[tuple[int, int, set[str]]] = ()) -> pa.Table:
    """Set the live-only flags on a batch's ``book_delta`` rows.

    Args:
        deltas: the rows.
        spans: ``(start, end, symbols)``: rows ``start:end`` of these symbols were written while
            their book was not synced -> ``F_MAYBE_BAD_BOOK`` (no consumer takes them for a valid
            book; the kernels hold the book in RESYNC from the ``F_GAP``).
        gaps: ``(start, end, symbol)``: the first row of ``symbol`` in ``start:end`` -> ``F_GAP``.
        healed: ``(start, end, symbols)``: rows ``start:end`` were written by the one frame that
            synced these symbols' books (a snapshot whose bridging diff had already arrived). The
            frame wrote, in book order, the buffered diffs the snapshot contains, then the
            snapshot, then the diffs after it: the rows of a symbol before its (last) snapshot
            clear row were applied to a broken book -> ``F_MAYBE_BAD_BOOK``, as they get when
            the snapshot comes before its bridge (the sync then completes on a later frame).
    """
    symbols = deltas.column("symbol").to_numpy(zero_copy_only=False)
    add = np.zeros(deltas.num_rows, dtype=np.uint8)
    for start, end, broken in spans:
        hit = np.isin(symbols[start:end], list(broken))
        add[start:end] |= np.where(hit, F_MAYBE_BAD_BOOK, 0).astype(np.uint8)
    if healed:
        action = deltas.column("action").to_numpy()
        snap = deltas.column("flags").to_numpy() & F_SNAPSHOT != 0
        for start, end, synced in healed:
            for symbol in synced:
                mine = symbols[start:end] == symbol
                clears = np.flatnonzero(mine & (action[start:end] == L2_CLEAR) & snap[start:end])
                if len(clears):
                    head = np.flatnonzero(mine[: clears[-1]])
                    add[start + head] |= F_MAYBE_BAD_BOOK
    for start, end, symbol in gaps:
        hit = np.flatnonzero(symbols[start:end] == symbol)
        if len(hit):
            add[start + hit[0]] |= F_GAP
    if not add.any():
        return deltas
    flags = deltas.column("flags").to_numpy() | add
    i = deltas.schema.get_field_index("flags")
    return deltas.set_column(i, deltas.schema.field(i), pa.array(flags, type=pa.uint8()))
