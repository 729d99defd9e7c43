"""The per-line rules of a ``sim`` line: what its eight fields must be, and its reject.

:func:`parse_line` is the reference: the per-line decode (``decode(..., fast=False)`` and the live
sync's :class:`~tapeflow.venues.sim.parse._State`) reads every line through it, and the block
path (:mod:`tapeflow.venues.sim.block`) reads every line its compiled scan or checks refuse
through it, so each reject reason and detail is written here once. What depends on the lines
before (a snapshot order outside a snapshot) is the state's rule, not the line's.
"""

from __future__ import annotations

from typing import NamedTuple

from tapeflow.errors import BadInput, BadNumber
from tapeflow.schemas.records import ASK, BID
from tapeflow.venues.sim.messages import COLUMNS, TYPES
from tapeflow.wire.numbers import to_nanos

SIDES = {"B": BID, "A": ASK}
NEEDS_ORDER = "ADES"  # types whose order_id and size must be > 0
OUTSIDE_SNAPSHOT = "snapshot order outside a snapshot"  # the state's reject detail (out_of_range)


class SimLine(NamedTuple):
    """One accepted line, its numbers exact (prices and sizes in 1e-9 units)."""

    ts_event_ns: int
    ts_recv_ns: int
    seq: int
    type: str
    order_id: int
    side: int
    price_nanos: int
    size_nanos: int
    seq_text: str  # the seq field as written (a trade's id)


class LineError(BadInput):
    """A rejected line, with the times it carried once they could be read (else -1)."""

    def __init__(self, reason: str, detail: str, ts_recv_ns: int = -1, ts_event_ns: int = -1) -> None:
        super().__init__(reason, detail)
        self.ts_recv_ns = ts_recv_ns
        self.ts_event_ns = ts_event_ns


def parse_line(raw: bytes) -> SimLine:
    """One ``sim`` line (its line ending included or not) -> :class:`SimLine`.

    Raises:
        LineError: the line's reject (``truncated``, ``bad_line``, ``bad_number``, ``negative``,
            ``out_of_range``, ``unknown_message``, ``bad_side``).
    """
    text = raw.decode("ascii", "replace").rstrip("\r\n")
    parts = text.split(",")
    if len(parts) != len(COLUMNS):
        reason = "truncated" if len(parts) < len(COLUMNS) else "bad_line"
        raise LineError(reason, f"{len(parts)} fields, expected {len(COLUMNS)}")
    ts_event_s, ts_recv_s, seq_s, typ, oid_s, side_s, price_s, size_s = parts
    try:
        named = ((ts_event_s, "ts_event"), (ts_recv_s, "ts_recv"), (seq_s, "seq"), (oid_s, "order_id"))
        ts_event, ts_recv, seq, oid = (_int(v, n) for v, n in named)
        price, size = to_nanos(price_s), to_nanos(size_s)
    except BadNumber as exc:
        raise LineError(exc.reason, f"{exc.text!r} in {text[:120]!r}") from None
    if len(typ) != 1 or typ not in TYPES:
        raise LineError("unknown_message", f"type {typ!r}", ts_recv, ts_event)
    side = SIDES.get(side_s)
    if side is None:
        raise LineError("bad_side", f"side {side_s!r}", ts_recv, ts_event)
    if typ in NEEDS_ORDER and (size == 0 or oid == 0):
        raise LineError("out_of_range", f"{typ} needs order_id and size > 0, got {oid_s!r}, {size_s!r}",
                        ts_recv, ts_event)
    return SimLine(ts_event, ts_recv, seq, typ, oid, side, price, size, seq_s)


def _int(text: str, name: str) -> int:
    if not text.isdigit():
        negative = text.startswith("-") and text[1:].isdigit()
        raise BadNumber("negative" if negative else "bad_number", f"{name}={text}")
    if len(text.lstrip("0")) > 19:  # before int(): it refuses more than 4,300 digits; int64 has 19
        raise BadNumber("out_of_range", f"{name} has {len(text):,} digits, beyond int64")
    value = int(text)
    if value > 2**63 - 1:
        raise BadNumber("out_of_range", f"{name}={text}")
    return value
