"""OKX v5 public websocket: books (signed CRC32, seqId chain) and trades channels."""

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.okx.parse import decode
from tapeflow.venues.okx.verify import verify

FORMAT = VenueFormat(
    name="okx",
    decode=decode,
    verify=verify,
    description="OKX v5 websocket captures: books snapshot/update (checksum + seqId verified) and trades",
)
