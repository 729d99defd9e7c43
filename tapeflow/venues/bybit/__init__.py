"""Bybit: v5 orderbook history files and websocket captures (v5 and legacy v2 topics)."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "bybit",
    decode="tapeflow.venues.bybit.parse:decode",
    verify="tapeflow.venues.bybit.verify:verify",
    client="tapeflow.venues.bybit.client:BybitClient",
    replay="tapeflow.venues.bybit.replay:BybitReplay",
    description="Bybit v5 orderbook history zips and websocket captures (v5 or legacy v2)",
)
