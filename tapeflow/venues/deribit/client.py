"""Deribit websocket v2 live client: ``book.<instrument>.raw`` (``prev_change_id`` chain) and
``trades.<instrument>.raw``.

Deribit speaks JSON-RPC: one ``public/subscribe`` names every channel. A broken chain resyncs the
instrument by unsubscribing and subscribing its ``book`` channel again, which brings a fresh
snapshot. The client sends ``public/test`` every 20 s so an idle connection stays open.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import orjson

from tapeflow.journal import Journal
from tapeflow.live.connector import ConnectorSettings
from tapeflow.venues.deribit.sync import DeribitSync
from tapeflow.venues.resubscribe import ResubscribingClient, symbols_list

WS_URL = "wss://www.deribit.com/ws/api/v2"


class DeribitClient(ResubscribingClient):
    """Live Deribit client.

    Args:
        symbols: instrument names (``BTC-PERPETUAL``, ``BTC-30APR21-60000-C``), or a comma-separated string.
        endpoint: websocket URL (default ``wss://www.deribit.com/ws/api/v2``; a replay server's ``ws_url``).
        rest_endpoint: unused (Deribit resyncs over the websocket); accepted for a uniform signature.
        journal: a journal, a folder for one, or None.
        settings: session-loop settings.
        trades: also subscribe the ``trades`` channels.
    """

    default_ping_interval_s = 20.0

    def __init__(self, symbols: Sequence[str] | str, *, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None, trades: bool = True) -> None:
        self.trades = trades
        self._ids = itertools.count(1)
        super().__init__(symbols_list(symbols), venue="deribit", endpoint=endpoint,
                         rest_endpoint=rest_endpoint, journal=journal, settings=settings)

    def ws_url(self) -> str:
        """The public websocket URL."""
        return self.endpoint or WS_URL

    def make_sync(self) -> DeribitSync:
        """Deribit's live sync (the batch decoder plus change-chain events)."""
        return DeribitSync()

    def _call(self, method: str, channels: list[str]) -> str:
        return orjson.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                             "params": {"channels": channels}}).decode()

    def subscribe_messages(self) -> list[str]:
        """Book (and trades) subscriptions for every instrument, in one call."""
        kinds = ("book", "trades") if self.trades else ("book",)
        return [self._call("public/subscribe", [f"{k}.{s}.raw" for k in kinds for s in self.symbols])]

    def resubscribe_messages(self, symbol: str) -> list[str]:
        """Unsubscribe and subscribe the instrument's book: Deribit answers with a fresh snapshot."""
        return [self._call("public/unsubscribe", [f"book.{symbol}.raw"]),
                self._call("public/subscribe", [f"book.{symbol}.raw"])]

    def ping_message(self) -> str:
        """``public/test``: answered with a result (a quiet frame)."""
        return orjson.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": "public/test",
                             "params": {}}).decode()
