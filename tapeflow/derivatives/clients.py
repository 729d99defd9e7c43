"""The live connectors of the derivatives websocket channels, by venue (``tapeflow live
--derivatives``; docs/derivatives.md): each is its venue's connector subscribing the derivatives
channels and decoding them with the derivatives decoder."""

from __future__ import annotations

import importlib

from tapeflow.errors import ConfigError

LIVE_CLIENTS: dict[str, str] = {
    "binance": "tapeflow.venues.binance.client:BinanceDerivativesClient",
    "bybit": "tapeflow.venues.bybit.client:BybitDerivativesClient",
    "okx": "tapeflow.venues.okx.client:OkxDerivativesClient",
}


def client_class(venue: str) -> type:
    """The derivatives connector class of ``venue`` (imported here, not at start-up).

    Raises:
        ConfigError: the venue has no derivatives connector (naming those that have one).
    """
    if venue not in LIVE_CLIENTS:
        raise ConfigError(f"no derivatives websocket connector for venue {venue!r}; venues with one: "
                          f"{', '.join(sorted(LIVE_CLIENTS))}")
    module, _, name = LIVE_CLIENTS[venue].partition(":")
    cls: type = getattr(importlib.import_module(module), name)
    return cls
