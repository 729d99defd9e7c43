"""Coinbase websocket feed: level2 snapshot/l2update, matches and ticker channels."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "coinbase",
    decode="tapeflow.venues.coinbase.parse:decode",
    verify="tapeflow.venues.coinbase.verify:verify",
    client="tapeflow.venues.coinbase.client:CoinbaseClient",
    replay="tapeflow.venues.coinbase.replay:CoinbaseReplay",
    description="Coinbase websocket captures: level2 (no sequence; uncrossed-book check), matches, ticker",
)
