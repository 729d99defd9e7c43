"""``sim`` wire -> ``order_event`` + ``trade`` (+ ``book_delta`` aggregated from L3) records.

Executions follow Databento MBO semantics so any L3 book built for DBN reads this feed too: an
``E`` line becomes ``T`` (aggressor; the book does not change), ``F`` (the resting fill; no change)
and ``C`` (the resting order loses the filled size), sharing the line's sequence, ``F_LAST`` on
the ``C``. An ``H`` line (hidden liquidity) becomes a lone ``T``.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from tapeflow.errors import BadNumber, FormatError, TapeflowError
from tapeflow.schemas.records import (
    ASK,
    BID,
    BOOK_DELTA,
    F_HIDDEN,
    F_LAST,
    F_MAYBE_BAD_BOOK,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
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
from tapeflow.venues.sim.messages import COLUMNS, HEADER, TYPES
from tapeflow.wire.capture import Decoded
from tapeflow.wire.numbers import to_nanos
from tapeflow.wire.rejects import Rejects

VENUE = "sim"
CHUNK_LINES = 100_000
_SIDE = {"B": BID, "A": ASK}
_OTHER = {BID: ASK, ASK: BID}


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode ``sim`` files into chunks of about ``CHUNK_LINES`` lines each.

    The symbol is the file's folder name (``sim/<symbol>/<date>.events.csv.gz``). Bad lines
    become ``rejected`` rows; a ``book_delta`` table aggregated from the L3 events rides along.

    Raises:
        FormatError: a file whose first line is not the ``sim`` header.
    """
    for path in paths:
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
        text = raw.decode("ascii", "replace").rstrip("\r\n")
        parts = text.split(",")
        if len(parts) != len(COLUMNS):
            reason = "truncated" if len(parts) < len(COLUMNS) else "bad_line"
            self._reject(reason, f"{len(parts)} fields, expected {len(COLUMNS)}", loc, raw)
            return
        ts_event_s, ts_recv_s, seq_s, typ, oid_s, side_s, price_s, size_s = parts
        try:
            ts_event, ts_recv, seq, oid = (
                _int(v, n)
                for v, n in (
                    (ts_event_s, "ts_event"),
                    (ts_recv_s, "ts_recv"),
                    (seq_s, "seq"),
                    (oid_s, "order_id"),
                )
            )
            price, size = to_nanos(price_s), to_nanos(size_s)
        except BadNumber as exc:
            self._reject(exc.reason, f"{exc.text!r} in {text[:120]!r}", loc, raw)
            return
        if len(typ) != 1 or typ not in TYPES:
            self._reject("unknown_message", f"type {typ!r}", loc, raw, ts_recv, ts_event)
            return
        side = _SIDE.get(side_s)
        if side is None:
            self._reject("bad_side", f"side {side_s!r}", loc, raw, ts_recv, ts_event)
            return
        if typ in "ADES" and (size == 0 or oid == 0):
            self._reject(
                "out_of_range",
                f"{typ} needs order_id and size > 0, got {oid_s!r}, {size_s!r}",
                loc,
                raw,
                ts_recv,
                ts_event,
            )
            return
        if typ != "S":
            self.end_snapshot()
        common = dict(ts_event_ns=ts_event, ts_recv_ns=ts_recv, venue=VENUE, symbol=self.symbol, sequence=seq)
        add = self.events.append
        if typ == "R":
            add(
                **common,
                order_id=0,
                action=L3_CLEAR,
                side=NO_SIDE,
                price_nanos=0,
                size_nanos=0,
                flags=F_SNAPSHOT,
            )
            self.in_snapshot = True
            self._snap_last = len(self.events) - 1
        elif typ == "S" or typ == "A":
            flags = F_SNAPSHOT if typ == "S" else F_LAST
            if typ == "S" and not self.in_snapshot:
                self._reject("out_of_range", "snapshot order outside a snapshot", loc, raw, ts_recv, ts_event)
                return
            add(
                **common,
                order_id=oid,
                action=L3_ADD,
                side=side,
                price_nanos=price,
                size_nanos=size,
                flags=flags,
            )
            if typ == "S":
                self._snap_last = len(self.events) - 1
        elif typ == "D":
            add(
                **common,
                order_id=oid,
                action=L3_CANCEL,
                side=side,
                price_nanos=price,
                size_nanos=size,
                flags=F_LAST,
            )
        else:
            aggressor = _OTHER[side]
            add(
                **common,
                order_id=0,
                action=L3_TRADE,
                side=aggressor,
                price_nanos=price,
                size_nanos=size,
                flags=F_LAST if typ == "H" else 0,
            )
            if typ == "E":
                add(
                    **common,
                    order_id=oid,
                    action=L3_FILL,
                    side=side,
                    price_nanos=price,
                    size_nanos=size,
                    flags=0,
                )
                add(
                    **common,
                    order_id=oid,
                    action=L3_CANCEL,
                    side=side,
                    price_nanos=price,
                    size_nanos=size,
                    flags=F_LAST,
                )
            self.trades.append(
                **common,
                trade_id=seq_s,
                price_nanos=price,
                size_nanos=size,
                aggressor_side=aggressor,
                flags=F_HIDDEN if typ == "H" else 0,
            )

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


def _int(text: str, name: str) -> int:
    if not text.isdigit():
        negative = text.startswith("-") and text[1:].isdigit()
        raise BadNumber("negative" if negative else "bad_number", f"{name}={text}")
    value = int(text)
    if value > 2**63 - 1:
        raise BadNumber("out_of_range", f"{name}={text}")
    return value


def l3_to_l2(order_events: pa.Table, levels: dict[tuple[int, int], int] | None = None) -> pa.Table:
    """Aggregate the L3 events of ONE instrument into L2 ``book_delta`` rows (vectorized).

    Each ``A`` adds its size to its level and each ``C`` removes its size; the row carries the
    level's new absolute size (``U``, or ``D`` when it reaches 0). ``R`` clears the book. ``T``
    and ``F`` change nothing (the ``C`` that follows does), so they give no row. Flags and
    sequence are copied, so ``F_SNAPSHOT``/``F_LAST`` re-anchor an L2 replay exactly where they
    re-anchor the L3 book.

    Args:
        order_events: an ``order_event`` table in arrival order (one venue/symbol); modify
            (``M``) rows are not supported.
        levels: level sizes ``{(side, price_nanos): size_nanos}`` before the first row, updated
            in place to the state after the last one (carry it between chunks).

    A cancel that would take a level below zero (an order the stream never added) leaves the
    level at 0 and flags that row ``F_MAYBE_BAD_BOOK``: bad input is flagged, not fatal.

    Raises:
        TapeflowError: a modify row.
    """
    levels = {} if levels is None else levels
    action = order_events.column("action").to_numpy()
    if (action == ord("M")).any():
        raise TapeflowError(
            f"l3_to_l2 does not support modify rows (first at row {int(np.argmax(action == 77))})"
        )
    rows = np.flatnonzero((action == L3_ADD) | (action == L3_CANCEL) | (action == L3_CLEAR))
    cols = {
        n: order_events.column(n).to_numpy()[rows]
        for n in ("ts_event_ns", "ts_recv_ns", "sequence", "side", "price_nanos", "size_nanos", "flags")
    }
    act = action[rows]
    out_size = np.zeros(len(rows), np.int64)
    clears = np.flatnonzero(act == L3_CLEAR)
    bounds = [0, *clears.tolist(), len(rows)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if lo < hi and act[lo] == L3_CLEAR:
            levels.clear()
            lo += 1
        if lo < hi:
            out_size[lo:hi] = _segment_levels(
                levels, act[lo:hi], cols["side"][lo:hi], cols["price_nanos"][lo:hi], cols["size_nanos"][lo:hi]
            )
    out_size, flags = _flag_negative(out_size, cols["flags"])
    l2_action = np.where(act == L3_CLEAR, L2_CLEAR, np.where(out_size > 0, L2_SET, L2_DELETE)).astype(
        np.uint8
    )
    side = np.where(act == L3_CLEAR, NO_SIDE, cols["side"]).astype(np.uint8)
    price = np.where(act == L3_CLEAR, 0, cols["price_nanos"])
    symbol = order_events.column("symbol")
    venue = order_events.column("venue")
    return BOOK_DELTA.table(
        dict(
            ts_event_ns=cols["ts_event_ns"],
            ts_recv_ns=cols["ts_recv_ns"],
            venue=venue.take(pa.array(rows)),
            symbol=symbol.take(pa.array(rows)),
            sequence=cols["sequence"],
            side=side,
            action=l2_action,
            price_nanos=price,
            size_nanos=out_size,
            flags=flags,
        )
    )


def _segment_levels(
    levels: dict[tuple[int, int], int], act: np.ndarray, side: np.ndarray, price: np.ndarray, size: np.ndarray
) -> np.ndarray:
    """Level size after each row of a clear-free segment: a cumulative sum per (side, price)."""
    delta = np.where(act == L3_ADD, size, -size).astype(np.int64)
    key = price.astype(np.int64) * 2 + (side == ASK)
    uniq, inverse = np.unique(key, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    csum = np.cumsum(delta[order])
    starts = np.searchsorted(inverse[order], np.arange(len(uniq)))
    before = np.concatenate(([0], csum))[starts]
    init = np.array([levels.get((ASK if k & 1 else BID, int(k >> 1)), 0) for k in uniq], np.int64)
    after = np.empty(len(act), np.int64)
    after[order] = (
        csum
        - np.repeat(before, np.diff(np.append(starts, len(order))))
        + np.repeat(init, np.diff(np.append(starts, len(order))))
    )
    last = np.append(starts[1:], len(order)) - 1
    for k, s in zip(uniq.tolist(), after[order][last].tolist(), strict=True):
        levels[(ASK if k & 1 else BID, k >> 1)] = s
    return after


def _flag_negative(out_size: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bad = out_size < 0
    return np.where(bad, 0, out_size), np.where(bad, flags | F_MAYBE_BAD_BOOK, flags).astype(np.uint8)
