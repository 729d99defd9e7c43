"""Deribit: ``ticker.<instrument>.<interval>`` (mark, index, open interest, funding of perpetuals)
and ``deribit_price_index.<index>`` subscriptions (docs/derivatives.md).

Deribit sends JSON numbers, read from their text exactly. A perpetual's ``current_funding`` is the
funding rate, as Tardis reads it (``funding_8h``, the rate over the last 8 hours, is not stored);
Deribit funds continuously, so there is no funding time. Marks of combo instruments (future spreads) can be
below zero.
"""

from __future__ import annotations

from typing import Any

from tapeflow.derivatives.base import DerivativesDecoder, computed_price, present, quantity, rate, time_ms
from tapeflow.errors import BadInput
from tapeflow.schemas.records import UNDEF_TS
from tapeflow.venues.fields import field, obj, text
from tapeflow.wire.capture import CaptureLine
from tapeflow.wire.rejects import Reason

VENUE = "deribit"
_OTHER_CHANNELS = frozenset(
    {
        "book",
        "trades",
        "quote",
        "perpetual",
        "incremental_ticker",
        "chart",
        "markprice",
        "estimated_expiration_price",
        "instrument",
        "deribit_volatility_index",
    }
)


class DeribitDerivatives(DerivativesDecoder):
    """Deribit ticker and price-index subscriptions."""

    venue = VENUE

    def message(self, msg: Any, line: CaptureLine) -> None:
        """One JSON-RPC frame: a ``subscription`` notification, or an answer / heartbeat."""
        msg = obj(msg, "frame")
        if "error" in msg:
            error = msg["error"]
            raise BadInput(Reason.VENUE_ERROR, f"{error.get('message') if type(error) is dict else error}")
        if msg.get("method") != "subscription":
            if "result" in msg or msg.get("method") == "heartbeat":
                self.quiet("rpc answer or heartbeat")
                return
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"method {msg.get('method')!r}")
        params = obj(field(msg, "params"), "params")
        channel = text(params, "channel")
        kind = channel.split(".", 1)[0]
        if kind == "ticker":
            self.ticker(obj(field(params, "data"), "data"), line)
        elif kind == "deribit_price_index":
            data = obj(field(params, "data"), "data")
            self.frame_symbol = text(data, "index_name")
            self.add_index(line, self.frame_symbol, time_ms(data, "timestamp"), computed_price(data, "price"))
        elif kind in _OTHER_CHANNELS:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"channel {kind!r} is not a derivatives channel")
        else:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"channel {channel!r}")

    def ticker(self, data: dict[str, Any], line: CaptureLine) -> None:
        """Mark, index and open interest of any instrument; the funding rate of a perpetual."""
        symbol = self.frame_symbol = self.check_symbol(data.get("instrument_name"))
        ts = time_ms(data, "timestamp")
        mark = computed_price(data, "mark_price", signed=True)
        index = computed_price(data, "index_price") if present(data, "index_price") else None
        oi = quantity(data, "open_interest") if present(data, "open_interest") else None
        funding = rate(data, "current_funding") if present(data, "current_funding") else None
        self.add_mark(line, symbol, ts, mark)
        if index is not None:
            self.add_index(line, symbol, ts, index)
        if oi is not None:
            self.add_open_interest(line, symbol, ts, oi)
        if funding is not None:
            self.add_funding(line, symbol, ts, funding, UNDEF_TS)
