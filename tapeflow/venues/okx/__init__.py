"""OKX v5 public websocket: books (signed CRC32, seqId chain) and trades channels."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "okx",
    decode="tapeflow.venues.okx.parse:decode",
    verify="tapeflow.venues.okx.verify:verify",
    client="tapeflow.venues.okx.client:OkxClient",
    replay="tapeflow.venues.okx.replay:OkxReplay",
    description="OKX v5 websocket captures: books snapshot/update (checksum + seqId verified) and trades",
)
