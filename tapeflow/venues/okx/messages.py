"""OKX v5 public websocket wire shapes (as OKX spells them) and the book checksum.

* ``{"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "snapshot"|"update",
  "data": [{"asks": [[px, sz, "0", numOrders], ...], "bids": [...], "ts": "<ms>",
  "checksum": <signed crc32>, "prevSeqId": <int>, "seqId": <int>}]}``; ``sz`` is absolute and
  ``"0"`` deletes; a snapshot has ``prevSeqId`` -1; an update with ``seqId == prevSeqId`` and no
  levels is a heartbeat.
* ``{"arg": {"channel": "trades", ...}, "data": [{"instId", "tradeId", "px", "sz", "side"
  (taker side), "ts", "count"}]}``.
* control: ``{"event": "subscribe"|"unsubscribe"|"error"|..., ...}`` and the text frame ``pong``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

BOOK_CHANNELS = frozenset({"books", "books-l2-tbt", "books50-l2-tbt"})
TRADE_CHANNELS = frozenset({"trades", "trades-all"})
CONTROL_EVENTS = frozenset({"subscribe", "unsubscribe", "login", "channel-conn-count"})
SNAPSHOT, UPDATE = "snapshot", "update"
CHECKSUM_LEVELS = 25


def book_checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
    """Signed CRC32 of ``bidPx:bidSz:askPx:askSz:...`` over the top 25 levels, interleaved.

    Args:
        bids: ``(price, size)`` wire strings, best (highest) first.
        asks: ``(price, size)`` wire strings, best (lowest) first.

    When one side has fewer levels the other side's remaining levels follow alone. OKX hashes
    the strings exactly as sent ("0.10" and "0.1" differ), hence strings, not nanos.
    """
    parts: list[str] = []
    for i in range(min(CHECKSUM_LEVELS, max(len(bids), len(asks)))):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    crc = zlib.crc32(":".join(parts).encode("ascii"))
    return crc - 2**32 if crc >= 2**31 else crc
