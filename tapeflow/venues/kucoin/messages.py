"""KuCoin wire vocabulary (spot websocket ``/market/*`` topics and the REST level-2 snapshot).

``trade.l2update`` data: ``symbol``, ``sequenceStart``, ``sequenceEnd``, ``changes`` =
``{"asks": [[price, size, sequence]], "bids": [...]}``: size absolute ("0" deletes), and a
change with price "0" only advances the sequence. ``trade.l3match`` (``/market/match``):
``sequence``, ``side`` (taker), ``price``, ``size``, ``tradeId``, ``time`` (ns as a string).
``trade.ticker``: ``sequence``, ``bestBid``/``bestBidSize``, ``bestAsk``/``bestAskSize``,
``time`` (ms). REST ``/api/v3/market/orderbook/level2`` (and ``level2_20/100``):
``{"code": "200000", "data": {"time", "sequence", "bids", "asks"}}``.
"""

from __future__ import annotations

L2_UPDATE = "trade.l2update"
MATCH = ("trade.l3match", "match")
TICKER = "trade.ticker"
UNSUPPORTED_PREFIXES = ("trade.candles", "trade.snapshot", "level1", "level2")
CONTROL_TYPES = frozenset({"welcome", "ack", "pong", "ping"})
OK_CODE = "200000"
VENUE = "kucoin"
