"""KuCoin spot: level-2 diffs synced to REST snapshots by sequence, matches, tickers."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "kucoin",
    decode="tapeflow.venues.kucoin.parse:decode",
    verify="tapeflow.venues.kucoin.verify:verify",
    description="KuCoin spot websocket + REST level-2 captures (cryptofeed)",
)
