"""Kraken websocket v1 wire shapes (as Kraken spells them) and the book checksum.

Public messages are JSON arrays ``[channelID, payload..., channelName, pair]``:

* book snapshot: ``[id, {"as": [[px, vol, ts], ...], "bs": [...]}, "book-1000", "XBT/USD"]``;
* book update: ``[id, {"a": [...]}, {"b": [...], "c": "<crc32>"}, "book-1000", pair]`` (``a`` and
  ``b`` may also share one dict); a level may carry a 4th element ``"r"`` (republished: a level
  re-entering the subscribed depth after deletions above it), applied like any other level;
* trades: ``[id, [[px, vol, time, side b|s, orderType m|l, misc], ...], "trade", pair]``.

Control messages are dicts with an ``event`` key (heartbeat, systemStatus, subscriptionStatus).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

SNAPSHOT_ASKS, SNAPSHOT_BIDS = "as", "bs"
UPDATE_ASKS, UPDATE_BIDS = "a", "b"
ASK_KEYS = frozenset({SNAPSHOT_ASKS, UPDATE_ASKS})
CHECKSUM = "c"
REPUBLISH = "r"
CONTROL_EVENTS = frozenset({"heartbeat", "systemStatus", "subscriptionStatus", "pong"})
CHECKSUM_LEVELS = 10
DEFAULT_DEPTH = 10


def decimals(text: str) -> int:
    """Number of digits after the decimal point of a Kraken number string ("0.04290" -> 5)."""
    _, dot, frac = text.partition(".")
    return len(frac) if dot else 0


def checksum_field(value_nanos: int, places: int) -> str:
    """The checksum text of one price or volume.

    Kraken hashes the wire string with ``.`` removed and leading zeros stripped. With a fixed
    number of decimal places per pair that text is exactly the integer ``value * 10**places``,
    so it is rebuilt from the exact nanos instead of keeping a string per level.
    """
    return str(value_nanos // 10 ** (9 - places))


def book_checksum(asks: Sequence[tuple[int, int]], bids: Sequence[tuple[int, int]],
                  price_places: int, volume_places: int) -> int:
    """Unsigned CRC32 of the top levels as Kraken computes it.

    Args:
        asks: ``(price_nanos, volume_nanos)`` best (lowest) first, at most 10.
        bids: ``(price_nanos, volume_nanos)`` best (highest) first, at most 10.
        price_places: decimal places of this pair's price strings.
        volume_places: decimal places of this pair's volume strings.
    """
    text = "".join(
        checksum_field(px, price_places) + checksum_field(vol, volume_places) for px, vol in (*asks, *bids)
    )
    return zlib.crc32(text.encode("ascii"))
