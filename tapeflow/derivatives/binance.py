"""Binance USD-M and COIN-M futures: ``markPrice``, ``indexPrice``, ``forceOrder`` streams and the
open interest, premium index and funding REST endpoints (docs/derivatives.md).

Websocket frames come bare (``{"e": ...}``), wrapped by the combined stream (``{"stream": ...,
"data": ...}``) or as the arrays of ``!markPrice@arr``; REST bodies as captured ``http`` lines
(or, as Tardis records it, the open interest body wrapped as a ``<symbol>@openInterest`` stream).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from tapeflow.derivatives.base import (
    DerivativesDecoder,
    balance,
    computed_price,
    optional_time_ms,
    order_side,
    present,
    quantity,
    rate,
    time_ms,
)
from tapeflow.errors import BadInput
from tapeflow.schemas.records import UNDEF_PRICE, UNDEF_TS
from tapeflow.venues.fields import field, load_json, obj, text
from tapeflow.wire.capture import CaptureLine
from tapeflow.wire.rejects import Reason

USDM, COINM = "binance-usdm", "binance-coinm"
_STREAMS = frozenset({"markPrice", "forceOrder", "indexPrice", "openInterest", "!markPrice", "!forceOrder"})
# events of the market streams decoded by the ``binance`` format, not here
_OTHER_EVENTS = frozenset(
    {
        "trade",
        "aggTrade",
        "depthUpdate",
        "bookTicker",
        "24hrTicker",
        "24hrMiniTicker",
        "kline",
        "continuous_kline",
        "contractInfo",
        "compositeIndex",
        "assetIndexUpdate",
    }
)


class BinanceDerivatives(DerivativesDecoder):
    """Binance futures derivatives streams and REST bodies.

    Args:
        market: ``binance-usdm`` (default) or ``binance-coinm``: the venue code of the rows.
    """

    venue = USDM

    def __init__(self, *, market: str = USDM, **kwargs: Any) -> None:
        self.venue = market
        super().__init__(**kwargs)

    def message(self, msg: Any, line: CaptureLine) -> None:
        """One websocket frame."""
        if type(msg) is list:
            for event in self.items(msg, "event array"):
                self.event(obj(event, "event"), line)
            return
        msg = obj(msg, "frame")
        if "result" in msg and "id" in msg:
            self.quiet("subscription answer")
            return
        if "code" in msg and "msg" in msg:
            raise BadInput(Reason.VENUE_ERROR, f"code {msg['code']}: {msg['msg']}")
        if "stream" not in msg:
            self.event(msg, line)
            return
        stream = text(msg, "stream")
        parts = stream.split("@")
        name = parts[0] if parts[0].startswith("!") or len(parts) == 1 else parts[1]
        data = field(msg, "data")
        if name == "openInterest":
            self.open_interest_body(obj(data, "data"), line)
        elif name not in _STREAMS:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"stream {stream!r} is decoded by the binance format")
        elif type(data) is list:
            self.message(data, line)
        else:
            self.event(obj(data, "data"), line)

    def event(self, ev: dict[str, Any], line: CaptureLine) -> None:
        """One event object (``e`` names it)."""
        kind = field(ev, "e")
        if kind == "markPriceUpdate":
            self.mark_price(ev, line)
        elif kind == "forceOrder":
            self.force_order(ev, line)
        elif kind == "indexPriceUpdate":
            self.frame_symbol = text(ev, "i")
            self.add_index(line, self.frame_symbol, time_ms(ev, "E"), computed_price(ev, "p"))
        elif kind in _OTHER_EVENTS:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"{kind} events are decoded by the binance format")
        else:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"event type {kind!r}")

    def mark_price(self, ev: dict[str, Any], line: CaptureLine) -> None:
        """``markPriceUpdate``: mark, index (``i``, newer streams) and, on perpetuals, the funding
        rate ``r`` for the funding at ``T`` (delivery contracts send no ``r``, an empty one, or ``T`` 0)."""
        symbol = self.frame_symbol = self.check_symbol(ev.get("s"))
        ts = time_ms(ev, "E")
        mark = computed_price(ev, "p")
        index = computed_price(ev, "i") if present(ev, "i") else None
        funding_time = optional_time_ms(ev, "T")
        funding = rate(ev, "r") if funding_time != UNDEF_TS else None
        self.add_mark(line, symbol, ts, mark)
        if index is not None:
            self.add_index(line, symbol, ts, index)
        if funding is not None and funding == funding:
            self.add_funding(line, symbol, ts, funding, funding_time)

    def force_order(self, ev: dict[str, Any], line: CaptureLine) -> None:
        """``forceOrder``: the liquidation order (side ``S``, price ``p``, original quantity ``q``)."""
        o = obj(field(ev, "o"), "o")
        symbol = self.frame_symbol = self.check_symbol(o.get("s"))
        self.add_liquidation(
            line, symbol, time_ms(o, "T"), order_side(o.get("S"), "S"), quantity(o, "p"), quantity(o, "q")
        )

    def open_interest_body(self, body: dict[str, Any], line: CaptureLine) -> None:
        """``/fapi/v1/openInterest`` (``/dapi/v1/openInterest``): ``time`` in newer answers only."""
        symbol = self.frame_symbol = self.check_symbol(body.get("symbol"))
        ts = time_ms(body, "time") if present(body, "time") else line.recv_ns  # older answers: no time
        self.add_open_interest(line, symbol, ts, quantity(body, "openInterest"))

    def http(self, line: CaptureLine) -> None:
        """A REST body, by the endpoint of its URL."""
        path = urlparse(line.url).path.rstrip("/")
        body = load_json(line.payload)
        if type(body) is dict and "code" in body and "msg" in body:
            raise BadInput(Reason.VENUE_ERROR, f"{path}: code {body['code']}: {body['msg']}")
        endpoint = path.rsplit("/", 1)[-1]
        if endpoint == "openInterest":
            self.open_interest_body(obj(body, "body"), line)
        elif endpoint == "openInterestHist":
            for row in self.items(body, "open interest history"):
                row = obj(row, "row")
                symbol = self.frame_symbol = self.check_symbol(row.get("symbol"))
                value = (
                    quantity(row, "sumOpenInterestValue")
                    if present(row, "sumOpenInterestValue")
                    else UNDEF_PRICE
                )
                self.add_open_interest(
                    line, symbol, time_ms(row, "timestamp"), quantity(row, "sumOpenInterest"), value
                )
        elif endpoint == "premiumIndex":
            for row in body if type(body) is list else [obj(body, "body")]:
                self.premium_index(obj(row, "row"), line)
        elif endpoint == "fundingRate":
            for row in self.items(body, "funding history"):
                row = obj(row, "row")
                symbol = self.frame_symbol = self.check_symbol(row.get("symbol"))
                when = time_ms(row, "fundingTime")
                self.add_funding(line, symbol, when, rate(row, "fundingRate"), when, settled=True)
        elif endpoint == "insuranceBalance":
            for fund in body if type(body) is list else [obj(body, "body")]:
                self.insurance_balance(obj(fund, "fund"), line)
        else:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"REST endpoint {path} is not a derivatives endpoint")

    def insurance_balance(self, fund: dict[str, Any], line: CaptureLine) -> None:
        """``/fapi/v1/insuranceBalance``: one fund shared by ``symbols``, a balance per asset. The
        fund is named by its symbols, sorted and comma-joined (Binance gives it no other name)."""
        symbols = [self.check_symbol(s) for s in self.items(field(fund, "symbols"), "symbols")]
        name = self.frame_symbol = ",".join(sorted(symbols))
        rows = [
            (time_ms(a, "updateTime"), text(a, "asset"), balance(a, "marginBalance"))
            for a in (obj(a, "asset") for a in self.items(field(fund, "assets"), "assets"))
        ]
        for ts, asset, nanos in rows:
            self.add_insurance(line, name, ts, asset, nanos)

    def premium_index(self, row: dict[str, Any], line: CaptureLine) -> None:
        """``/fapi/v1/premiumIndex``: mark, index and the last funding rate for the next funding."""
        symbol = self.frame_symbol = self.check_symbol(row.get("symbol"))
        ts = time_ms(row, "time")
        self.add_mark(line, symbol, ts, computed_price(row, "markPrice"))
        if present(row, "indexPrice"):
            self.add_index(line, symbol, ts, computed_price(row, "indexPrice"))
        funding_time = optional_time_ms(row, "nextFundingTime")
        funding = rate(row, "lastFundingRate")
        if funding_time != UNDEF_TS and funding == funding:
            self.add_funding(line, symbol, ts, funding, funding_time)
