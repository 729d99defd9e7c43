"""Databento DBN files: every schema, DBN v1/v2/v3, zstd or plain, whole files or fragments."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "dbn",
    decode="tapeflow.venues.databento.parse:decode",
    verify="tapeflow.venues.databento.verify:verify",
    client="tapeflow.venues.databento.client:DatabentoLive",
    description="Databento DBN (.dbn, .dbn.zst, .frag): all schemas",
)
