"""Binance spot and futures: depth diffs synced to REST snapshots, trades, bookTicker quotes."""

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.binance.parse import decode
from tapeflow.venues.binance.verify import verify

FORMAT = VenueFormat(
    name="binance",
    decode=decode,
    verify=verify,
    description="Binance spot/futures websocket + REST captures (hftbacktest or cryptofeed)",
)
