"""BitMEX realtime websocket: orderBookL2 (levels by id), quote and trade tables."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "bitmex",
    decode="tapeflow.venues.bitmex.parse:decode",
    verify="tapeflow.venues.bitmex.verify:verify",
    description="BitMEX realtime captures: orderBookL2 partial/insert/update/delete by id, quote, trade",
)
