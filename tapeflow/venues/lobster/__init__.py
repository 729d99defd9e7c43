"""LOBSTER (Nasdaq order-by-order reconstructions): message files -> order events and trades,
orderbook files -> book snapshots; verified by the one-step book oracle."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "lobster",
    decode="tapeflow.venues.lobster.parse:decode",
    verify="tapeflow.venues.lobster.verify:verify",
    description="LOBSTER message/orderbook CSV pairs (TICKER_DATE_start_end_{message|orderbook}_N.csv)",
)
