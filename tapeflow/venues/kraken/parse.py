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

import msgspec

from tapeflow.errors import BadInput, BadNumber
from tapeflow.schemas.records import (
    ASK,
    BID,
    F_GAP,
    F_LAST,
    F_MAYBE_BAD_BOOK,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    NO_SIDE,
    UNDEF_TS,
)
from tapeflow.venues.decoder import VenueDecoder
from tapeflow.venues.fields import array
from tapeflow.venues.kraken import messages as m
from tapeflow.wire.capture import CaptureLine, Decoded
from tapeflow.wire.numbers import to_nanos
from tapeflow.wire.rejects import Reason

VENUE = "kraken"
MAX_PRICE_TEXT = "9223372036.854775807"  # int64 max in 1e-9 units


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
    last_ts_ns: int = UNDEF_TS  # the newest update's event time
    last_payload: bytes = b""  # the previous update frame, as received

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
    duplicates: int = 0  # updates identical to the pair's previous one (rows flagged)
    reorders: int = 0  # updates older than the pair's newest (book resynced)
    order_failures: list[str] = field(default_factory=list)  # where each reorder was seen
    duplicate_trades: int = 0  # trade messages identical to the pair's previous one (rows flagged)
    late_trades: int = 0  # trades older than the pair's newest trade (rows flagged F_GAP)


@dataclass
class PairTrades:
    """What tells a doubled or late trade message of one pair (Kraken trades carry no id)."""

    last_payload: bytes = b""  # the pair's previous trade message, as received
    newest_ns: int = UNDEF_TS  # the newest trade time decoded


class KrakenDecoder(VenueDecoder):
    """Stateful frame decoder; feed frames in arrival order, take chunks with :meth:`flush`."""

    venue = VENUE
    every_frame_accounted = True

    def __init__(self) -> None:
        super().__init__()
        self.books: dict[str, PairBook] = {}
        self.stats = ChecksumStats()  # type: ignore[assignment]
        self.book_frame = False  # the frame being decoded is a book one
        self.trades_of: dict[str, PairTrades] = {}

    def message(self, msg: Any, line: CaptureLine) -> None:
        if isinstance(msg, dict):
            if msg.get("event") not in m.CONTROL_EVENTS:
                raise BadInput(Reason.UNKNOWN_MESSAGE, f"dict message with event {msg.get('event')!r}")
            self.quiet(str(msg.get("event")))
            return
        if not isinstance(msg, list):
            raise BadInput(Reason.BAD_SHAPE, f"frame is a JSON {type(msg).__name__}, not a list or object")
        if len(msg) < 4:
            raise BadInput(Reason.BAD_SHAPE, "expected [channelID, payload, channelName, pair]")
        channel, pair = msg[-2], msg[-1]
        if not isinstance(channel, str) or not isinstance(pair, str):
            raise BadInput(Reason.MISSING_FIELD, f"channelName {channel!r} / pair {pair!r} are not strings")
        self.book_frame = channel.startswith("book")
        self.frame_symbol = pair
        if self.book_frame:
            self._book(msg[1:-2], channel, pair, line)
        elif channel == "trade":
            self._trades(msg[1], pair, line)
        else:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"channel {channel!r}")

    def on_reject(self) -> None:
        if self.book_frame and self.frame_symbol in self.books:
            # a lost book frame leaves the book behind the venue: resync on the next one
            self.lose_sync(self.frame_symbol)

    def _book(self, parts: list[Any], channel: str, pair: str, line: CaptureLine) -> None:
        if not parts or not all(isinstance(p, dict) for p in parts):
            raise BadInput(Reason.BAD_SHAPE, "book payload is not a list of dicts")
        if m.SNAPSHOT_ASKS in parts[0] or m.SNAPSHOT_BIDS in parts[0]:
            self._snapshot(parts[0], channel, pair, line)
            return
        book = self.books.get(pair)
        if book is None:
            raise BadInput(Reason.NO_SNAPSHOT, f"book update for {pair!r} before its snapshot")
        levels: list[tuple[int, int, int, int]] = []
        crc: str | None = None
        for part in parts:
            for key, side in ((m.UPDATE_ASKS, ASK), (m.UPDATE_BIDS, BID)):
                if key in part:
                    levels += [(side, *lv) for lv in self._levels(part[key], key, pair, line)]
            if m.CHECKSUM in part:
                crc = part[m.CHECKSUM]
        expected = _checksum_value(crc) if crc is not None else None
        ts_event = _event_time(levels, book.last_ts_ns if book.last_ts_ns >= 0 else line.recv_ns)
        every = self._order(book, pair, ts_event, line)
        flags = self.take_gap(pair)
        rows: list[tuple[int, int, int, int, int]] = []
        for side, px, vol, _ in levels:
            book.set(side, px, vol)
            rows.append((side, L2_SET if vol else L2_DELETE, px, vol, ts_event))
        rows += [(side, L2_DELETE, px, 0, ts_event) for side, px in book.truncate()]
        self._deltas(line, pair, rows, flags, every=every)
        if expected is not None:
            self.stats.total += 1
            got = book.checksum()
            if got == expected:
                self.stats.ok += 1
            else:
                self.stats.failures.append(f"{line.location}: {pair} checksum {got} != c {expected}")
                self.lose_sync(pair)

    def _order(self, book: PairBook, pair: str, ts_event: int, line: CaptureLine) -> int:
        """Duplicates and reorders, which Kraken v1 (no sequence number) cannot prove: an update
        byte-identical to the pair's previous one has its rows flagged ``F_MAYBE_BAD_BOOK``
        (re-applying absolute volumes leaves the book as it was, but the rows are there twice);
        one older than the pair's newest update (its newest level time, republished levels
        aside) may have put stale volumes back: the book resyncs (``F_GAP`` on this message)."""
        duplicate = line.payload == book.last_payload
        book.last_payload = line.payload
        if duplicate:
            self.stats.duplicates += 1
            return F_MAYBE_BAD_BOOK
        if ts_event < book.last_ts_ns:
            self.stats.reorders += 1
            self.stats.order_failures.append(
                f"{line.location}: {pair} update of {ts_event} ns is older than the pair's newest update "
                f"({book.last_ts_ns} ns): reordered")
            self.lose_sync(pair)
        book.last_ts_ns = max(book.last_ts_ns, ts_event)
        return 0

    def _snapshot(self, part: dict[str, Any], channel: str, pair: str, line: CaptureLine) -> None:
        asks = self._levels(part.get(m.SNAPSHOT_ASKS, []), m.SNAPSHOT_ASKS, pair, line)
        bids = self._levels(part.get(m.SNAPSHOT_BIDS, []), m.SNAPSHOT_BIDS, pair, line)
        first = (part.get(m.SNAPSHOT_ASKS) or part.get(m.SNAPSHOT_BIDS) or [["0", "0"]])[0]
        _, _, depth_text = channel.partition("-")
        depth = int(depth_text) if depth_text.isdigit() else m.DEFAULT_DEPTH
        book = PairBook(depth, m.decimals(first[0]), m.decimals(first[1]))
        self.books[pair] = book
        self.resync(pair)
        # the order check starts at the first update: a snapshot's newest level is not an update
        ts_event = _event_time([(0, *lv) for lv in asks + bids], line.recv_ns)
        rows = [(NO_SIDE, L2_CLEAR, 0, 0, ts_event)]
        for side, levels in ((ASK, asks), (BID, bids)):
            for px, vol, _ in levels:
                book.set(side, px, vol)
                rows.append((side, L2_SET, px, vol, ts_event))
        self._deltas(line, pair, rows, F_SNAPSHOT, every=F_SNAPSHOT)

    def _levels(self, value: Any, key: str, pair: str, line: CaptureLine) -> list[tuple[int, int, int]]:
        """Parse a level list. An *ask* priced beyond int64 nanos is a placeholder order (the real
        capture holds an XBT/CHF ask at 9999999997.00000 CHF, 180,000 times the market): always
        the worst ask, so leaving it out changes neither the top 10 (checksums) nor which levels
        get truncated. It is kept out of the book by rule (``price_beyond_range``, its exact text
        in the ``rejected`` row); a *bid* that large would be the best bid, so it is damage."""
        levels = []
        for raw in array(value, key):
            try:
                px, vol, ts = _level(raw, key)
                # a republished level re-enters the depth with its old time: not this message's
                levels.append((px, vol, UNDEF_TS if raw[3:4] == [m.REPUBLISH] else ts))
            except BadInput as err:
                if err.reason != Reason.OUT_OF_RANGE:
                    raise
                if key not in m.ASK_KEYS or not _price_beyond_range(raw):
                    raise
                detail = (f"{key!r} level {raw!r}: price above {MAX_PRICE_TEXT}, the largest int64 nanos "
                          "hold; a placeholder worst ask, kept out of the book")
                self.rejects.add(Reason.PRICE_BEYOND_RANGE, detail, line.location, msgspec.json.encode(raw),
                                 ts_recv_ns=line.recv_ns, symbol=pair)
        return levels

    def _deltas(self, line: CaptureLine, pair: str, rows: list[tuple[int, int, int, int, int]], first: int,
                *, every: int = 0) -> None:
        """One message's rows: ``first`` flags on its first row, ``every`` on each, ``F_LAST`` on the last."""
        n = len(rows)
        if not n:
            return
        side, action, px, vol, ts = (list(c) for c in zip(*rows, strict=True))
        flags = [every] * n
        flags[0] |= first
        flags[-1] |= F_LAST
        self.deltas.extend(n, ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=pair, sequence=-1,
                           side=side, action=action, price_nanos=px, size_nanos=vol, flags=flags)

    def _trades(self, payload: Any, pair: str, line: CaptureLine) -> None:
        parsed = []
        for raw in self.items(payload, "trade"):  # Kraken pushes a trade message when there are trades
            px, vol, ts = _level(raw, "trade")
            if len(raw) < 4 or raw[3] not in ("b", "s"):
                raise BadInput(Reason.MISSING_FIELD if len(raw) < 4 else Reason.BAD_FIELD,
                               f"trade {raw!r} lacks a b|s side")
            parsed.append((px, vol, ts, BID if raw[3] == "b" else ASK))
        n = len(parsed)
        px, vol, ts, aggressor = (list(c) for c in zip(*parsed, strict=True))
        flags = self._trade_order(pair, ts, line)
        flags[-1] |= F_LAST
        self.trades.extend(n, ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=pair, sequence=-1,
                           trade_id="", price_nanos=px, size_nanos=vol, aggressor_side=aggressor, flags=flags)

    def _trade_order(self, pair: str, times_ns: list[int], line: CaptureLine) -> list[int]:
        """Doubled and reordered trade messages, which Kraken v1 cannot prove (a trade has no id):
        a message byte-identical to the pair's previous trade message has its rows kept and
        flagged ``F_MAYBE_BAD_BOOK`` (two messages of the same trades to the microsecond are
        possible, if never seen); a trade older than the pair's newest trade decoded arrived late:
        kept, flagged ``F_GAP`` (as Coinbase and Binance flag a trade below the newest id)."""
        seen = self.trades_of.setdefault(pair, PairTrades())
        doubled = line.payload == seen.last_payload
        seen.last_payload = line.payload
        if doubled:
            self.stats.duplicate_trades += 1
            return [F_MAYBE_BAD_BOOK] * len(times_ns)
        flags = [F_GAP if ts < seen.newest_ns else 0 for ts in times_ns]
        self.stats.late_trades += sum(1 for f in flags if f)
        seen.newest_ns = max(seen.newest_ns, *times_ns)
        return flags


def _event_time(levels: Sequence[tuple[int, int, int, int]], fallback_ns: int) -> int:
    """A book message's event time: the newest of its levels' times (a republished level's is
    ``UNDEF_TS``), else ``fallback_ns``.

    Kraken v1 stamps each level with *its own* last update; the message has no time. A snapshot
    carries levels unchanged for years (2018 on a 2021 capture) and a republished level keeps its
    old time, so a level's time is not when the message happened: the newest one is (the update's
    own time; for a snapshot, the book's last change). Every row of the message carries it.
    """
    newest = max((lv[3] for lv in levels), default=UNDEF_TS)
    return newest if newest != UNDEF_TS else fallback_ns


def _price_beyond_range(raw: list[Any]) -> bool:
    """The level's price (not its volume or time) is what exceeds int64 nanos."""
    try:
        to_nanos(raw[0])
    except BadNumber as err:
        return err.reason == Reason.OUT_OF_RANGE
    return False


def _level(raw: Any, key: str) -> tuple[int, int, int]:
    if not isinstance(raw, list) or len(raw) < 3:
        raise BadInput(Reason.BAD_SHAPE, f"{key!r} level {raw!r} is not [price, volume, time]")
    if not all(isinstance(x, str) for x in raw[:3]):
        raise BadNumber(Reason.BAD_NUMBER, raw[:3], f"{key!r} level (not decimal strings)")
    try:
        return to_nanos(raw[0]), to_nanos(raw[1]), to_nanos(raw[2])
    except BadNumber as err:
        raise BadInput(err.reason, f"{key!r} level {raw!r}: {err.reason} {err.text!r}") from None


def _checksum_value(crc: Any) -> int:
    if not isinstance(crc, str) or not crc.isascii() or not crc.isdigit() or int(crc) >= 2**32:
        raise BadInput(Reason.BAD_NUMBER, f"checksum c={crc!r} is not an unsigned 32-bit integer")
    return int(crc)


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode Kraken websocket captures (cryptofeed logs or ``<recv_ns> <json>`` lines).

    Args:
        paths: capture files, merged by capture time; book state carries across files.

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``trade`` and ``rejected`` tables.
    """
    yield from KrakenDecoder().run(paths)
