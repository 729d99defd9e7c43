"""LOBSTER (Nasdaq order-by-order reconstructions): message files -> order events and trades,
orderbook files -> book snapshots; verified by the one-step book oracle."""

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.lobster.parse import decode
from tapeflow.venues.lobster.verify import verify

FORMAT = VenueFormat(
    "lobster", decode, verify,
    description="LOBSTER message/orderbook CSV pairs (TICKER_DATE_start_end_{message|orderbook}_N.csv)",
)
