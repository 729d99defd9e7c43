"""OKX v5 ``books`` and ``trades`` captures -> ``book_delta`` and ``trade`` records.

Each instrument's book keeps the wire strings of every level beside the exact nanos, because the
OKX checksum hashes the strings as sent (a size may arrive as "0.10" and hash differently from
"0.1"). Sequence rule: an update's ``prevSeqId`` must equal the previous ``seqId`` (a heartbeat
repeats it), otherwise its first row carries ``F_GAP``; a checksum mismatch flags the next message
the same way.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tapeflow.schemas.records import (
    ASK,
    BID,
    F_GAP,
    F_LAST,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    NO_SIDE,
)
from tapeflow.venues.base import (
    BadNumber,
    Decoded,
    RecordReject,
    SyncedFrameBuffers,
    to_nanos,
)
from tapeflow.venues.capture import RECV, CaptureLine, decode_captures
from tapeflow.venues.okx import messages as m

VENUE = "okx"
CHUNK_ROWS = 100_000


_Reject = RecordReject  # the shared per-record reject, under this module's short name


@dataclass
class InstrumentBook:
    """One instrument's levels: price nanos -> (price string, size string), prices sorted."""

    seq_id: int
    asks: dict[int, tuple[str, str]] = field(default_factory=dict)
    bids: dict[int, tuple[str, str]] = field(default_factory=dict)
    ask_px: list[int] = field(default_factory=list)
    bid_px: list[int] = field(default_factory=list)

    def set(self, side: int, px: int, size_nanos: int, strings: tuple[str, str]) -> None:
        levels, prices = (self.bids, self.bid_px) if side == BID else (self.asks, self.ask_px)
        if size_nanos == 0:
            if levels.pop(px, None) is not None:
                del prices[bisect.bisect_left(prices, px)]
            return
        if px not in levels:
            bisect.insort(prices, px)
        levels[px] = strings

    def checksum(self) -> int:
        n = m.CHECKSUM_LEVELS
        return m.book_checksum([self.bids[p] for p in reversed(self.bid_px[-n:])],
                               [self.asks[p] for p in self.ask_px[:n]])


@dataclass
class BookStats:
    """Checksums and sequence gaps seen while decoding."""

    ok: int = 0
    total: int = 0
    links_ok: int = 0
    links_total: int = 0
    failures: list[str] = field(default_factory=list)


class OkxDecoder(SyncedFrameBuffers):
    """Stateful frame decoder; feed frames in arrival order, take chunks with :meth:`flush`."""

    venue = VENUE

    def __init__(self) -> None:
        self.books: dict[str, InstrumentBook] = {}
        self.stats = BookStats()
        super().__init__()

    def feed(self, line: CaptureLine) -> None:
        """Decode one captured frame; bad frames become ``rejected`` rows."""
        if line.kind != RECV or line.payload.strip() == b"pong":
            return
        inst = ""
        try:
            msg = _loads(line.payload)
            if not isinstance(msg, dict):
                raise _Reject("unknown_message", f"top level is {type(msg).__name__}, not an object")
            if "event" in msg:
                if msg["event"] not in m.CONTROL_EVENTS:
                    raise _Reject("unknown_message", f"event {msg['event']!r}: {msg.get('msg', '')}")
                return
            arg, data = msg.get("arg"), msg.get("data")
            if not isinstance(arg, dict) or not isinstance(data, list):
                raise _Reject("missing_field", "frame lacks 'arg' object or 'data' list")
            channel, inst = arg.get("channel"), str(arg.get("instId", ""))
            if channel in m.BOOK_CHANNELS:
                for item in data:
                    self._book(msg.get("action"), _dict(item), inst, line)
            elif channel in m.TRADE_CHANNELS:
                self._trades(data, line)
            else:
                raise _Reject("unknown_message", f"channel {channel!r}")
        except _Reject as err:
            self.rejects.add(err.reason, err.detail, line.location, line.payload,
                             ts_recv_ns=line.recv_ns, symbol=inst)
            if inst in self.books:
                self._lose_sync(inst)

    def _book(self, action: Any, item: dict[str, Any], inst: str, line: CaptureLine) -> None:
        asks = [(ASK, *_level(raw, "asks")) for raw in _list(item.get("asks"), "asks")]
        bids = [(BID, *_level(raw, "bids")) for raw in _list(item.get("bids"), "bids")]
        seq_id, prev = _int(item, "seqId"), _int(item, "prevSeqId")
        checksum = _int(item, "checksum") if "checksum" in item else None
        ts = _ms(item.get("ts"), "ts")
        if action == m.SNAPSHOT:
            book = self.books[inst] = InstrumentBook(seq_id)
            self.gap_pending.discard(inst)
            self.unsynced.discard(inst)
            rows = [(NO_SIDE, L2_CLEAR, 0, 0)]
            base = F_SNAPSHOT
        elif action == m.UPDATE:
            book = self.books.get(inst)
            if book is None:
                raise _Reject("no_snapshot", f"update for {inst!r} before its snapshot (seqId {seq_id})")
            self.stats.links_total += 1
            if prev == book.seq_id:
                self.stats.links_ok += 1
            else:
                self.stats.failures.append(f"{line.location}: {inst} prevSeqId {prev} != seqId {book.seq_id}")
                self._lose_sync(inst)
            book.seq_id = seq_id
            rows = []
            base = 0
        else:
            raise _Reject("unknown_message", f"book action {action!r}")
        first = F_GAP if inst in self.gap_pending else 0
        self.gap_pending.discard(inst)
        for side, px, size, strings in asks + bids:
            book.set(side, px, size, strings)
            rows.append((side, L2_SET if size else L2_DELETE, px, size))
        for i, (side, act, px, size) in enumerate(rows):
            flags = base | (first if i == 0 else 0) | (F_LAST if i == len(rows) - 1 else 0)
            self.deltas.append(ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=inst,
                               sequence=seq_id, side=side, action=act, price_nanos=px, size_nanos=size,
                               flags=flags)
        if not rows and first:
            self.gap_pending.add(inst)  # a heartbeat has no row to carry the flag: keep it
        if checksum is not None:
            self.stats.total += 1
            got = book.checksum()
            if got == checksum:
                self.stats.ok += 1
            else:
                self.stats.failures.append(f"{line.location}: {inst} checksum {got} != {checksum}")
                self._lose_sync(inst)

    def _trades(self, data: list[Any], line: CaptureLine) -> None:
        parsed = []
        for item in map(_dict, data):
            side = item.get("side")
            if side not in ("buy", "sell"):
                raise _Reject("missing_field", f"trade side {side!r} is not buy|sell")
            trade_id = str(item.get("tradeId", ""))
            parsed.append(dict(
                ts_event_ns=_ms(item.get("ts"), "ts"), symbol=str(item.get("instId", "")),
                sequence=int(trade_id) if trade_id.isdigit() else -1, trade_id=trade_id,
                price_nanos=_nanos(item.get("px"), "px"), size_nanos=_nanos(item.get("sz"), "sz"),
                aggressor_side=BID if side == "buy" else ASK))
        for i, row in enumerate(parsed):
            self.trades.append(ts_recv_ns=line.recv_ns, venue=VENUE,
                               flags=F_LAST if i == len(parsed) - 1 else 0, **row)


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        if err.pos >= len(payload.rstrip()):
            raise _Reject("truncated", f"frame ends at byte {len(payload)} inside a JSON value") from None
        head = payload[err.pos:err.pos + 9]
        if head.startswith((b"NaN", b"Infinity", b"-Infinity")):
            raise _Reject("bad_number", f"non-finite number {head!r} at byte {err.pos}") from None
        raise _Reject("bad_json", str(err)) from None


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Reject("missing_field", f"data item {value!r} is not an object")
    return value


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Reject("missing_field", f"{key!r} is {value!r}, not a list")
    return value


def _nanos(text: Any, key: str) -> int:
    if not isinstance(text, str):
        raise _Reject("missing_field", f"{key!r} is {text!r}, not a decimal string")
    try:
        return to_nanos(text)
    except BadNumber as err:
        raise _Reject(err.reason, f"{key!r} {err.reason}: {text!r}") from None


def _level(raw: Any, key: str) -> tuple[int, int, tuple[str, str]]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise _Reject("missing_field", f"{key!r} level {raw!r} is not [px, sz, ...]")
    return _nanos(raw[0], key), _nanos(raw[1], key), (raw[0], raw[1])


def _int(item: dict[str, Any], key: str) -> int:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Reject("missing_field" if value is None else "bad_number", f"{key!r} is {value!r}")
    return value


def _ms(text: Any, key: str) -> int:
    if not isinstance(text, str) or not text.isdigit():
        raise _Reject("missing_field" if text is None else "bad_number", f"{key!r} is {text!r}, not ms")
    return int(text) * 1_000_000


def decode_with(decoder: OkxDecoder, paths: Sequence[Path]) -> Iterator[Decoded]:
    """Run ``decoder`` over capture files (see :func:`tapeflow.venues.capture.decode_captures`)."""
    return decode_captures(decoder, paths, chunk_rows=CHUNK_ROWS)


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode OKX v5 captures (``<recv_ns> <json>`` lines or cryptofeed logs, gzip or not).

    Args:
        paths: capture files, decoded in order; book state carries across files.

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``trade`` and ``rejected`` tables.
    """
    yield from decode_with(OkxDecoder(), paths)
