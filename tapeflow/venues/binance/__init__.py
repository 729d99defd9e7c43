"""Binance spot and futures: depth diffs synced to REST snapshots, trades, bookTicker quotes."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "binance",
    decode="tapeflow.venues.binance.parse:decode",
    verify="tapeflow.venues.binance.verify:verify",
    client="tapeflow.venues.binance.client:BinanceClient",
    replay="tapeflow.venues.binance.replay:BinanceReplay",
    description="Binance spot/futures websocket + REST captures (hftbacktest or cryptofeed)",
)
