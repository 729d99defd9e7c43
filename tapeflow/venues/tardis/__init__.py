"""Tardis normalized CSVs: trades, quotes, incremental_book_L2, book_snapshot_N (plain or gzip)."""

from __future__ import annotations

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.tardis.parse import decode
from tapeflow.venues.tardis.verify import verify

FORMAT = VenueFormat("tardis", decode, verify, "Tardis normalized CSV (kind detected from the header)")
