"""Coinbase live sync: ``matches`` trade-id continuity guards the level2 book.

The level2 channel carries no sequence and no checksum, so a lost ``l2update`` cannot be seen
on it. The trades can: ``trade_id`` rises by exactly 1 per product on the ``matches`` channel,
and the ``heartbeat`` channel repeats the product's ``last_trade_id`` every second. A missing
trade id means frames of that product were lost on the way, so its book is resynced too:
unsubscribing and subscribing the product again brings a fresh level2 ``snapshot`` (and a
``last_match`` that re-anchors the trade chain).

Known limit: rows between the lost frame and the trade that reveals it are published before
the loss is known; only a checksum (which Coinbase level2 lacks) could catch them.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK
from tapeflow.venues.coinbase import messages as m
from tapeflow.venues.coinbase.parse import CoinbaseDecoder
from tapeflow.venues.livesync import GAP, SYNCED, RowMarks, SyncEvent, SyncStats
from tapeflow.wire.capture import RECV, CaptureLine

HEARTBEAT, LAST_MATCH = "heartbeat", "last_match"


def _fields(data: bytes) -> dict[str, Any]:
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return msg if isinstance(msg, dict) else {}


class CoinbaseSync:
    """Live sync of Coinbase level2, matches and heartbeat frames (see :mod:`tapeflow.venues.livesync`)."""

    venue = "coinbase"

    def __init__(self) -> None:
        self.decoder = CoinbaseDecoder()
        self.stats = SyncStats()
        self._synced: set[str] = set()
        self._broken: set[str] = set()
        self._gap_pending: set[str] = set()  # F_GAP goes on the product's next book row
        self._last_trade: dict[str, int] = {}
        self._book_marks = RowMarks()
        self._trade_marks = RowMarks()

    @property
    def rows(self) -> int:
        """Rows decoded and not yet taken."""
        return self.decoder.rows

    def broken(self) -> set[str]:
        """Products whose book is known broken and waits for a fresh snapshot."""
        return set(self._broken)

    def feed(self, ts_recv_ns: int, data: bytes, location: str) -> list[SyncEvent]:
        """Decode one frame and report the products it broke or re-anchored.

        Args:
            ts_recv_ns: capture time of the frame.
            data: the frame as received.
            location: where the frame is (journal file:line or a stream position), for dead letters.
        """
        dec = self.decoder
        msg = _fields(data)
        kind, product = msg.get("type"), str(msg.get("product_id", ""))
        deltas_before, trades_before, rejects_before = len(dec.deltas), len(dec.trades), len(dec.rejects)
        dec.feed(CaptureLine(ts_recv_ns, RECV, "", data, location))
        if len(dec.rejects) > rejects_before:
            return []  # a malformed frame is a dead letter; it carried no level we could have applied
        if kind == m.SNAPSHOT:
            return self._snapshot(product, location)
        if kind == m.L2UPDATE:
            if product in self._broken:
                first = F_GAP if product in self._gap_pending else 0
                self._gap_pending.discard(product)
                self._book_marks.add(deltas_before, len(dec.deltas), first=first, every=F_MAYBE_BAD_BOOK)
            return []
        if kind in m.MATCHES:
            return self._trade_id(product, msg, kind == LAST_MATCH, trades_before, location)
        if kind == HEARTBEAT:
            return self._heartbeat(product, msg, location)
        return []

    def _snapshot(self, product: str, location: str) -> list[SyncEvent]:
        self.stats.snapshots += 1
        self.stats.resyncs += int(product in self._broken)
        self._broken.discard(product)
        self._gap_pending.discard(product)
        self._synced.add(product)
        return [SyncEvent(product, SYNCED, -1, f"{product}: level2 snapshot at {location}")]

    def _trade_id(self, product: str, msg: dict[str, Any], anchor: bool, row: int,
                  location: str) -> list[SyncEvent]:
        trade_id, sequence = msg.get("trade_id"), msg.get("sequence")
        if not isinstance(trade_id, int):
            return []
        last = self._last_trade.get(product)
        self._last_trade[product] = trade_id if last is None else max(last, trade_id)
        # last_match (sent on subscribe) and trades of a book being resynced re-anchor the chain
        if anchor or last is None or product not in self._synced or product in self._broken:
            return []
        if trade_id <= last:
            return []  # a repeated or late trade: its successor was seen, nothing is missing
        self.stats.links += 1
        if trade_id == last + 1:
            self.stats.links_ok += 1
            return []
        self._trade_marks.add(row, row + 1, first=F_GAP)
        seq = sequence if isinstance(sequence, int) else -1
        return [self._break(product, seq, f"{product}: match trade_id {trade_id} after {last} at {location}, "
                                          f"{trade_id - last - 1} trade(s) missing")]

    def _heartbeat(self, product: str, msg: dict[str, Any], location: str) -> list[SyncEvent]:
        venue_last, last = msg.get("last_trade_id"), self._last_trade.get(product)
        if (not isinstance(venue_last, int) or last is None or product not in self._synced
                or product in self._broken or venue_last <= last):
            return []
        seq = msg.get("sequence")
        return [self._break(product, seq if isinstance(seq, int) else -1,
                            f"{product}: heartbeat last_trade_id {venue_last} but the last match seen was "
                            f"{last} at {location}")]

    def _break(self, product: str, sequence: int, detail: str) -> SyncEvent:
        self._broken.add(product)
        self._gap_pending.add(product)
        self.stats.breaks.append(detail)
        return SyncEvent(product, GAP, sequence, detail)

    def take(self) -> dict[str, pa.Table]:
        """The records decoded since the last call (``book_delta``, ``trade``, ``quote``, ``rejected``)."""
        if not self.decoder.rows:
            return {}
        tables = self.decoder.flush(0, "live").tables
        for name, marks in (("book_delta", self._book_marks), ("trade", self._trade_marks)):
            marked = marks.apply(tables.get(name))
            if marked is not None:
                tables[name] = marked
        return tables
