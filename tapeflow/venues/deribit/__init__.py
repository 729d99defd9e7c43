"""Deribit websocket v2: ``book.*`` (``prev_change_id`` chain) and ``trades.*`` channels of options,
futures and perpetuals. Its ``ticker.*`` frames are ignored by rule here: ``tapeflow options``, the
``options`` assets and the live options flow read them (``tickers.py``: the option ticker client of
``tapeflow live --venue deribit --options``; docs/options.md)."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "deribit",
    decode="tapeflow.venues.deribit.parse:decode",
    verify="tapeflow.venues.deribit.verify:verify",
    client="tapeflow.venues.deribit.client:DeribitClient",
    replay="tapeflow.venues.deribit.replay:DeribitReplay",
    description="Deribit websocket v2 captures: book snapshot/change (prev_change_id verified) and trades",
)
