"""KuCoin spot: level-2 diffs synced to REST snapshots by sequence, matches, tickers."""

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.kucoin.parse import decode
from tapeflow.venues.kucoin.verify import verify

FORMAT = VenueFormat(
    name="kucoin",
    decode=decode,
    verify=verify,
    description="KuCoin spot websocket + REST level-2 captures (cryptofeed)",
)
