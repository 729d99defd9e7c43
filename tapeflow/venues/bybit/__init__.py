"""Bybit: v5 orderbook history files and websocket captures (v5 and legacy v2 topics)."""

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.bybit.parse import decode
from tapeflow.venues.bybit.verify import verify

FORMAT = VenueFormat(
    name="bybit",
    decode=decode,
    verify=verify,
    description="Bybit v5 orderbook history zips and websocket captures (v5 or legacy v2)",
)
