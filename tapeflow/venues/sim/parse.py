"""``sim`` wire -> ``order_event`` + ``trade`` (+ ``book_delta`` aggregated from L3) records.

Executions follow Databento MBO semantics so any L3 book built for DBN reads this feed too: an
``E`` line becomes ``T`` (aggressor; the book does not change), ``F`` (the resting fill; no change)
and ``C`` (the resting order loses the filled size), sharing the line's sequence, ``F_LAST`` on
the ``C``. An ``H`` line (hidden liquidity) becomes a lone ``T``.

Two paths give the same rows and rejects: the block path (the default,
:mod:`tapeflow.venues.sim.block`: compiled scan, rows built as columns) and the per-line path
(``fast=False``, :class:`_State` below, which the live sync feeds frame by frame: the reference the
block path is tested against). Both read a refused line through
:func:`tapeflow.venues.sim.lines.parse_line`.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path

from tapeflow.errors import FormatError
from tapeflow.schemas.records import (
    ASK,
    BID,
    BOOK_DELTA,
    F_HIDDEN,
    F_LAST,
    F_SNAPSHOT,
    L3_ADD,
    L3_CANCEL,
    L3_CLEAR,
    L3_FILL,
    L3_TRADE,
    NO_SIDE,
    ORDER_EVENT,
    TRADE,
)
from tapeflow.venues.columns import Columns
from tapeflow.venues.sim.block import decode_file
from tapeflow.venues.sim.l2 import l3_to_l2
from tapeflow.venues.sim.lines import OUTSIDE_SNAPSHOT, LineError, parse_line
from tapeflow.venues.sim.messages import HEADER
from tapeflow.wire.capture import Decoded
from tapeflow.wire.rejects import Rejects

VENUE = "sim"
CHUNK_LINES = 100_000
_OTHER = {BID: ASK, ASK: BID}


def decode(paths: Sequence[Path], *, fast: bool = True) -> Iterator[Decoded]:
    """Decode ``sim`` files into chunks of about ``CHUNK_LINES`` lines each.

    The symbol is the file's folder name (``sim/<symbol>/<date>.events.csv.gz``). Bad lines
    become ``rejected`` rows; a ``book_delta`` table aggregated from the L3 events rides along.

    Args:
        paths: the files, decoded one after the other.
        fast: the block path (compiled scan, rows as columns); False: line by line (the reference).

    Raises:
        FormatError: a file whose first line is not the ``sim`` header.
    """
    for path in paths:
        if fast:
            yield from decode_file(Path(path), CHUNK_LINES, VENUE)
        else:
            yield from _decode_file(Path(path))


def _decode_file(path: Path) -> Iterator[Decoded]:
    symbol = path.parent.name
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rb") as fh:
        header = fh.readline()
        if header.rstrip(b"\r\n").decode("ascii", "replace") != HEADER:
            raise FormatError(f"{path} is not a sim file: header was {header[:80]!r}, expected {HEADER!r}")
        state = _State(path, symbol)
        lineno = 1
        reported = 0  # Decoded.bytes_read is the increment since the previous chunk
        for line in fh:
            lineno += 1
            state.line(line, lineno)
            if state.lines >= CHUNK_LINES and not state.in_snapshot:
                position = _position(fh, gz)
                yield state.flush(position - reported)
                reported = position
        state.end_snapshot()
        yield state.flush(_position(fh, gz) - reported)


def _position(fh: object, gz: bool) -> int:
    # compressed bytes consumed, so progress matches the file size on disk
    inner = getattr(fh, "fileobj", None) if gz else fh
    return int(inner.tell()) if inner is not None and hasattr(inner, "tell") else 0


class _State:
    def __init__(self, path: Path, symbol: str) -> None:
        self.path, self.symbol = path, symbol
        self.events = Columns(ORDER_EVENT)
        self.trades = Columns(TRADE)
        self.rejects = Rejects(VENUE)
        self.levels: dict[tuple[int, int], int] = {}
        self.lines = 0
        self.in_snapshot = False
        self._snap_last = -1

    def line(self, raw: bytes, lineno: int) -> None:
        self.lines += 1
        loc = f"{self.path}:{lineno}"
        try:
            ts_event, ts_recv, seq, typ, oid, side, price, size, seq_s = parse_line(raw)
        except LineError as exc:
            self._reject(exc.reason, exc.detail, loc, raw, exc.ts_recv_ns, exc.ts_event_ns)
            return
        if typ != "S":
            self.end_snapshot()
        common = dict(ts_event_ns=ts_event, ts_recv_ns=ts_recv, venue=VENUE, symbol=self.symbol, sequence=seq)
        add = self.events.append
        if typ == "R":
            add(**common, order_id=0, action=L3_CLEAR, side=NO_SIDE, price_nanos=0, size_nanos=0,
                flags=F_SNAPSHOT)
            self.in_snapshot = True
            self._snap_last = len(self.events) - 1
        elif typ == "S" or typ == "A":
            flags = F_SNAPSHOT if typ == "S" else F_LAST
            if typ == "S" and not self.in_snapshot:
                self._reject("out_of_range", OUTSIDE_SNAPSHOT, loc, raw, ts_recv, ts_event)
                return
            add(**common, order_id=oid, action=L3_ADD, side=side, price_nanos=price, size_nanos=size,
                flags=flags)
            if typ == "S":
                self._snap_last = len(self.events) - 1
        elif typ == "D":
            add(**common, order_id=oid, action=L3_CANCEL, side=side, price_nanos=price, size_nanos=size,
                flags=F_LAST)
        else:
            aggressor = _OTHER[side]
            add(**common, order_id=0, action=L3_TRADE, side=aggressor, price_nanos=price, size_nanos=size,
                flags=F_LAST if typ == "H" else 0)
            if typ == "E":
                add(**common, order_id=oid, action=L3_FILL, side=side, price_nanos=price, size_nanos=size,
                    flags=0)
                add(**common, order_id=oid, action=L3_CANCEL, side=side, price_nanos=price, size_nanos=size,
                    flags=F_LAST)
            self.trades.append(**common, trade_id=seq_s, price_nanos=price, size_nanos=size,
                               aggressor_side=aggressor, flags=F_HIDDEN if typ == "H" else 0)

    def _reject(
        self, reason: str, detail: str, loc: str, raw: bytes, ts_recv: int = -1, ts_event: int = -1
    ) -> None:
        self.rejects.add(
            reason,
            detail,
            loc,
            raw.rstrip(b"\r\n"),
            ts_recv_ns=ts_recv,
            ts_event_ns=ts_event,
            symbol=self.symbol,
        )

    def end_snapshot(self) -> None:
        if self.in_snapshot:
            # the snapshot's last row re-anchors the book: VALID from here on
            self.events.mark(self._snap_last, "flags", F_LAST)
            self.in_snapshot = False

    def flush(self, bytes_read: int) -> Decoded:
        events = self.events.drain()
        tables = {
            ORDER_EVENT.name: events,
            TRADE.name: self.trades.drain(),
            BOOK_DELTA.name: l3_to_l2(events, self.levels),
        }
        if len(self.rejects):
            tables["rejected"] = self.rejects.table()
        self.events, self.trades, self.rejects = Columns(ORDER_EVENT), Columns(TRADE), Rejects(VENUE)
        self.lines = 0
        return Decoded(tables=tables, bytes_read=bytes_read, source=str(self.path))


__all__ = ["CHUNK_LINES", "VENUE", "decode", "l3_to_l2"]
