"""Derivatives streams: funding, mark and index prices, open interest, liquidations and insurance
funds of the perpetual-futures venues (docs/derivatives.md).

Each venue module has one decoder on the shared frame loop (:mod:`tapeflow.venues.decoder`), writing
the records of :mod:`tapeflow.schemas.derivatives`; :func:`decoder` names them for the CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapeflow.errors import ConfigError

if TYPE_CHECKING:  # not at import: `tapeflow --help` lists FORMATS without loading Arrow and the decoders
    from tapeflow.venues.decoder import VenueDecoder
    from tapeflow.wire.capture import Decoded

# format -> (module, class, keyword arguments)
FORMATS: dict[str, tuple[str, str, dict[str, str]]] = {
    "binance-futures": ("binance", "BinanceDerivatives", {"market": "binance-usdm"}),
    "binance-delivery": ("binance", "BinanceDerivatives", {"market": "binance-coinm"}),
    "bybit": ("bybit", "BybitDerivatives", {}),
    "okx": ("okx", "OkxDerivatives", {}),
    "deribit": ("deribit", "DeribitDerivatives", {}),
    "bitmex": ("bitmex", "BitmexDerivatives", {}),
}


def decoder(fmt: str) -> VenueDecoder:
    """A fresh decoder of derivatives format ``fmt``.

    Raises:
        ConfigError: ``fmt`` is not one of :data:`FORMATS` (naming them).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown derivatives format {fmt!r}; known: {', '.join(sorted(FORMATS))}")
    module, cls, kwargs = FORMATS[fmt]
    return getattr(importlib.import_module(f"tapeflow.derivatives.{module}"), cls)(**kwargs)


def decode(fmt: str, paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode capture files (``<recv_ns> <json>`` lines or cryptofeed logs) of format ``fmt``."""
    return decoder(fmt).run(paths)


def channel_of(msg: Any) -> str:
    """The channel of a raw venue message, in the venue's own words (``markPrice``, ``tickers``,
    ``funding-rate``, ``ticker``, ``liquidation``); '' for anything else."""
    if not isinstance(msg, dict):
        return ""
    if "stream" in msg:
        return msg["stream"].split("@")[1]
    if "topic" in msg:
        return msg["topic"].split(".")[0]
    if "arg" in msg:
        return msg["arg"].get("channel", "")
    if "params" in msg:
        return msg["params"].get("channel", "").split(".")[0]
    return str(msg.get("table", ""))
