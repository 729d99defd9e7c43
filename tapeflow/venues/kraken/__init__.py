"""Kraken websocket v1: book-N (with CRC32 checksums) and trade channels."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "kraken",
    decode="tapeflow.venues.kraken.parse:decode",
    verify="tapeflow.venues.kraken.verify:verify",
    client="tapeflow.venues.kraken.client:KrakenClient",
    replay="tapeflow.venues.kraken.replay:KrakenReplay",
    description="Kraken websocket v1 captures: book-N snapshots/updates (CRC32 verified) and trades",
)
