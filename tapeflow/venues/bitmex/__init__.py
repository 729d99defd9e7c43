"""BitMEX realtime websocket: orderBookL2 (levels by id), quote and trade tables."""

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.bitmex.parse import decode
from tapeflow.venues.bitmex.verify import verify

FORMAT = VenueFormat(
    name="bitmex",
    decode=decode,
    verify=verify,
    description="BitMEX realtime captures: orderBookL2 partial/insert/update/delete by id, quote, trade",
)
