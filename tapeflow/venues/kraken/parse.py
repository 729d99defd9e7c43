"""Kraken websocket v1 captures -> ``book_delta`` and ``trade`` records, checksums verified.

The decoder keeps its own book per pair because Kraken only keeps the subscribed depth (1000
levels a side for ``book-1000``): a level pushed beyond it is dropped by the venue without a
message. The decoder mimics that and emits a ``D`` row for each level it truncates, so a replay
of the emitted deltas equals the venue's book. After each update the top 10 levels are hashed
and compared with the message's ``c``; a mismatch puts ``F_GAP`` on the pair's next message
(the replay then waits for a new snapshot).
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
from tapeflow.venues.kraken import messages as m

VENUE = "kraken"
CHUNK_ROWS = 100_000


_Reject = RecordReject  # the shared per-record reject, under this module's short name


@dataclass
class PairBook:
    """One pair's book as Kraken keeps it (prices sorted ascending on both sides)."""

    depth: int
    price_places: int
    volume_places: int
    asks: dict[int, int] = field(default_factory=dict)
    bids: dict[int, int] = field(default_factory=dict)
    ask_px: list[int] = field(default_factory=list)
    bid_px: list[int] = field(default_factory=list)

    def set(self, side: int, price_nanos: int, volume_nanos: int) -> None:
        levels, prices = (self.bids, self.bid_px) if side == BID else (self.asks, self.ask_px)
        if volume_nanos == 0:
            if levels.pop(price_nanos, None) is not None:
                del prices[bisect.bisect_left(prices, price_nanos)]
        else:
            if price_nanos not in levels:
                bisect.insort(prices, price_nanos)
            levels[price_nanos] = volume_nanos

    def truncate(self) -> list[tuple[int, int]]:
        """Drop levels beyond the depth (worst first); returns the ``(side, price)`` dropped."""
        dropped = []
        while len(self.ask_px) > self.depth:
            px = self.ask_px.pop()
            del self.asks[px]
            dropped.append((ASK, px))
        while len(self.bid_px) > self.depth:
            px = self.bid_px.pop(0)
            del self.bids[px]
            dropped.append((BID, px))
        return dropped

    def checksum(self) -> int:
        n = m.CHECKSUM_LEVELS
        asks = [(p, self.asks[p]) for p in self.ask_px[:n]]
        bids = [(p, self.bids[p]) for p in reversed(self.bid_px[-n:])]
        return m.book_checksum(asks, bids, self.price_places, self.volume_places)


@dataclass
class ChecksumStats:
    """Checksums seen while decoding: ``ok`` of ``total`` matched; failures say where."""

    ok: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)


class KrakenDecoder(SyncedFrameBuffers):
    """Stateful frame decoder; feed frames in arrival order, take chunks with :meth:`flush`."""

    venue = VENUE

    def __init__(self) -> None:
        self.books: dict[str, PairBook] = {}
        self.stats = ChecksumStats()
        super().__init__()

    def feed(self, line: CaptureLine) -> None:
        """Decode one captured frame; bad frames become ``rejected`` rows."""
        if line.kind != RECV:
            return
        pair = ""
        try:
            msg = _loads(line.payload)
            if isinstance(msg, dict):
                if msg.get("event") not in m.CONTROL_EVENTS:
                    raise _Reject("unknown_message", f"dict message with event {msg.get('event')!r}")
                return
            if not isinstance(msg, list) or len(msg) < 4:
                raise _Reject("unknown_message", "expected [channelID, payload, channelName, pair]")
            channel, pair = msg[-2], msg[-1]
            if not isinstance(channel, str) or not isinstance(pair, str):
                raise _Reject("missing_field", f"channelName {channel!r} / pair {pair!r} are not strings")
            if channel.startswith("book"):
                self._book(msg[1:-2], channel, pair, line)
            elif channel == "trade":
                self._trades(msg[1], pair, line)
            else:
                raise _Reject("unknown_message", f"channel {channel!r}")
        except _Reject as err:
            self.rejects.add(err.reason, err.detail, line.location, line.payload,
                             ts_recv_ns=line.recv_ns, symbol=pair)
            if pair in self.books:
                # a lost book frame leaves the book behind the venue: resync on the next one
                self._lose_sync(pair)

    def _book(self, parts: list[Any], channel: str, pair: str, line: CaptureLine) -> None:
        if not parts or not all(isinstance(p, dict) for p in parts):
            raise _Reject("unknown_message", "book payload is not a list of dicts")
        if m.SNAPSHOT_ASKS in parts[0] or m.SNAPSHOT_BIDS in parts[0]:
            self._snapshot(parts[0], channel, pair, line)
            return
        book = self.books.get(pair)
        if book is None:
            raise _Reject("no_snapshot", f"book update for {pair!r} before its snapshot")
        levels: list[tuple[int, int, int, int]] = []
        crc: str | None = None
        for part in parts:
            for key, side in ((m.UPDATE_ASKS, ASK), (m.UPDATE_BIDS, BID)):
                if key in part:
                    levels += [(side, *lv) for lv in self._levels(part[key], key, pair, line)]
            if m.CHECKSUM in part:
                crc = part[m.CHECKSUM]
        expected = _checksum_value(crc) if crc is not None else None
        flags = F_GAP if pair in self.gap_pending else 0
        self.gap_pending.discard(pair)
        rows: list[tuple[int, int, int, int, int]] = []
        for side, px, vol, ts in levels:
            book.set(side, px, vol)
            rows.append((side, L2_SET if vol else L2_DELETE, px, vol, ts))
        last_ts = levels[-1][3] if levels else line.recv_ns
        rows += [(side, L2_DELETE, px, 0, last_ts) for side, px in book.truncate()]
        for i, (side, action, px, vol, ts) in enumerate(rows):
            row_flags = (flags if i == 0 else 0) | (F_LAST if i == len(rows) - 1 else 0)
            self._delta(line, pair, ts, side, action, px, vol, row_flags)
        if expected is not None:
            self.stats.total += 1
            got = book.checksum()
            if got == expected:
                self.stats.ok += 1
            else:
                self.stats.failures.append(f"{line.location}: {pair} checksum {got} != c {expected}")
                self._lose_sync(pair)

    def _snapshot(self, part: dict[str, Any], channel: str, pair: str, line: CaptureLine) -> None:
        asks = self._levels(part.get(m.SNAPSHOT_ASKS, []), m.SNAPSHOT_ASKS, pair, line)
        bids = self._levels(part.get(m.SNAPSHOT_BIDS, []), m.SNAPSHOT_BIDS, pair, line)
        first = (part.get(m.SNAPSHOT_ASKS) or part.get(m.SNAPSHOT_BIDS) or [["0", "0"]])[0]
        _, _, depth_text = channel.partition("-")
        depth = int(depth_text) if depth_text.isdigit() else m.DEFAULT_DEPTH
        book = PairBook(depth, m.decimals(first[0]), m.decimals(first[1]))
        self.books[pair] = book
        self.gap_pending.discard(pair)
        self.unsynced.discard(pair)
        ts_snap = max((lv[2] for lv in asks + bids), default=line.recv_ns)
        rows = [(NO_SIDE, L2_CLEAR, 0, 0, ts_snap)]
        for side, levels in ((ASK, asks), (BID, bids)):
            for px, vol, ts in levels:
                book.set(side, px, vol)
                rows.append((side, L2_SET, px, vol, ts))
        for i, (side, action, px, vol, ts) in enumerate(rows):
            self._delta(line, pair, ts, side, action, px, vol,
                        F_SNAPSHOT | (F_LAST if i == len(rows) - 1 else 0))

    def _levels(self, value: Any, key: str, pair: str, line: CaptureLine) -> list[tuple[int, int, int]]:
        """Parse a level list. A level beyond int64 nanos is rejected on its own: Kraken keeps
        placeholder orders such as an XBT/CHF ask at 9999999997 CHF, always the worst level of
        its side, so leaving it out changes neither the top 10 nor which levels get truncated."""
        levels = []
        for raw in _list(value, key):
            try:
                levels.append(_level(raw, key))
            except _Reject as err:
                if err.reason != "out_of_range":
                    raise
                self.rejects.add(err.reason, err.detail, line.location, orjson.dumps(raw),
                                 ts_recv_ns=line.recv_ns, symbol=pair)
        return levels

    def _delta(self, line: CaptureLine, pair: str, ts: int, side: int, action: int, px: int, vol: int,
               flags: int) -> None:
        self.deltas.append(ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=pair, sequence=-1,
                           side=side, action=action, price_nanos=px, size_nanos=vol, flags=flags)

    def _trades(self, payload: Any, pair: str, line: CaptureLine) -> None:
        parsed = []
        for raw in _list(payload, "trade"):
            if len(raw) < 4 or raw[3] not in ("b", "s"):
                raise _Reject("missing_field", f"trade {raw!r} lacks a b|s side")
            px, vol, ts = _level(raw, "trade")
            parsed.append((px, vol, ts, BID if raw[3] == "b" else ASK))
        for i, (px, vol, ts, aggressor) in enumerate(parsed):
            self.trades.append(ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=pair,
                               sequence=-1, trade_id="", price_nanos=px, size_nanos=vol,
                               aggressor_side=aggressor, flags=F_LAST if i == len(parsed) - 1 else 0)


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        if err.pos >= len(payload.rstrip()):
            raise _Reject("truncated", f"frame ends at byte {len(payload)} inside a JSON value") from None
        head = payload[err.pos:err.pos + 9]
        if head.startswith((b"NaN", b"Infinity", b"-Infinity")):
            raise _Reject("bad_number", f"non-finite number {head!r} at byte {err.pos}") from None
        raise _Reject("bad_json", f"{err}") from None


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Reject("missing_field", f"{key!r} is {value!r}, not a list")
    return value


def _level(raw: Any, key: str) -> tuple[int, int, int]:
    if not isinstance(raw, list) or len(raw) < 3 or not all(isinstance(x, str) for x in raw[:3]):
        raise _Reject("missing_field", f"{key!r} level {raw!r} is not [price, volume, time] strings")
    try:
        return to_nanos(raw[0]), to_nanos(raw[1]), to_nanos(raw[2])
    except BadNumber as err:
        raise _Reject(err.reason, f"{key!r} level {raw!r}: {err.reason} {err.text!r}") from None


def _checksum_value(crc: Any) -> int:
    if not isinstance(crc, str) or not crc.isdigit() or int(crc) >= 2**32:
        raise _Reject("bad_number", f"checksum c={crc!r} is not an unsigned 32-bit integer")
    return int(crc)


def decode_with(decoder: KrakenDecoder, paths: Sequence[Path]) -> Iterator[Decoded]:
    """Run ``decoder`` over capture files (see :func:`tapeflow.venues.capture.decode_captures`)."""
    return decode_captures(decoder, paths, chunk_rows=CHUNK_ROWS)


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode Kraken websocket captures (cryptofeed logs or ``<recv_ns> <json>`` lines).

    Args:
        paths: capture files, each decoded in order; book state carries across files.

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``trade`` and ``rejected`` tables.
    """
    yield from decode_with(KrakenDecoder(), paths)
