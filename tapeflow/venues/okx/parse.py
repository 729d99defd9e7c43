"""OKX v5 ``books`` and ``trades`` captures -> ``book_delta`` and ``trade`` records.

Each instrument's book keeps the wire strings of every level beside the exact nanos, because the
OKX checksum hashes the strings as sent (a size may arrive as "0.10" and hash differently from
"0.1"). Sequence rule: an update's ``prevSeqId`` must equal the previous ``seqId`` (a heartbeat
repeats it), otherwise its first row carries ``F_GAP``; a checksum mismatch flags the next message
the same way. Messages of the older shape (captures from 2022) have no ``seqId``/``prevSeqId``:
their rows carry sequence -1 and the checksum, present on every message, is the only check.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapeflow.errors import BadInput, BadNumber
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
from tapeflow.venues.decoder import VenueDecoder
from tapeflow.venues.fields import array, field, obj, sequence_or_none
from tapeflow.venues.okx import messages as m
from tapeflow.wire.capture import RECV, CaptureLine, Decoded
from tapeflow.wire.numbers import nanos
from tapeflow.wire.rejects import Reason

VENUE = "okx"
NO_SEQ = -1  # the ``sequence`` of rows from a message without ``seqId``


@dataclass
class InstrumentBook:
    """One instrument's levels: price nanos -> (price string, size string), prices sorted."""

    seq_id: int
    asks: dict[int, tuple[str, str]] = dataclasses.field(default_factory=dict)
    bids: dict[int, tuple[str, str]] = dataclasses.field(default_factory=dict)
    ask_px: list[int] = dataclasses.field(default_factory=list)
    bid_px: list[int] = dataclasses.field(default_factory=list)

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
    failures: list[str] = dataclasses.field(default_factory=list)


class OkxDecoder(VenueDecoder):
    """Stateful frame decoder; feed frames in arrival order, take chunks with :meth:`flush`."""

    venue = VENUE
    every_frame_accounted = True

    def __init__(self) -> None:
        super().__init__()
        self.books: dict[str, InstrumentBook] = {}
        self.stats = BookStats()  # type: ignore[assignment]
        self.trade_high: dict[str, int] = {}  # instId -> newest tradeId decoded
        self.book_frame = False  # the frame being decoded is a books one

    def frame(self, index: int, line: CaptureLine) -> None:
        if line.kind == RECV and line.payload.strip() == b"pong":
            self.quiet("pong")  # the answer to our text ping: no JSON
            return
        super().frame(index, line)

    def message(self, msg: Any, line: CaptureLine) -> None:
        msg = obj(msg, "the frame")
        if "event" in msg:
            if msg["event"] not in m.CONTROL_EVENTS:
                raise BadInput(Reason.UNKNOWN_MESSAGE, f"event {msg['event']!r}: {msg.get('msg', '')}")
            self.quiet(str(msg["event"]))
            return
        arg = obj(field(msg, "arg"), "'arg'")
        channel = arg.get("channel")
        self.book_frame = channel in m.BOOK_CHANNELS
        self.frame_symbol = str(arg.get("instId", ""))
        data = array(field(msg, "data"), "'data'")
        if channel not in m.BOOK_CHANNELS and channel not in m.TRADE_CHANNELS:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"channel {channel!r}")
        # OKX pushes a books or trades message with one item or more, never none
        data = self.items(data, f"{channel} 'data'")
        if self.book_frame:
            for item in data:
                self._book(msg.get("action"), obj(item, "a data item"), self.frame_symbol, line)
        else:
            self._trades(data, line)

    def on_reject(self) -> None:
        if self.book_frame and self.frame_symbol in self.books:  # a lost trades frame leaves the book whole
            self.lose_sync(self.frame_symbol)

    def _book(self, action: Any, item: dict[str, Any], inst: str, line: CaptureLine) -> None:
        asks = [(ASK, *_level(raw, "asks")) for raw in array(field(item, "asks"), "asks")]
        bids = [(BID, *_level(raw, "bids")) for raw in array(field(item, "bids"), "bids")]
        seq_id, prev = _sequence(item)
        checksum = _int(item, "checksum") if "checksum" in item else None
        ts = _ms(item.get("ts"), "ts")
        if action == m.SNAPSHOT:
            book = self.books[inst] = InstrumentBook(seq_id)
            self.resync(inst)
            rows = [(NO_SIDE, L2_CLEAR, 0, 0)]
            base = F_SNAPSHOT
        elif action == m.UPDATE:
            book = self.books.get(inst)
            if book is None:
                raise BadInput(Reason.NO_SNAPSHOT, f"update for {inst!r} before its snapshot, seqId {seq_id}")
            if prev is not None:  # the older shape has no chain: its checksum is the only check
                self.stats.links_total += 1
                if prev == book.seq_id:
                    self.stats.links_ok += 1
                else:
                    self.stats.failures.append(
                        f"{line.location}: {inst} prevSeqId {prev} != seqId {book.seq_id}")
                    self.lose_sync(inst)
            book.seq_id = seq_id
            rows = []
            base = 0
        else:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"book action {action!r}")
        first = self.take_gap(inst)
        for side, px, size, strings in asks + bids:
            book.set(side, px, size, strings)
            rows.append((side, L2_SET if size else L2_DELETE, px, size))
        n = len(rows)
        if n:
            side, act, px, size = (list(c) for c in zip(*rows, strict=True))
            flags = [base] * n
            flags[0] |= first
            flags[-1] |= F_LAST
            self.deltas.extend(n, ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=inst,
                               sequence=seq_id, side=side, action=act, price_nanos=px, size_nanos=size,
                               flags=flags)
        if not rows:
            self.quiet("heartbeat")  # an update of no level: seqId == prevSeqId, the chain goes on
            if first:
                self.gap_pending.add(inst)  # no row to carry the flag: keep it
        if checksum is not None:
            self.stats.total += 1
            got = book.checksum()
            if got == checksum:
                self.stats.ok += 1
            else:
                self.stats.failures.append(f"{line.location}: {inst} checksum {got} != {checksum}")
                self.lose_sync(inst)

    def _trades(self, data: list[Any], line: CaptureLine) -> None:
        parsed = []
        for item in data:
            item = obj(item, "a trade")
            side = field(item, "side")
            if side not in ("buy", "sell"):
                raise BadInput(Reason.BAD_FIELD, f"trade side {side!r} is not buy|sell")
            trade_id = str(item.get("tradeId", ""))
            parsed.append((_ms(item.get("ts"), "ts"), str(item.get("instId", "")),
                           sequence_or_none(trade_id, "tradeId"), trade_id,
                           nanos(field(item, "px"), "px"), nanos(field(item, "sz"), "sz"),
                           BID if side == "buy" else ASK))
        n = len(parsed)
        if not n:
            return
        ts, inst, seq, trade_id, px, sz, aggressor = (list(c) for c in zip(*parsed, strict=True))
        flags = [F_GAP if late else 0 for late in self._trade_order(inst, seq)]
        flags[-1] |= F_LAST
        self.trades.extend(n, ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=inst, sequence=seq,
                           trade_id=trade_id, price_nanos=px, size_nanos=sz, aggressor_side=aggressor,
                           flags=flags)

    def _trade_order(self, inst: list[str], ids: list[int]) -> list[bool]:
        """Per trade of a frame, whether its id is below its instrument's newest (late: ``F_GAP``).

        A frame whose newest id equals an instrument's newest repeats a frame already decoded:
        a ``duplicate`` dead letter. Trades without a numeric id (-1) are not checked.
        """
        newest: dict[str, int] = {}
        for i, tid in zip(inst, ids, strict=True):
            newest[i] = max(newest.get(i, -1), tid)
        for i, tid in newest.items():
            if tid >= 0 and tid == self.trade_high.get(i):
                raise BadInput(Reason.DUPLICATE, f"{i} trades up to tradeId {tid} were already decoded")
        late = []
        for i, tid in zip(inst, ids, strict=True):
            high = self.trade_high.get(i, -1)
            late.append(0 <= tid < high)
            self.trade_high[i] = max(high, tid)
        return late


def _level(raw: Any, key: str) -> tuple[int, int, tuple[str, str]]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise BadInput(Reason.BAD_SHAPE, f"{key!r} level {raw!r} is not [px, sz, ...]")
    if not isinstance(raw[0], str) or not isinstance(raw[1], str):
        # the checksum hashes the strings as sent: a level must carry them
        raise BadNumber(Reason.BAD_NUMBER, raw[:2], f"{key!r} level (not decimal strings)")
    return nanos(raw[0], key), nanos(raw[1], key), (raw[0], raw[1])


def _sequence(item: dict[str, Any]) -> tuple[int, int | None]:
    """``(seqId, prevSeqId)``, or ``(NO_SEQ, None)`` for the older shape that has neither.

    OKX added the pair to ``books`` in 2022-2023; captures from before (May 2022) carry only the
    checksum. One without the other is a damaged message.
    """
    if "seqId" not in item and "prevSeqId" not in item:
        return NO_SEQ, None
    return _int(item, "seqId"), _int(item, "prevSeqId")


def _int(item: dict[str, Any], key: str) -> int:
    value = item.get(key)
    if value is None:
        raise BadInput(Reason.MISSING_FIELD, f"no {key!r} field")
    if type(value) is not int:
        raise BadNumber(Reason.BAD_NUMBER, value, key)
    return value


def _ms(text: Any, key: str) -> int:
    if text is None:
        raise BadInput(Reason.MISSING_FIELD, f"no {key!r} field")
    if not isinstance(text, str) or not text.isascii() or not text.isdigit():
        raise BadNumber(Reason.BAD_NUMBER, text, f"{key} (not ms)")
    return int(text) * 1_000_000


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode OKX v5 captures (``<recv_ns> <json>`` lines or cryptofeed logs, gzip or not).

    Args:
        paths: capture files, merged by capture time; book state carries across files.

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``trade`` and ``rejected`` tables.
    """
    yield from OkxDecoder().run(paths)
