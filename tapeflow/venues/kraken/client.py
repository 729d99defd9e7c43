"""Kraken websocket v1 live client: ``book-N`` (CRC32 checked on every update) and ``trade``.

One connection subscribes every pair's book and trades. Kraken sends a ``heartbeat`` each second
without traffic and answers ``{"event": "ping"}`` with ``pong``; the connector's stale timer
reconnects when nothing arrives at all. A checksum mismatch resyncs the pair by unsubscribing
and subscribing its book again (Kraken has no REST book snapshot for websocket sync).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from tapeflow.errors import ConfigError
from tapeflow.journal import Journal
from tapeflow.live.connector import ConnectorSettings
from tapeflow.venues.kraken.sync import KrakenSync
from tapeflow.venues.resubscribe import ResubscribingClient, symbols_list

WS_URL = "wss://ws.kraken.com"
DEPTHS = (10, 25, 100, 500, 1000)


class KrakenClient(ResubscribingClient):
    """Live Kraken v1 client.

    Args:
        symbols: pairs as Kraken spells them (``XBT/USD``), or a comma-separated string.
        endpoint: websocket URL (default ``wss://ws.kraken.com``; a replay server's ``ws_url``).
        rest_endpoint: unused (Kraken resyncs over the websocket); accepted for a uniform signature.
        journal: a journal, a folder for one, or None.
        settings: session-loop settings.
        depth: book depth to subscribe, one of 10, 25, 100, 500, 1000.
        trades: also subscribe the ``trade`` channel.

    Raises:
        ConfigError: ``depth`` is not one Kraken offers.
    """

    default_ping_interval_s = 20.0

    def __init__(self, symbols: Sequence[str] | str, *, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None, depth: int = 1000, trades: bool = True) -> None:
        if depth not in DEPTHS:
            raise ConfigError(f"kraken book depth {depth} is not one of {DEPTHS}")
        self.depth = depth
        self.trades = trades
        super().__init__(symbols_list(symbols), venue="kraken", endpoint=endpoint,
                         rest_endpoint=rest_endpoint, journal=journal, settings=settings)

    def ws_url(self) -> str:
        """The websocket URL."""
        return self.endpoint or WS_URL

    def make_sync(self) -> KrakenSync:
        """Kraken's live sync (the batch decoder plus per-update checksum events)."""
        return KrakenSync()

    def _message(self, event: str, pairs: list[str], name: str) -> str:
        sub: dict[str, object] = {"name": name}
        if name == "book":
            sub["depth"] = self.depth
        return orjson.dumps({"event": event, "pair": pairs, "subscription": sub}).decode()

    def subscribe_messages(self) -> list[str]:
        """Book (and trade) subscriptions for every pair."""
        out = [self._message("subscribe", self.symbols, "book")]
        if self.trades:
            out.append(self._message("subscribe", self.symbols, "trade"))
        return out

    def resubscribe_messages(self, symbol: str) -> list[str]:
        """Unsubscribe and subscribe the pair's book: Kraken answers with a fresh snapshot."""
        return [self._message("unsubscribe", [symbol], "book"), self._message("subscribe", [symbol], "book")]

    def ping_message(self) -> str:
        """Kraken's application-level ping."""
        return '{"event":"ping"}'
