"""Tardis normalized CSVs: trades, quotes, incremental_book_L2, book_snapshot_N (plain or gzip)."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "tardis",
    decode="tapeflow.venues.tardis.parse:decode",
    verify="tapeflow.venues.tardis.verify:verify",
    description="Tardis normalized CSV (kind detected from the header)",
)
