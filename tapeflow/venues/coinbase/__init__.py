"""Coinbase websocket feed: level2 snapshot/l2update, matches and ticker channels."""

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.coinbase.parse import decode
from tapeflow.venues.coinbase.verify import verify

FORMAT = VenueFormat(
    name="coinbase",
    decode=decode,
    verify=verify,
    description="Coinbase websocket captures: level2 (no sequence; uncrossed-book check), matches, ticker",
)
