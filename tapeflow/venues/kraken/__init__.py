"""Kraken websocket v1: book-N (with CRC32 checksums) and trade channels."""

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.kraken.parse import decode
from tapeflow.venues.kraken.verify import verify

FORMAT = VenueFormat(
    name="kraken",
    decode=decode,
    verify=verify,
    description="Kraken websocket v1 captures: book-N snapshots/updates (CRC32 verified) and trades",
)
