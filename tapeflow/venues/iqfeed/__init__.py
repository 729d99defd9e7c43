"""IQFeed (DTN IQConnect): historical lookup responses and the Level 1 / Level 2 streaming protocol 6.x."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "iqfeed",
    decode="tapeflow.venues.iqfeed.parse:decode",
    verify="tapeflow.venues.iqfeed.verify:verify",
    bars="tapeflow.venues.iqfeed.bars:bar_trades",
    client="tapeflow.venues.iqfeed.client:IQFeedClient",
    replay="tapeflow.venues.iqfeed.replay:IQFeedReplay",
    description="IQFeed lookup responses (ticks, interval/daily bars) and L1/L2 protocol 6.x lines",
)
