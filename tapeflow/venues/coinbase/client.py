"""Coinbase websocket live client: ``level2`` book, ``matches`` trades and ``heartbeat``.

One connection subscribes every product to the three channels. The level2 channel carries no
sequence, so the ``matches`` trade-id chain and the heartbeat's ``last_trade_id`` stand guard
(see :mod:`tapeflow.venues.coinbase.sync`); a break resyncs the product by unsubscribing and
subscribing it again, which brings a fresh level2 ``snapshot``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from tapeflow.errors import ConfigError
from tapeflow.journal import Journal
from tapeflow.live.connector import ConnectorSettings
from tapeflow.venues.coinbase.sync import CoinbaseSync
from tapeflow.venues.resubscribe import ResubscribingClient, symbols_list

WS_URL = "wss://ws-feed.exchange.coinbase.com"
LEVEL2_CHANNELS = ("level2", "level2_batch")  # the same messages; level2_batch needs no authentication


class CoinbaseClient(ResubscribingClient):
    """Live Coinbase client.

    Args:
        symbols: product ids (``BTC-USD``), or a comma-separated string.
        endpoint: websocket URL (default the Coinbase Exchange feed; a replay server's ``ws_url``).
        rest_endpoint: unused (Coinbase resyncs over the websocket); accepted for a uniform signature.
        journal: a journal, a folder for one, or None.
        settings: session-loop settings.
        heartbeat: also subscribe the ``heartbeat`` channel (its ``last_trade_id`` reveals lost
            matches on quiet products).
        book_channel: ``level2`` or ``level2_batch`` (the same messages batched every 50 ms; the
            one Coinbase serves without authentication).

    Raises:
        ConfigError: an unknown ``book_channel``.
    """

    def __init__(self, symbols: Sequence[str] | str, *, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None, heartbeat: bool = True,
                 book_channel: str = "level2") -> None:
        if book_channel not in LEVEL2_CHANNELS:
            raise ConfigError(f"coinbase book channel {book_channel!r} is not one of {LEVEL2_CHANNELS}")
        self.heartbeat = heartbeat
        # resubscribed together: a fresh snapshot and a last_match re-anchor both
        self.book_channels = (book_channel, "matches")
        super().__init__(symbols_list(symbols), venue="coinbase", endpoint=endpoint,
                         rest_endpoint=rest_endpoint, journal=journal, settings=settings)

    def ws_url(self) -> str:
        """The websocket URL."""
        return self.endpoint or WS_URL

    def make_sync(self) -> CoinbaseSync:
        """Coinbase's live sync (the batch decoder plus the trade-id chain)."""
        return CoinbaseSync()

    @staticmethod
    def _message(kind: str, products: list[str], channels: Sequence[str]) -> str:
        return orjson.dumps({"type": kind, "product_ids": products, "channels": list(channels)}).decode()

    def subscribe_messages(self) -> list[str]:
        """level2 + matches (+ heartbeat) for every product."""
        channels = (*self.book_channels, "heartbeat") if self.heartbeat else self.book_channels
        return [self._message("subscribe", self.symbols, channels)]

    def resubscribe_messages(self, symbol: str) -> list[str]:
        """Unsubscribe and subscribe the product's level2 and matches: a fresh snapshot and last_match."""
        return [self._message("unsubscribe", [symbol], self.book_channels),
                self._message("subscribe", [symbol], self.book_channels)]
