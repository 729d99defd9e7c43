"""Binance wire vocabulary: event types, stream names and hosts, as Binance spells them.

Depth diff ``depthUpdate``: ``U`` first update id, ``u`` final update id, ``pu`` previous final
id (futures only), ``b``/``a`` ``[[price, qty], ...]`` with absolute qty ("0" deletes), ``E``
event time ms, ``T`` transaction time ms (futures). ``trade``: ``t`` id, ``p``, ``q``, ``m`` buyer
is maker, ``T``. ``aggTrade``: ``a`` aggregate id, else as trade. ``bookTicker``: ``u``, ``b``/``B``
best bid price/qty, ``a``/``A`` best ask; spot sends it without ``e`` or times. REST depth
snapshot: ``lastUpdateId``, ``bids``, ``asks`` (futures add ``E``/``T``).
"""

from __future__ import annotations

import re

DEPTH_UPDATE = "depthUpdate"
TRADE = "trade"
AGG_TRADE = "aggTrade"
BOOK_TICKER = "bookTicker"

# Channels Binance publishes that carry no book, trade or BBO information tapeflow keeps.
UNSUPPORTED_EVENTS = frozenset({
    "kline", "continuous_kline", "24hrTicker", "24hrMiniTicker", "markPriceUpdate", "forceOrder",
    "indexPriceUpdate", "compositeIndex", "contractInfo", "assetIndexUpdate",
})

# "<symbol>@depth5", "@depth20@100ms": partial-book streams are top-N snapshots, not diffs.
PARTIAL_DEPTH_STREAM = re.compile(r"@depth\d+")

SPOT, USDM, COINM = "binance", "binance-usdm", "binance-coinm"

HOST_VENUE = {
    "stream.binance.com": SPOT,
    "api.binance.com": SPOT,
    "data-stream.binance.vision": SPOT,
    "fstream.binance.com": USDM,
    "fapi.binance.com": USDM,
    "dstream.binance.com": COINM,
    "dapi.binance.com": COINM,
}
