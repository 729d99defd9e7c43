"""OKX v5 public websocket live client: ``books`` (seqId chain + checksum) and ``trades``.

OKX closes a connection that stays silent for 30 s, so the client sends the text ``ping`` every
20 s (answered by ``pong``). A ``prevSeqId`` break or a checksum mismatch resyncs the instrument
by unsubscribing and subscribing its ``books`` channel again, which brings a fresh snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from tapeflow.errors import ConfigError
from tapeflow.journal import Journal
from tapeflow.live.connector import Connector, ConnectorSettings
from tapeflow.venues.okx import messages as m
from tapeflow.venues.okx.sync import OkxSync
from tapeflow.venues.resubscribe import ResubscribingClient, symbols_list

WS_HOST = "wss://ws.okx.com:8443"
WS_PATH = "/ws/v5/public"
# the per-instrument derivatives channels of OkxDerivativesClient (liquidation-orders go per type)
DERIVATIVE_CHANNELS = ("funding-rate", "mark-price", "index-tickers", "open-interest")


class OkxClient(ResubscribingClient):
    """Live OKX v5 client.

    Args:
        symbols: instrument ids (``BTC-USDT``, ``ETH-USDT-SWAP``), or a comma-separated string.
        endpoint: websocket base URL (default ``wss://ws.okx.com:8443``; a replay server's
            ``ws_url``); ``/ws/v5/public`` is appended unless the URL has a path already.
        rest_endpoint: unused (OKX resyncs over the websocket); accepted for a uniform signature.
        journal: a journal, a folder for one, or None.
        settings: session-loop settings.
        book_channel: ``books`` (400 levels, 100 ms) or a tick-by-tick ``books-l2-tbt`` /
            ``books50-l2-tbt`` (those need a login on OKX).
        trades: also subscribe the ``trades`` channel.

    Raises:
        ConfigError: ``book_channel`` is not an OKX book channel.
    """

    default_ping_interval_s = 20.0

    def __init__(self, symbols: Sequence[str] | str, *, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None, book_channel: str = "books",
                 trades: bool = True) -> None:
        if book_channel not in m.BOOK_CHANNELS:
            raise ConfigError(f"okx book channel {book_channel!r} is not one of {sorted(m.BOOK_CHANNELS)}")
        self.book_channel = book_channel
        self.trades = trades
        super().__init__(symbols_list(symbols), venue="okx", endpoint=endpoint,
                         rest_endpoint=rest_endpoint, journal=journal, settings=settings)

    def ws_url(self) -> str:
        """The public websocket URL."""
        base = (self.endpoint or WS_HOST).rstrip("/")
        return base if base.split("://", 1)[-1].count("/") else base + WS_PATH

    def make_sync(self) -> OkxSync:
        """OKX's live sync (the batch decoder plus seqId/checksum events)."""
        return OkxSync()

    def _message(self, op: str, symbols: list[str], channels: Sequence[str]) -> str:
        args = [{"channel": c, "instId": s} for c in channels for s in symbols]
        return orjson.dumps({"op": op, "args": args}).decode()

    def subscribe_messages(self) -> list[str]:
        """Book (and trades) subscriptions for every instrument."""
        channels = (self.book_channel, "trades") if self.trades else (self.book_channel,)
        return [self._message("subscribe", self.symbols, channels)]

    def resubscribe_messages(self, symbol: str) -> list[str]:
        """Unsubscribe and subscribe the instrument's book: OKX answers with a fresh snapshot."""
        return [self._message("unsubscribe", [symbol], (self.book_channel,)),
                self._message("subscribe", [symbol], (self.book_channel,))]

    def ping_message(self) -> str:
        """OKX's text ping."""
        return "ping"


class OkxDerivativesClient(Connector):
    """OKX v5 derivatives channels on the connector: ``funding-rate``, ``mark-price``,
    ``open-interest`` per instrument, ``index-tickers`` per index (the instrument's first two
    parts: ``BTC-USDT`` of ``BTC-USDT-SWAP``) and ``liquidation-orders`` per instrument type,
    decoded by the derivatives decoder (:class:`tapeflow.derivatives.okx.OkxDerivatives`).

    No book, so no sync: every frame is decoded in the micro-batch it came in. The text ``ping``
    every 20 s, as for the book client.

    Args:
        symbols: instrument ids (``BTC-USDT-SWAP``, ``BTC-USD-240628``), or a comma-separated string.
        endpoint: websocket base URL (default ``wss://ws.okx.com:8443``; a replay server's ``ws_url``).
        rest_endpoint: unused; accepted for a uniform signature.
        journal: a journal, a folder for one, or None.
        settings: session-loop settings.
        channels: the per-instrument channels (default all of :data:`DERIVATIVE_CHANNELS`).
        liquidation_types: instrument types whose ``liquidation-orders`` are subscribed (default
            those of the symbols: ``SWAP`` for ``-SWAP`` ids, ``FUTURES`` for dated ones); empty: none.

    Raises:
        ConfigError: an unknown channel or instrument type.
    """

    default_ping_interval_s = 20.0
    decoder: Any

    def __init__(self, symbols: Sequence[str] | str, *, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None,
                 channels: Sequence[str] = DERIVATIVE_CHANNELS,
                 liquidation_types: Sequence[str] | None = None) -> None:
        unknown = set(channels) - set(DERIVATIVE_CHANNELS)
        if unknown:
            raise ConfigError(f"okx derivatives channels {sorted(unknown)} are not among "
                              f"{DERIVATIVE_CHANNELS}")
        names = symbols_list(symbols)
        types = [_inst_type(s) for s in names] if liquidation_types is None else list(liquidation_types)
        bad = set(types) - {"SWAP", "FUTURES", "OPTION"}
        if bad:
            raise ConfigError(f"okx liquidation-orders instrument types {sorted(bad)} are not "
                              "SWAP, FUTURES, OPTION")
        self.channels = tuple(channels)
        self.liquidation_types = tuple(dict.fromkeys(types))
        super().__init__(names, venue="okx", endpoint=endpoint, rest_endpoint=rest_endpoint,
                         journal=journal, settings=settings)

    def ws_url(self) -> str:
        """The public websocket URL."""
        base = (self.endpoint or WS_HOST).rstrip("/")
        return base if base.split("://", 1)[-1].count("/") else base + WS_PATH

    def subscription_args(self) -> list[dict[str, str]]:
        """The ``args`` of the subscribe request."""
        args = []
        for channel in self.channels:
            if channel == "index-tickers":
                indexes = dict.fromkeys("-".join(s.split("-")[:2]) for s in self.symbols)
                args += [{"channel": channel, "instId": i} for i in indexes]
            else:  # funding is a perpetual's: OKX refuses funding-rate for a dated future
                args += [{"channel": channel, "instId": s} for s in self.symbols
                         if channel != "funding-rate" or _inst_type(s) == "SWAP"]
        return args + [{"channel": "liquidation-orders", "instType": t} for t in self.liquidation_types]

    def subscribe_messages(self) -> list[str]:
        """One subscribe request for every channel."""
        return [orjson.dumps({"op": "subscribe", "args": self.subscription_args()}).decode()]

    def make_decoder(self) -> Any:
        from tapeflow.derivatives.okx import OkxDerivatives

        return OkxDerivatives()

    def ping_message(self) -> str:
        """OKX's text ping."""
        return "ping"



def _inst_type(inst_id: str) -> str:
    parts = inst_id.split("-")
    if parts[-1] == "SWAP":
        return "SWAP"
    return "OPTION" if len(parts) >= 5 else "FUTURES"
