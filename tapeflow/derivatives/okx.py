"""OKX v5: ``funding-rate``, ``mark-price``, ``index-tickers``, ``open-interest`` and
``liquidation-orders`` streams, and their REST twins plus the insurance fund (docs/derivatives.md).

Every v5 push is ``{"arg": {"channel": ...}, "data": [...]}``; REST bodies are ``{"code": "0",
"data": [...]}`` with rows of the same shape, so both go through one row reader per channel. The
retired v3 tables (``swap/funding_rate``, ``*/mark_price``, ``*/liquidation``) of older captures
are read too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from tapeflow.derivatives.base import (
    DerivativesDecoder,
    balance,
    computed_price,
    iso_ns,
    optional_time_ms,
    order_side,
    present,
    quantity,
    rate,
    time_ms,
)
from tapeflow.errors import BadInput
from tapeflow.schemas.records import ASK, BID, UNDEF_PRICE, UNDEF_TS
from tapeflow.venues.fields import field, load_json, obj, text
from tapeflow.wire.capture import RECV, CaptureLine
from tapeflow.wire.rejects import Reason

VENUE = "okx"
_OTHER_CHANNELS = frozenset(
    {
        "tickers",
        "books",
        "books5",
        "books-l2-tbt",
        "books50-l2-tbt",
        "bbo-tbt",
        "trades",
        "trades-all",
        "price-limit",
        "opt-summary",
        "estimated-price",
        "instruments",
    }
)


def _ts(row: dict[str, Any], line: CaptureLine) -> int:
    """The row's ``ts`` in ns; the capture time where the venue sends none (``funding-rate``
    pushes before 2022), as Tardis and the BitMEX decoder do."""
    return time_ms(row, "ts") if present(row, "ts") else line.recv_ns


_V3_SIDES = {"3": ASK, "4": BID}


def _iso(row: dict[str, Any], key: str) -> int:
    return iso_ns(field(row, key), key)


class OkxDerivatives(DerivativesDecoder):
    """OKX v5 derivatives channels and REST bodies."""

    venue = VENUE

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rows: dict[str, Callable[[dict[str, Any], CaptureLine], None]] = {
            "funding-rate": self.funding_rate,
            "mark-price": self.mark_price,
            "index-tickers": self.index_ticker,
            "open-interest": self.open_interest_row,
            "liquidation-orders": self.liquidation_orders,
        }

    def frame(self, index: int, line: CaptureLine) -> None:
        """A captured line; the text ``pong`` (OKX's answer to a live client's ``ping``) is framing."""
        if line.kind == RECV and line.payload.strip() == b"pong":
            self.quiet("pong")
            return
        super().frame(index, line)

    def message(self, msg: Any, line: CaptureLine) -> None:
        """One websocket push (``arg.channel`` names it) or an event answer."""
        msg = obj(msg, "frame")
        if "event" in msg:
            if msg["event"] == "error":
                raise BadInput(Reason.VENUE_ERROR, f"code {msg.get('code')}: {msg.get('msg')}")
            self.quiet(f"{msg['event']} event")
            return
        if "table" in msg:
            self.v3(text(msg, "table"), field(msg, "data"), line)
            return
        arg = obj(field(msg, "arg"), "arg")
        channel = text(arg, "channel")
        if channel == "liquidations":
            self.generated_liquidations(arg, field(msg, "data"), line)
            return
        reader = self._rows.get(channel)
        if reader is None:
            reason = Reason.UNSUPPORTED_CHANNEL if channel in _OTHER_CHANNELS else Reason.UNKNOWN_MESSAGE
            raise BadInput(reason, f"channel {channel!r} is not a derivatives channel")
        self.rows_of(reader, field(msg, "data"), line)

    def v3(self, table: str, data: Any, line: CaptureLine) -> None:
        """The retired OKEx v3 tables (captures before 2022): ``swap/funding_rate``,
        ``{swap,futures}/mark_price`` and the polled ``{swap,futures}/liquidation``."""
        kind = table.rsplit("/", 1)[-1]
        readers = {
            "funding_rate": self.v3_funding,
            "mark_price": self.v3_mark,
            "liquidation": self.v3_liquidation,
        }
        reader = readers.get(kind)
        if reader is None:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"OKEx v3 table {table!r} is not a derivatives table")
        self.rows_of(reader, data, line)

    def v3_funding(self, row: dict[str, Any], line: CaptureLine) -> None:
        """``funding_rate`` for ``funding_time``, the next one estimated as ``estimated_rate``."""
        symbol = self.frame_symbol = self.check_symbol(row.get("instrument_id"))
        when = _iso(row, "funding_time")
        self.add_funding(
            line, symbol, line.recv_ns, rate(row, "funding_rate"), when, rate(row, "estimated_rate")
        )

    def v3_mark(self, row: dict[str, Any], line: CaptureLine) -> None:
        symbol = self.frame_symbol = self.check_symbol(row.get("instrument_id"))
        self.add_mark(line, symbol, _iso(row, "timestamp"), computed_price(row, "mark_price"))

    def v3_liquidation(self, row: dict[str, Any], line: CaptureLine) -> None:
        """A polled liquidation: ``type`` 3 closed a long (a sell order), 4 a short (a buy)."""
        symbol = self.frame_symbol = self.check_symbol(row.get("instrument_id"))
        kind = str(field(row, "type"))
        if kind not in _V3_SIDES:
            raise BadInput(Reason.BAD_SIDE, f"liquidation type {kind!r} is neither 3 (long) nor 4 (short)")
        self.add_liquidation(
            line,
            symbol,
            _iso(row, "created_at"),
            _V3_SIDES[kind],
            quantity(row, "price"),
            quantity(row, "size"),
        )

    def rows_of(
        self, reader: Callable[[dict[str, Any], CaptureLine], None], data: Any, line: CaptureLine
    ) -> None:
        """Each row of a data array through ``reader``."""
        for row in self.items(data, "data"):
            reader(obj(row, "row"), line)

    def funding_rate(self, row: dict[str, Any], line: CaptureLine) -> None:
        """The current rate for ``fundingTime`` and the predicted next one (either may be absent)."""
        symbol = self.frame_symbol = self.check_symbol(row.get("instId"))
        funding = rate(row, "fundingRate")
        predicted = rate(row, "nextFundingRate")
        when = optional_time_ms(row, "fundingTime")
        if funding != funding and predicted != predicted and when == UNDEF_TS:
            raise BadInput(Reason.MISSING_FIELD, f"{symbol} funding-rate row has no rate and no funding time")
        self.add_funding(line, symbol, _ts(row, line), funding, when, predicted)

    def mark_price(self, row: dict[str, Any], line: CaptureLine) -> None:
        symbol = self.frame_symbol = self.check_symbol(row.get("instId"))
        self.add_mark(line, symbol, _ts(row, line), computed_price(row, "markPx"))

    def index_ticker(self, row: dict[str, Any], line: CaptureLine) -> None:
        symbol = self.frame_symbol = self.check_symbol(row.get("instId"))
        self.add_index(line, symbol, _ts(row, line), computed_price(row, "idxPx"))

    def open_interest_row(self, row: dict[str, Any], line: CaptureLine) -> None:
        symbol = self.frame_symbol = self.check_symbol(row.get("instId"))
        value = quantity(row, "oiCcy") if present(row, "oiCcy") else UNDEF_PRICE
        self.add_open_interest(line, symbol, _ts(row, line), quantity(row, "oi"), value)

    def liquidation_orders(self, row: dict[str, Any], line: CaptureLine) -> None:
        """One instrument's liquidations: each detail is an order (``side``) at the bankruptcy price."""
        symbol = self.frame_symbol = self.check_symbol(row.get("instId"))
        details = [obj(d, "detail") for d in self.items(field(row, "details"), "details")]
        rows = [
            (time_ms(d, "ts"), order_side(d.get("side"), "side"), quantity(d, "bkPx"), quantity(d, "sz"))
            for d in details
        ]
        for ts, side, price, size in rows:
            self.add_liquidation(line, symbol, ts, side, price, size)

    def generated_liquidations(self, arg: dict[str, Any], data: Any, line: CaptureLine) -> None:
        """Tardis's ``liquidations``: the REST liquidation orders of one instrument (``arg.instId``),
        polled before OKX streamed them; its rows are the details themselves."""
        self.liquidation_orders({"instId": arg.get("instId"), "details": data}, line)

    def insurance_fund(self, row: dict[str, Any], line: CaptureLine) -> None:
        """``/api/v5/public/insurance-fund``: a balance per currency of one instrument family."""
        family = row.get("instFamily") or row.get("uly") or ""
        for d in self.items(field(row, "details"), "details"):
            d = obj(d, "detail")
            self.add_insurance(line, str(family), time_ms(d, "ts"), text(d, "ccy"), balance(d, "balance"))

    def funding_history(self, row: dict[str, Any], line: CaptureLine) -> None:
        """``/api/v5/public/funding-rate-history``: a rate paid at ``fundingTime``."""
        symbol = self.frame_symbol = self.check_symbol(row.get("instId"))
        when = time_ms(row, "fundingTime")
        self.add_funding(line, symbol, when, rate(row, "fundingRate"), when, settled=True)

    def http(self, line: CaptureLine) -> None:
        """A v5 REST body (``code`` "0"), by the endpoint of its URL."""
        path = urlparse(line.url).path.rstrip("/")
        body = obj(load_json(line.payload), "body")
        if str(body.get("code", "0")) != "0":
            raise BadInput(Reason.VENUE_ERROR, f"{path}: code {body['code']}: {body.get('msg')}")
        readers = {
            "funding-rate": self.funding_rate,
            "funding-rate-history": self.funding_history,
            "mark-price": self.mark_price,
            "index-tickers": self.index_ticker,
            "open-interest": self.open_interest_row,
            "insurance-fund": self.insurance_fund,
            "liquidation-orders": self.liquidation_orders,
        }
        reader = readers.get(path.rsplit("/", 1)[-1])
        if reader is None:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"REST endpoint {path} is not a derivatives endpoint")
        self.rows_of(reader, field(body, "data"), line)
