"""Bybit wire vocabulary: v5 public topics and the legacy v2 (``realtime_public``) ones.

v5 ``orderbook.{depth}.{symbol}``: ``type`` snapshot|delta, ``ts`` (ms), ``cts`` (matching engine
ms), ``data`` = ``{"s", "b": [[price, size]], "a": [...], "u", "seq"}``; size absolute, "0"
deletes, ``u`` rises by exactly 1 per message and a snapshot resets the book. v5
``publicTrade.{symbol}``: ``data`` = ``[{"T", "s", "S" (taker Buy|Sell), "v", "p", "i"}]``.
History files (``*.data.zip``) hold the same orderbook messages, one per line.

v2 ``orderBookL2_25.{symbol}``: snapshot ``data.order_book`` (or a bare list) of
``{"price", "symbol", "id", "side", "size"}``; delta ``data`` = ``{"delete", "update",
"insert"}`` lists of such levels (deletes carry no size); ``cross_seq``, ``timestamp_e6`` (µs).
Sizes are JSON numbers there, so those frames are parsed with exact decimals. v2
``trade.{symbol}``: ``[{"price", "size", "side", "trade_id", "trade_time_ms"}]``.
"""

from __future__ import annotations

V5_BOOK = "orderbook"
V5_TRADE = "publicTrade"
V2_BOOK = ("orderBookL2_25", "orderBookL2_200", "orderBook_200")
V2_TRADE = "trade"
UNSUPPORTED = ("tickers", "kline", "liquidation", "instrument_info", "klineV2", "insurance", "lt")
SIDES = {"Buy": ord("B"), "Sell": ord("A")}
VENUE = "bybit"
