"""BitMEX realtime websocket wire shapes, as BitMEX spells them.

Data frames: ``{"table": "orderBookL2"|"quote"|"trade", "action": "partial"|"insert"|"update"|
"delete", "data": [...]}``.

* orderBookL2 rows: ``{"symbol", "id", "side": "Buy"|"Sell", "size", "price"}``; ``update``
  rows carry ``size`` but (in 2021 captures) no ``price``, ``delete`` rows neither;
* quote rows: ``{"timestamp", "symbol", "bidSize", "bidPrice", "askPrice", "askSize"}``;
* trade rows: ``{"timestamp", "symbol", "side" (taker), "size", "price", "trdMatchID", ...}``.

Control frames have no ``table``: ``info`` (welcome), ``success``/``subscribe``, ``error``...
Prices are JSON floats, sizes integer contracts; timestamps ISO 8601 with milliseconds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

ORDER_BOOK_L2, QUOTE, TRADE = "orderBookL2", "quote", "trade"
PARTIAL, INSERT, UPDATE, DELETE = "partial", "insert", "update", "delete"
ACTIONS = frozenset({PARTIAL, INSERT, UPDATE, DELETE})
BUY, SELL = "Buy", "Sell"
CONTROL_KEYS = frozenset({"info", "success", "subscribe", "unsubscribe"})

_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")


@lru_cache(maxsize=4096)
def _epoch_s(whole: str) -> int:
    return int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())


def iso_to_ns(text: str) -> int | None:
    """``2021-07-22T22:36:09.757Z`` -> ns since the epoch, exactly; None if not that shape, not a
    calendar time, or beyond int64 ns (after 2262-04-11: it broke the chunk's columns)."""
    match = _ISO.match(text)
    if match is None:
        return None
    try:
        ns = _epoch_s(match.group(1)) * 1_000_000_000 + int((match.group(2) or "").ljust(9, "0"))
    except ValueError:  # month 13, day 32, ...
        return None
    return ns if ns < _NS_LIMIT else None


_NS_LIMIT = 1 << 63
