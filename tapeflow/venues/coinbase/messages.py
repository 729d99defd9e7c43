"""Coinbase (Exchange / Pro) websocket feed wire shapes, as Coinbase spells them.

* ``{"type": "snapshot", "product_id", "bids": [[px, size]], "asks": [...]}`` (no time, no
  sequence);
* ``{"type": "l2update", "product_id", "changes": [["buy"|"sell", px, size]], "time"}``: size is
  absolute, "0" deletes. The level2 channel carries NO sequence number, so a lost frame cannot
  be detected here: deltas carry ``sequence`` -1;
* ``{"type": "match"|"last_match", "trade_id", "side" (the MAKER's side), "size", "price",
  "product_id", "sequence", "time"}``; Coinbase sends one ``last_match`` (the product's latest
  trade) on every ``matches`` subscription, so a resubscription repeats a trade already received;
* ``{"type": "ticker", "sequence", "product_id", "best_bid", "best_ask", ["best_bid_size",
  "best_ask_size"], "time", ...}``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

SNAPSHOT, L2UPDATE, TICKER = "snapshot", "l2update", "ticker"
MATCH, LAST_MATCH = "match", "last_match"
MATCHES = frozenset({MATCH, LAST_MATCH})
CONTROL = frozenset({"subscriptions", "heartbeat", "status"})
BUY, SELL = "buy", "sell"

_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")


@lru_cache(maxsize=4096)
def _epoch_s(whole: str) -> int:
    return int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())


def iso_to_ns(text: str) -> int | None:
    """``2021-04-17T16:43:37.075687Z`` -> ns since the epoch, exactly; None if not that shape, not
    a calendar time, or beyond int64 ns (after 2262-04-11: found by fuzzing, it broke the chunk)."""
    m = _ISO.match(text)
    if m is None:
        return None
    try:
        ns = _epoch_s(m.group(1)) * 1_000_000_000 + int((m.group(2) or "").ljust(9, "0"))
    except ValueError:  # month 13, day 32, ...
        return None
    return ns if ns < _NS_LIMIT else None


_NS_LIMIT = 1 << 63
